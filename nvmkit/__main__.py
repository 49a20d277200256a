"""``python -m nvmkit`` and the ``nvmkit`` console script.

The command modules are imported inside :func:`main`, not here, so that a Ctrl-C while they load
(Typer, Rich) ends like a Ctrl-C in a command, with click's one line and exit 130, not a
traceback from inside the import machinery.
"""

import sys


def main() -> None:
    try:
        from nvmkit.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("\nAborted!\n")
        raise SystemExit(130) from None
    cli_main()


if __name__ == "__main__":
    main()
