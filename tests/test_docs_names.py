"""What docs/api.md and docs/architecture.md say about the code is what the code has: the call
signatures written in the public-API table, the bundled plugins the architecture lists, and every
file the docs name. (Which names exist is tests/test_public_api.py's part; the architecture's
modules, tests/test_docs_api.py's.)"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import nvmkit

ROOT = Path(__file__).resolve().parents[1]
API = (ROOT / "docs" / "api.md").read_text()
ARCH = (ROOT / "docs" / "architecture.md").read_text()


def documented_signatures() -> list[tuple[str, list[str]]]:
    """(name, parameter names) of the signature each row of the public-API table writes first in
    its second column, `name(params)` for a name of its first column (later calls in the cell are
    examples); `*`, `**kw` and `...` are not parameters."""
    section = API.split("## The public API", 1)[1]
    out = []
    for line in section.splitlines():
        cells = line.split("|")
        if len(cells) < 3 or not cells[1].strip().startswith("`"):
            continue
        names = set(re.findall(r"`(\w+)`", cells[1]))
        first = re.match(r"\s*`(\w+)\(([^`]*)\)", cells[2])
        if first and first.group(1) in names:
            params = re.sub(r"\)\s*->.*$", "", first.group(2))  # `f(a, b) -> T`
            split = [re.split(r"[=:]", p)[0].strip() for p in re.split(r",(?![^(]*\))", params)]
            out.append((first.group(1), [n for n in split if n and n not in ("*", "...")]))
    return out


SIGNATURES = documented_signatures()


def test_the_table_writes_signatures():
    assert {"convert", "monte_carlo", "load_dataset", "fit_device", "energy_report"} <= {n for n, _ in SIGNATURES}


@pytest.mark.parametrize("name,documented", SIGNATURES, ids=[n for n, _ in SIGNATURES])
def test_documented_signature_matches_the_code(name, documented):
    obj = getattr(nvmkit, name)
    real = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters
    real = {k: p for k, p in real.items() if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    unknown = [p for p in documented if p not in real]
    assert not unknown, f"docs/api.md writes {name}({', '.join(documented)}); {name} has no {unknown}"
    order = [p for p in real if p in documented]
    assert order == documented, f"docs/api.md orders {name}'s parameters {documented}, the code {order}"
    required = [k for k, p in real.items() if p.default is p.empty]
    missing = [p for p in required if p not in documented]
    assert not missing, f"docs/api.md leaves out {name}'s required parameters {missing}"
    # written as a Python signature, a parameter before `*` is positional: the code must take it so
    # (`trials=` with no value is the table's shorthand for a keyword argument)
    params = re.match(rf"\s*`{name}\(([^`]*)\)", next(
        line.split("|")[2] for line in API.split("## The public API", 1)[1].splitlines()
        if line.startswith("| `") and re.match(rf"\s*`{name}\(", line.split("|")[2]))).group(1)
    tokens = [t.strip() for t in re.split(r",(?![^(]*\))", re.sub(r"\)\s*->.*$", "", params))]
    before_star = tokens[:tokens.index("*")] if "*" in tokens else tokens
    written_positional = [t.split("=")[0] for t in before_star if not t.endswith("=") and t != "..."]
    keyword_only = [p for p in written_positional if real[p].kind is inspect.Parameter.KEYWORD_ONLY]
    assert not keyword_only, f"docs/api.md writes {name}'s {keyword_only} as positional; they are keyword-only"


def test_architecture_lists_every_bundled_plugin():
    row = next(line for line in ARCH.splitlines() if line.startswith("| `plugins/`"))
    listed = {}
    for kind, names in re.findall(r"(devices|noise|networks|energy) ((?:`[\w-]+`(?:, )?)+)", row):
        listed[kind] = set(re.findall(r"`([\w-]+)`", names))
    registry = nvmkit.get_registry()
    kinds = {"devices": "device", "noise": "noise", "networks": "network", "energy": "energy"}
    for heading, kind in kinds.items():
        bundled = {n for n in registry.names(kind)
                   if registry.info(kind, n).cls.__module__.startswith("nvmkit_plugins.")}
        assert listed.get(heading) == bundled, (heading, listed.get(heading), bundled)


def test_files_and_links_the_docs_name_exist():
    """A path the README or a guide names (`benchmarks/bench_crossbar.py`, `tests/x.py::test_y`, a
    relative link) is there: a moved file leaves its number without the command beside it."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for doc in docs:
        text = doc.read_text()
        for token in re.findall(r"`([^`\s]+)`", text):
            path = re.match(r"^((?:nvmkit|benchmarks|scripts|examples|tests|experiments|plugins|docs)/[\w./-]*)"
                            r"(?:::(\w+))?", token)
            if not path:
                continue
            file = ROOT / path.group(1).rstrip("/")
            if not file.exists() or (path.group(2) and f"def {path.group(2)}(" not in file.read_text()):
                missing.append(f"{doc.name}: {token}")
        for link in re.findall(r"\]\(([^)#\s]+)", text):
            if not link.startswith(("http://", "https://")) and not (doc.parent / link).exists():
                missing.append(f"{doc.name}: link {link}")
    assert not missing, missing
