"""The results database: one SQLite row per finished sweep point.

Each row is written in its own transaction the moment its point finishes, so a sweep killed at any
instant (SIGKILL included) leaves only whole rows; the point key is UNIQUE, so a rerun skips the
points already there and can never duplicate one. WAL journaling lets ``nvmkit results`` and
``nvmkit plot`` read while a sweep writes.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from nvmkit.workflow.config import SCENARIOS
from nvmkit.core.errors import ConfigError
from nvmkit.core.spec import parse_value

DEFAULT_DB = "results.db"
INDEXED = ("network", "device", "dataset", "noise", "noise_level", "sigma_neu", "seed", "sample")
JSON_COLUMNS = ("config", "accuracy", "energy", "dataset_info", "versions")
ACC_COLUMNS = tuple(f"acc_{s}_{stat}" for s in SCENARIOS for stat in ("mean", "std"))

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    model_key TEXT,
    experiment TEXT,
    network TEXT, device TEXT, dataset TEXT, noise TEXT, noise_level REAL,
    sigma_neu REAL, sigma_syn_target REAL, seed INTEGER, sample INTEGER, trials INTEGER,
    config TEXT NOT NULL,
    accuracy TEXT NOT NULL,
    {", ".join(f"{c} REAL" for c in ACC_COLUMNS)},
    energy TEXT, energy_total_j REAL,
    dataset_info TEXT, versions TEXT,
    wall_time_s REAL, nvmkit_version TEXT, created_at TEXT NOT NULL
);
{"".join(f"CREATE INDEX IF NOT EXISTS idx_results_{c} ON results({c});" for c in INDEXED)}
"""
_FILTER = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(!=|>=|<=|=|<|>)\s*(.*?)\s*$")


class ResultsDB:
    """A results database file (created on first use)."""

    def __init__(self, path: str | Path = DEFAULT_DB, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise ConfigError(f"no results database at {self.path}; run `nvmkit sweep` first or pass --db PATH")
        if self.path.parent and not self.path.parent.is_dir():
            raise ConfigError(f"cannot create {self.path}: folder {self.path.parent} does not exist; create it first")
        try:
            # isolation_level=None: we open and commit each transaction ourselves.
            self.conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable against a killed process in WAL mode (only power loss can drop the
            # last commits, never corrupt the file).
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path} is not a usable results database ({exc}); "
                              "pass another --db or delete the file") from None
        self.conn.row_factory = sqlite3.Row

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- writing -------------------------------------------------------------------------------
    def insert(self, key: str, result: dict, experiment: str | None = None, model_key: str | None = None) -> bool:
        """Store a RunResult dict under ``key`` in one transaction; False if the key was there."""
        row = _row(key, result, experiment)
        row["model_key"] = model_key
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with _transaction(self.conn):
            cur = self.conn.execute(f"INSERT OR IGNORE INTO results ({cols}) VALUES ({marks})",
                                    list(row.values()))
        return cur.rowcount == 1

    # -- reading -------------------------------------------------------------------------------
    def done_keys(self, keys: Iterable[str] | None = None) -> set[str]:
        """The keys already stored (restricted to ``keys`` if given)."""
        stored = {r[0] for r in self.conn.execute("SELECT key FROM results")}
        return stored if keys is None else stored & set(keys)

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def rows(self, filters: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Rows matching every ``KEY OP VALUE`` filter, oldest first, JSON columns decoded."""
        where, args = [], []
        for f in filters:
            clause, value = _filter_clause(f)
            where.append(clause)
            args.extend(value)
        sql = "SELECT * FROM results" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        out = []
        for r in self.conn.execute(sql, args):
            d = dict(r)
            for c in JSON_COLUMNS:
                d[c] = json.loads(d[c]) if d[c] is not None else None
            d["sample"] = None if d["sample"] is None else bool(d["sample"])
            out.append(d)
        return out

    def history(self) -> list[tuple[str, bool, str | None, float]]:
        """(network, sample, model key, wall time) of every stored point, oldest first: the basis of
        sweep time estimates (the first point of a model key is the one that trained it)."""
        return [(r[0], bool(r[1]), r[2], r[3]) for r in self.conn.execute(
            "SELECT network, sample, model_key, wall_time_s FROM results WHERE wall_time_s IS NOT NULL ORDER BY id")]


class _transaction:
    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *rest):
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _row(key: str, result: dict, experiment: str | None) -> dict[str, Any]:
    cfg = result["config"]
    noise = cfg.get("noise")
    noise_name = noise_level = None
    if isinstance(noise, dict):
        noise_name = noise.get("name")
        params = noise.get("params") or {}
        # NAME:LEVEL sets the first constructor parameter: that parameter is the level
        first = next(iter(params.values()), None)
        noise_level = float(first) if isinstance(first, (int, float)) and not isinstance(first, bool) else None
    training = cfg.get("training") or {}
    acc = result.get("accuracy") or {}
    energy = result.get("energy")
    row = {
        "key": key,
        "experiment": experiment,
        "network": (cfg.get("network") or {}).get("name"),
        "device": (cfg.get("device") or {}).get("name"),
        "dataset": (result.get("dataset") or {}).get("name") or (cfg.get("dataset") or {}).get("name"),
        "noise": noise_name,
        "noise_level": noise_level,
        "sigma_neu": training.get("sigma_neu"),
        "sigma_syn_target": training.get("sigma_syn_target"),
        "seed": result.get("seed", cfg.get("seed")),
        "sample": _bool_int((result.get("dataset") or {}).get("sample")),
        "trials": cfg.get("trials"),
        "config": _json(cfg),
        "accuracy": _json(acc),
        "energy": _json(energy) if energy is not None else None,
        "energy_total_j": energy.get("total_J") if isinstance(energy, dict) else None,
        "dataset_info": _json(result.get("dataset")),
        "versions": _json(result.get("versions")),
        "wall_time_s": result.get("wall_time_s"),
        "nvmkit_version": result.get("nvmkit_version") or (result.get("versions") or {}).get("nvmkit"),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for s in SCENARIOS:
        a = acc.get(s) or {}
        row[f"acc_{s}_mean"] = a.get("mean")
        row[f"acc_{s}_std"] = a.get("std")
    return row


def _json(v) -> str:
    return json.dumps(v, sort_keys=True, allow_nan=False)


def _bool_int(v):
    return None if v is None else int(bool(v))


def columns() -> list[str]:
    return ["id", "key", "model_key", "experiment", *INDEXED[:7], "sigma_syn_target", "sample", "trials", *ACC_COLUMNS,
            "energy_total_j", "wall_time_s", "nvmkit_version", "created_at"]


def _filter_clause(text: str) -> tuple[str, list]:
    m = _FILTER.match(text)
    if not m:
        raise ConfigError(f"bad filter {text!r}; write KEY=VALUE (or !=, <, <=, >, >=), e.g. network=rnn")
    key, op, raw = m.groups()
    if "." in key:  # any configuration entry, e.g. training.epochs or device.params.sigma_syn
        target = "json_extract(config, ?)"
        pre = ["$." + key]
    elif key in columns():
        target, pre = key, []
    else:
        close = [c for c in columns() if key in c] or columns()
        raise ConfigError(f"unknown filter key {key!r}; use a column ({', '.join(close)}) "
                          "or a dotted configuration key such as training.epochs")
    value = _filter_value(text, raw)
    if value is None:
        if op not in ("=", "!="):
            raise ConfigError(f"filter {text!r}: compare with none only by = or !=")
        return f"{target} IS {'NOT ' if op == '!=' else ''}NULL", pre
    return f"{target} {op} ?", pre + [value]


def _filter_value(text: str, raw: str):
    """The value of a filter, by the one value grammar (:func:`nvmkit.core.spec.parse_value`)."""
    try:
        value = parse_value(raw)
    except ConfigError as exc:
        raise ConfigError(f"filter {text!r}: {exc}") from None
    if isinstance(value, (list, dict)):
        raise ConfigError(f"filter {text!r} compares with a list or table; compare one value, "
                          "e.g. network.params.units=128")
    if isinstance(value, float) and math.isnan(value):
        raise ConfigError(f"filter {text!r}: nan equals nothing; compare with a number or none")
    return value
