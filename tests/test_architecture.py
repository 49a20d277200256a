"""The tree shows the levels, and imports run one way: downward, without cycles.

nvmkit/ is a stack of subpackages (docs/architecture.md draws it). A module may import from its
own level and from the levels below it, never from a level above; no two modules may import each
other, even through a chain or inside a function. Plugins, bundled or third-party, import only
nvmkit's public API (``from nvmkit import ...``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nvmkit"
#: bottom to top; a module of level i may import levels 0..i
LEVELS = ["core", "engine", "workflow", "sweeps", "reproduction", "fit", "cli"]


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """Every nvmkit module ``path`` imports, at the top or inside a function, absolute or relative."""
    tree = ast.parse(path.read_text(), str(path))
    here = _module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            # ``from nvmkit.cli import devices`` imports the submodule nvmkit.cli.devices
            for a in node.names:
                if (root / mod.replace(".", "/") / f"{a.name}.py").exists() or \
                        (root / mod.replace(".", "/") / a.name / "__init__.py").exists():
                    found.add(f"{mod}.{a.name}")
    return {m for m in found if m == "nvmkit" or m.startswith("nvmkit.")}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(p) if m in modules and m != name} for name, p in modules.items()}


def _level(module: str) -> int | None:
    parts = module.split(".")
    return LEVELS.index(parts[1]) if len(parts) > 1 and parts[1] in LEVELS else None


def test_every_subpackage_has_a_level():
    """A new folder must be placed in the stack (here and in docs/architecture.md)."""
    subpackages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")
                         if p.parent.name not in ("data_sample",))
    assert sorted(set(subpackages)) == sorted(LEVELS), "add the new subpackage to LEVELS and the doc"
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert loose == [], f"modules outside the levels: {loose}; move them into a subpackage"


def test_imports_run_downward_only():
    upward = []
    for module, deps in _graph().items():
        mine = _level(module)
        if mine is None:  # nvmkit/__init__ (the public API) and __main__ sit on top of everything
            continue
        for dep in deps:
            theirs = _level(dep)
            if dep == "nvmkit" or (theirs is not None and theirs > mine):
                upward.append(f"{module} -> {dep}")
    assert not upward, "upward imports (a lower level must not know a higher one): " + ", ".join(sorted(upward))


def test_no_import_cycles():
    graph = _graph()
    # the package __init__ files import their children; children importing a sibling through the
    # parent package are not cycles of meaning, so only module-to-module edges between leaves count
    leaves = {m for m in graph if not (PACKAGE.parent / m.replace(".", "/") / "__init__.py").exists()}
    adj = {m: graph[m] & leaves for m in leaves}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(adj[m]):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(adj):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(cycles)


def _plugin_sources():
    for folder in (ROOT / "plugins", ROOT / "examples"):
        yield from sorted(folder.rglob("*.py"))


@pytest.mark.parametrize("path", list(_plugin_sources()), ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_public_api(path):
    private = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("nvmkit."):
            private.append(node.module)
        if isinstance(node, ast.Import):
            private += [a.name for a in node.names if a.name.startswith("nvmkit.")]
    assert not private, f"{path.name} imports nvmkit internals {private}; use `from nvmkit import ...`"


def test_the_checker_sees_upward_and_relative_imports(tmp_path):
    """The walk itself works: lazy, absolute and relative imports of a submodule are all seen."""
    core = tmp_path / "nvmkit" / "core"
    (tmp_path / "nvmkit" / "cli").mkdir(parents=True)
    core.mkdir()
    (tmp_path / "nvmkit" / "cli" / "app.py").write_text("")
    (core / "errors.py").write_text("")
    (core / "bad.py").write_text("from . import errors\ndef f():\n    from nvmkit.cli import app\n")
    found = _imports(core / "bad.py", tmp_path)
    assert {"nvmkit.cli.app", "nvmkit.core.errors"} <= found


def test_commands_that_need_no_keras_do_not_import_tensorflow():
    """`import nvmkit` is lazy (PEP 562) and the bundled network plugins import Keras in ``build``,
    so the CLI's help, the results table and the device listing (which loads every plugin) start
    without TensorFlow, which takes seconds to import. The bugs it catches: a public name imported
    eagerly again in nvmkit/__init__.py, a CLI module or a plugin importing Keras at its top."""
    import subprocess
    import sys

    probe = ("import sys\n"
             "from nvmkit.cli import app\n"
             "from typer.testing import CliRunner\n"
             "for args in (['--help'], ['devices', 'list'], ['devices', 'show', 'sonos'], ['plugins']):\n"
             "    r = CliRunner().invoke(app, args)\n"
             "    assert r.exit_code == 0, (args, r.output)\n"
             "import nvmkit\n"
             "nvmkit.Device, nvmkit.NetworkMapper, nvmkit.as_images, nvmkit.check_sequence\n"
             "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_every_public_name_resolves_to_its_module():
    """Each name of ``nvmkit.__all__`` is found by the lazy loader and is the object its module
    defines (a name mapped to the wrong module, or left out of the map, fails here)."""
    import importlib

    import nvmkit

    for name in nvmkit.__all__:
        value = getattr(nvmkit, name)
        if name != "__version__":
            assert getattr(importlib.import_module(nvmkit._HOME[name]), name) is value
    with pytest.raises(AttributeError):
        nvmkit.not_a_public_name  # noqa: B018
