"""Every `nvmkit ...` command the README and docs/ show parses as the CLI parses it (machine paths
in the docs are tests/test_no_machine_paths.py's part).

The project's standard is that every number in the docs comes from a command named beside it; a
command that no longer exists, an option that was renamed or an argument the command does not take
makes that number unreproducible. Parsing (click's ``make_context``) checks the command, its
options and its arguments without running anything.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_FENCES = {"", "bash", "sh", "console"}


def fenced_blocks(text: str) -> tuple[list[tuple[str, str]], str]:
    """(language, body) of every fenced block, and the text outside them, read fence by fence (a
    closing fence is never taken for the opening of the next block)."""
    blocks, outside, lang, body = [], [], None, []
    for line in text.splitlines():
        fence = re.match(r"^```(\S*)\s*$", line)
        if fence and lang is None:
            lang, body = fence.group(1), []
        elif fence and fence.group(1) == "":
            blocks.append((lang, "\n".join(body)))
            lang = None
        elif lang is not None:
            body.append(line)
        else:
            outside.append(line)
    return blocks, "\n".join(outside)


def doc_commands() -> list[tuple[str, str, bool]]:
    """(doc, command, complete): commands of shell blocks are complete; inline ones in the text may
    be fragments that leave out a required argument (`nvmkit devices fit`, `nvmkit sweep --set`)."""
    out = []
    for path in DOCS:
        blocks, prose = fenced_blocks(path.read_text())
        for lang, body in blocks:
            if lang not in SHELL_FENCES:
                continue
            for line in body.splitlines():
                line = re.split(r"\s#\s", line)[0]
                for part in line.split("&&"):
                    if part.strip().startswith("nvmkit "):
                        out.append((path.name, part.strip(), True))
        for span in re.findall(r"`(nvmkit [^`]*)`", prose):
            out.append((path.name, " ".join(span.split()), False))
    return out


def _placeholder(command: str) -> bool:
    # synopses (`plugins check [NAME] [--kind KIND]`) and option lists (`--network/--device`)
    return bool(re.search(r"\[[A-Z-]|/--", command))


def parse(command: str, complete: bool) -> None:
    """Parse ``command`` as the installed CLI would, down to its (sub)command; run nothing.

    Typer vendors its own click, so its exceptions are reached through ``typer.TyperException``."""
    from nvmkit.cli import app

    args = shlex.split(command.split(" > ")[0])[1:]
    cmd, name = typer.main.get_command(app), "nvmkit"
    while getattr(cmd, "commands", None) and args and not args[0].startswith("-"):
        if args[0] not in cmd.commands:
            raise typer.BadParameter(f"{name} has no command {args[0]!r}")
        name, cmd, args = args[0], cmd.commands[args[0]], args[1:]
    try:
        cmd.make_context(name, list(args), resilient_parsing=False)  # click consumes its list
    except typer.TyperException as exc:
        # an inline fragment names a command or an option (`nvmkit sweep --set`), not a whole call
        fragment = type(exc).__name__ == "MissingParameter" or (
            args and args[-1].startswith("-") and "requires an argument" in exc.format_message())
        if fragment and not complete:
            return
        raise


CASES = [c for c in doc_commands() if not _placeholder(c[1])]


def test_docs_show_commands():
    docs = {doc for doc, _, _ in CASES}
    assert {"README.md", "energy.md", "results.md", "devices-from-data.md", "plugins.md"} <= docs, docs
    assert len(CASES) > 40


@pytest.mark.parametrize("doc,command,complete", CASES, ids=[f"{d}:{c}" for d, c, _ in CASES])
def test_doc_command_parses(doc, command, complete):
    try:
        parse(command, complete)
    except typer.TyperException as exc:
        pytest.fail(f"{doc}: `{command}` does not parse: {exc.format_message()}")


def test_parse_refuses_what_the_cli_refuses():
    # the checker itself: an unknown option, an extra argument and an unknown command must fail
    for bad, why in (("nvmkit run --no-such-option", "No such option"),
                     ("nvmkit results --db r.db network=rnn", "unexpected extra argument"),
                     ("nvmkit no-such-command", "no command"),
                     ("nvmkit devices fit", "Missing parameter")):
        with pytest.raises(typer.TyperException, match=why):
            parse(bad, complete=bad.endswith("fit"))
    parse("nvmkit devices fit", complete=False)  # an inline mention of a command is no call

