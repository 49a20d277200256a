"""Study files: the several sweeps behind one report (the seed's study is bundled).

A study is a TOML file of sections, each an experiment (see :mod:`nvmkit.sweeps.experiment`) whose rows
the report reads one way, named by its ``kind``::

    [study]
    name = "seed"
    description = "..."

    [base]                          # RunConfig keys shared by every section
    seed = 0
    device.params.sigma_syn = 0.025

    [sections.result1]              # sections run and are reported in file order
    kind = "result1"                # result1 | regularisation | test_noise | time_steps | tile_size | training | in_place
    title = "..."                   # optional heading
    note = "..."                    # optional text under the heading (e.g. why this noise)
    [sections.result1.base]         # laid over the study's [base]
    noise = "gaussian:0.1"
    [sections.result1.grid]
    "network.name" = ["mlp", "rnn", "cnn"]

Several sections may share a kind (their rows are read together), so a section can give some
points different scenarios than others, e.g. the clean and the noisy points of a test-set noise
sweep. Every section is checked by :func:`nvmkit.sweeps.experiment.parse_experiment`, so errors name the
file, the section and the key.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import tomli_w

from nvmkit.core.errors import ConfigError
from nvmkit.sweeps.experiment import Experiment, _did_you_mean, _merge, _table, parse_experiment
from nvmkit.core.params import load_toml, read_text_file

KINDS = ("result1", "regularisation", "test_noise", "time_steps", "tile_size", "training", "in_place")
TITLES = {
    "result1": "Result 1: internal, external and both noise",
    "regularisation": "Regularisation sweeps (Results II)",
    "test_noise": "Test-set noise sweeps (Results III and IV)",
    "time_steps": "Time steps of the RNN",
    "tile_size": "Tile size against wire resistance (IR drop)",
    "training": "Which training survives which device (plain, pre-activation noise, device-aware)",
    "in_place": "Learning in place: from scratch, and on-chip fine-tuning",
}
SECTION_KEYS = ("kind", "title", "note", "base", "grid", "points", "plan")
STUDY_KEYS = ("name", "description")
BUNDLED_PACKAGE = "nvmkit.reproduction.studies"


@dataclass
class Section:
    name: str
    kind: str
    title: str
    note: str
    experiment: Experiment
    #: an ``in_place`` section's own plan (:class:`nvmkit.reproduction.in_place_study.InPlacePlan`)
    plan: object = None


@dataclass
class Study:
    path: str
    name: str
    description: str = ""
    sections: list[Section] = field(default_factory=list)

    def by_kind(self, kind: str) -> list[Section]:
        return [s for s in self.sections if s.kind == kind]


def bundled_studies() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(BUNDLED_PACKAGE).iterdir() if p.name.endswith(".toml"))


def load_study(spec: str | Path) -> Study:
    """A study by bundled name (``seed``, ``seed-quick``) or by path to a TOML file."""
    text_spec = str(spec)
    if text_spec.endswith(".toml") or Path(text_spec).is_file():
        path = Path(text_spec)
        text = read_text_file(path, "study")
        return parse_study(text, str(path), default_name=path.stem, folder=path.parent)
    names = bundled_studies()
    if text_spec not in names:
        raise ConfigError(f"unknown study {text_spec!r}{_did_you_mean(text_spec, names)}; bundled studies: "
                          f"{', '.join(names)}, or give the path of a study .toml file")
    resource = resources.files(BUNDLED_PACKAGE).joinpath(f"{text_spec}.toml")
    return parse_study(resource.read_text(), f"{BUNDLED_PACKAGE}/{text_spec}.toml", default_name=text_spec)


def parse_study(text: str, source: str = "<string>", default_name: str = "study",
                folder: str | Path | None = None) -> Study:
    data = load_toml(text, source)
    for key in data:
        if key not in ("study", "base", "sections"):
            raise ConfigError(f"{source}: unknown section [{key}]{_did_you_mean(key, ('study', 'base', 'sections'))};"
                              " a study has [study], [base] and [sections.NAME] tables")
    meta = _table(data.get("study", {}), source, "study")
    for key in meta:
        if key not in STUDY_KEYS:
            raise ConfigError(f"{source}: [study] unknown key {key!r}; valid keys: {', '.join(STUDY_KEYS)}")
    base = _table(data.get("base", {}), source, "base")
    sections = _table(data.get("sections", {}), source, "sections")
    if not sections:
        raise ConfigError(f"{source}: no sections; add at least one [sections.NAME] table with a [grid]")
    name = str(meta.get("name") or default_name)
    study = Study(source, name, str(meta.get("description", "")))
    for sec_name, table in sections.items():
        where = f"{source} [sections.{sec_name}]"
        table = _table(table, source, f"sections.{sec_name}")
        for key in table:
            if key not in SECTION_KEYS:
                raise ConfigError(f"{where}: unknown key {key!r}{_did_you_mean(key, SECTION_KEYS)}; "
                                  f"valid keys: {', '.join(SECTION_KEYS)}")
        kind = str(table.get("kind", sec_name))
        if kind not in KINDS:
            raise ConfigError(f"{where}: kind {kind!r} is unknown{_did_you_mean(kind, KINDS)}; "
                              f"choose one of: {', '.join(KINDS)}")
        plan = None
        if kind == "in_place":
            from nvmkit.reproduction.in_place_study import InPlacePlan

            plan = InPlacePlan.from_dict(_table(table.get("plan", {}), where, "plan"), f"{where} plan")
        elif "plan" in table:
            raise ConfigError(f"{where}: only an in_place section has a plan; remove it")
        merged = _merge(copy.deepcopy(base), copy.deepcopy(_table(table.get("base", {}), where, "base")))
        doc = {"experiment": {"name": f"{name}/{sec_name}"}, "base": merged,
               "grid": _table(table.get("grid", {}), where, "grid")}
        if "points" in table:
            doc["points"] = table["points"]
        # through TOML text, so the section gets exactly an experiment file's checks and messages
        experiment = parse_experiment(tomli_w.dumps(doc), where, default_name=f"{name}/{sec_name}",
                                      folder=folder)  # its paths, like an experiment's, from its folder
        study.sections.append(Section(sec_name, kind, str(table.get("title") or TITLES[kind]),
                                      " ".join(str(table.get("note", "")).split()), experiment, plan))
    return study
