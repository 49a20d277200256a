"""The public API is what ``nvmkit`` exports, and the docs say what that is: a documented name that
disappears, or an export nobody documented, fails here."""

import ast
import importlib
import re
from pathlib import Path

import pytest

import nvmkit

DOCS = Path(__file__).resolve().parents[1] / "docs"
GUIDES = ("api.md", "plugins.md")


def _text(name: str) -> str:
    return (DOCS / name).read_text()


def api_table_names() -> set[str]:
    """Names in the first column of the table under '## The public API' in docs/api.md."""
    section = _text("api.md").split("## The public API", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([A-Za-z_][\w]*)`", line.split("|")[1]))
    return names


def doc_imports() -> list[tuple[str, str, str]]:
    """(guide, module, name) for every ``from nvmkit... import name`` in the guides' Python blocks."""
    out = []
    for guide in GUIDES:
        for block in re.findall(r"^```python\n(.*?)^```", _text(guide), flags=re.S | re.M):
            for node in ast.walk(ast.parse(block)):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "nvmkit":
                    out += [(guide, node.module, a.name) for a in node.names]
    return out


def test_table_lists_names_and_the_guides_import_some():
    assert len(api_table_names()) > 20
    assert {m for _, m, _ in doc_imports()} >= {"nvmkit"}


@pytest.mark.parametrize("name", sorted(api_table_names()))
def test_documented_name_is_exported(name):
    assert name in nvmkit.__all__, f"docs/api.md documents nvmkit.{name}, which nvmkit.__all__ lacks"
    assert getattr(nvmkit, name) is not None


def test_every_export_is_documented():
    undocumented = sorted(set(nvmkit.__all__) - api_table_names())
    assert not undocumented, (f"nvmkit exports {', '.join(undocumented)} without documenting them: "
                              "add a row to the table under '## The public API' in docs/api.md")


def test_all_names_resolve():
    missing = [n for n in nvmkit.__all__ if not hasattr(nvmkit, n)]
    assert not missing, f"nvmkit.__all__ names {missing}, which nvmkit does not define"
    assert len(set(nvmkit.__all__)) == len(nvmkit.__all__), "duplicate names in nvmkit.__all__"


@pytest.mark.parametrize("guide,module,name", doc_imports())
def test_names_the_guides_import_exist(guide, module, name):
    if module == "nvmkit":
        assert name in nvmkit.__all__, f"docs/{guide} imports {name} from nvmkit, which does not export it"
    mod = importlib.import_module(module)
    assert hasattr(mod, name), f"docs/{guide}: {module} has no {name}"


@pytest.mark.parametrize("dotted", sorted({m for g in GUIDES for m in re.findall(
    r"`(nvmkit(?:\.\w+)+)", _text(g))}))
def test_dotted_names_in_the_guides_resolve(dotted):
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return
    pytest.fail(f"{dotted} does not resolve")
