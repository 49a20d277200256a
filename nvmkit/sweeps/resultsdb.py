"""The results database: one SQLite row per finished sweep point.

Each row is written in its own transaction the moment its point finishes, so a sweep killed at any
instant (SIGKILL included) leaves only whole rows; the point key is UNIQUE, so a rerun skips the
points already there and can never duplicate one. WAL journaling lets ``nvmkit results`` and
``nvmkit plot`` read while a sweep writes; the writer switches the file back to a rollback journal
when it closes, so that a read-only open (which cannot delete WAL side files) leaves nothing behind.

A results database is marked as nvmkit's (``PRAGMA application_id`` = :data:`APPLICATION_ID`,
``PRAGMA user_version`` = :data:`FORMAT_VERSION`), and every open checks the mark: another program's
SQLite file is refused, never written. Read commands open with ``readonly=True``: SQLite's read-only
mode, no journal switch, no table created.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import sqlite3
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from nvmkit.workflow.config import SCENARIOS, network_label
from nvmkit.core.errors import ConfigError
from nvmkit.core.spec import parse_value

DEFAULT_DB = "results.db"
#: ``PRAGMA application_id`` of an nvmkit results database: "NVMK" in ASCII
APPLICATION_ID = 0x4E564D4B
#: ``PRAGMA user_version``: 1 = the results table with its ``timing`` column
FORMAT_VERSION = 1
#: the columns by which an unmarked database written before the mark existed is recognised
_LEGACY_COLUMNS = {"key", "model_key", "config", "accuracy", "wall_time_s", "created_at"}
INDEXED = ("network", "device", "dataset", "noise", "noise_level", "sigma_neu", "seed", "sample")
JSON_COLUMNS = ("config", "accuracy", "energy", "dataset_info", "versions", "timing")
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
    wall_time_s REAL, timing TEXT, nvmkit_version TEXT, created_at TEXT NOT NULL
);
{"".join(f"CREATE INDEX IF NOT EXISTS idx_results_{c} ON results({c});" for c in INDEXED)}
"""
_FILTER = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(!=|>=|<=|=|<|>)\s*(.*?)\s*$")


class ResultsDB:
    """A results database file.

    ``readonly=False`` (sweeps): created on first use, marked as nvmkit's. ``readonly=True`` (results,
    plot, dry runs): the file must exist and be nvmkit's, and nothing in it or beside it is written.
    ``create=False``: the file must exist.
    """

    def __init__(self, path: str | Path = DEFAULT_DB, *, create: bool = True, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        if (readonly or not create) and not self.path.is_file():
            raise ConfigError(f"no results database at {self.path}; run `nvmkit sweep` first or pass --db PATH")
        if not readonly and self.path.parent and not self.path.parent.is_dir():
            raise ConfigError(f"cannot create {self.path}: folder {self.path.parent} does not exist; create it first")
        try:
            if readonly:
                uri = "file:" + urllib.parse.quote(str(self.path.absolute())) + "?mode=ro"
                self.conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
                self.columns = _check_mark(self.conn, self.path, allow_new=False)
            else:
                # isolation_level=None: we open and commit each transaction ourselves.
                self.conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
                self.columns = _check_mark(self.conn, self.path, allow_new=True)
                self.conn.execute("PRAGMA journal_mode=WAL")
                # NORMAL is durable against a killed process in WAL mode (only power loss can drop the
                # last commits, never corrupt the file).
                self.conn.execute("PRAGMA synchronous=NORMAL")
                with _transaction(self.conn):
                    self.conn.execute(_SCHEMA.split(";")[0])  # CREATE TABLE IF NOT EXISTS results
                    if "timing" not in self.columns and self.columns:  # written before the timing column
                        self.conn.execute("ALTER TABLE results ADD COLUMN timing TEXT")
                    self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    self.conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
                self.conn.executescript(_SCHEMA)
                self.columns = _table_columns(self.conn)
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(Exception):
                self.conn.close()
            raise ConfigError(f"{self.path} is not a usable results database ({exc}); "
                              "pass another --db") from None
        except ConfigError:
            with contextlib.suppress(Exception):
                self.conn.close()
            raise
        self.conn.row_factory = sqlite3.Row

    def close(self) -> None:
        if not self.readonly:
            # back to a rollback journal, so that read-only opens find no WAL to recover; fails
            # harmlessly (and stays WAL) while another connection is open
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("PRAGMA busy_timeout = 0")  # a reader is open: do not wait for it
                self.conn.execute("PRAGMA journal_mode=DELETE")
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- writing -------------------------------------------------------------------------------
    def insert(self, key: str, result: dict, experiment: str | None = None, model_key: str | None = None) -> bool:
        """Store a RunResult dict under ``key`` in one transaction; False if the key was there."""
        if self.readonly:
            raise ConfigError(f"{self.path} was opened read-only; open it with readonly=False to write")
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
            if clause.startswith("json_extract(") and " IS " not in clause:  # a dotted key compared with a value
                self._check_config_key(f, value[0])
        sql = "SELECT * FROM results" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        out = []
        for r in self.conn.execute(sql, args):
            d = dict(r)
            for c in JSON_COLUMNS:
                d[c] = json.loads(d[c]) if d.get(c) is not None else None
            d["sample"] = None if d["sample"] is None else bool(d["sample"])
            d["energy_total_j"] = _joules(d["energy"])  # rows stored before unitless energy was left out
            out.append(d)
        return out

    def _check_config_key(self, text: str, path: str) -> None:
        """Refuse a filter on a configuration key no row holds (a typo such as training.epoch):
        it would match nothing and show an empty table as if no run had been made."""
        present = "SELECT 1 FROM results WHERE json_type(config, ?) IS NOT NULL LIMIT 1"
        if self.conn.execute(present, [path]).fetchone() or not self.conn.execute(
                "SELECT 1 FROM results LIMIT 1").fetchone():
            return
        import difflib

        keys: set[str] = set()
        for (config,) in self.conn.execute("SELECT config FROM results LIMIT 100"):
            keys.update(_dotted_keys(json.loads(config)))
        close = difflib.get_close_matches(path[2:], sorted(keys), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}?" if close else "check its spelling (nvmkit results --json shows every key)"
        raise ConfigError(f"filter {text!r}: no row's configuration has the key {path[2:]}; {hint}")

    def history(self) -> list[dict[str, Any]]:
        """What past points measured, oldest first: the basis of sweep time estimates. One dict per
        row: ``network``, ``model_key``, ``wall_time_s``, ``timing`` (see
        :class:`nvmkit.workflow.report.RunResult`; None for rows stored before runs were timed)."""
        timing = "timing" if "timing" in self.columns else "NULL"
        return [{"network": r[0], "model_key": r[1], "wall_time_s": r[2], "timing": json.loads(r[3]) if r[3] else None}
                for r in self.conn.execute(f"SELECT network, model_key, wall_time_s, {timing} FROM results ORDER BY id")]


def _dotted_keys(config, prefix: str = ""):
    for k, v in (config.items() if isinstance(config, dict) else ()):
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v:
            yield from _dotted_keys(v, key)
        elif prefix:  # a filter's dotted key has at least one dot
            yield key


def check_db_path(path: str | Path) -> Path:
    """Refuse, before any work, a results database a sweep could not write: a folder, a missing or
    read-only folder, another program's SQLite file."""
    from nvmkit.workflow.report import check_writable_folder

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--db {path} is a folder; give a file name, e.g. {path / DEFAULT_DB}")
    if not path.parent.is_dir():
        raise ConfigError(f"cannot create {path}: folder {path.parent} does not exist; create it first")
    # SQLite writes its journal beside the database: the folder must be writable, not just the file
    check_writable_folder(path.parent, f"cannot write the results database {path}")
    if path.is_file():
        ResultsDB(path, readonly=True).close()  # another program's file is refused here
    return path


def _table_columns(conn) -> set[str]:
    return {r[1] for r in conn.execute("PRAGMA table_info(results)")}


def _check_mark(conn, path: Path, *, allow_new: bool) -> set[str]:
    """Refuse a database that is not nvmkit's; return the results table's columns (empty if new)."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    columns = _table_columns(conn)
    if app_id == APPLICATION_ID:
        if version > FORMAT_VERSION:
            raise ConfigError(f"{path} was written by a newer nvmkit (results format {version}, this nvmkit "
                              f"reads up to {FORMAT_VERSION}); upgrade nvmkit")
        return columns
    if app_id == 0 and not tables and allow_new:
        return columns  # a new (or empty) file: ours to mark
    if app_id == 0 and tables == ["results"] and _LEGACY_COLUMNS <= columns:
        return columns  # written by nvmkit before databases were marked
    held = f"its tables: {', '.join(tables[:5])}" if tables else "no tables"
    raise ConfigError(f"{path} is not an nvmkit results database ({held}); nvmkit will not read or "
                      "change it: pass another --db")


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
        "network": network_label(cfg) or None,
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
        "energy_total_j": _joules(energy),
        "dataset_info": _json(result.get("dataset")),
        "versions": _json(result.get("versions")),
        "wall_time_s": result.get("wall_time_s"),
        "timing": _json(result["timing"]) if result.get("timing") else None,
        "nvmkit_version": result.get("nvmkit_version") or (result.get("versions") or {}).get("nvmkit"),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for s in SCENARIOS:
        a = acc.get(s) or {}
        row[f"acc_{s}_mean"] = a.get("mean")
        row[f"acc_{s}_std"] = a.get("std")
    return row


def _joules(energy) -> float | None:
    """Energy per inference in joules, or None where the estimate is unitless (``physical: false``,
    e.g. the ``synaptic`` device): the column is read as joules by ``results --csv`` and the plots."""
    if not isinstance(energy, dict) or energy.get("physical") is False:
        return None
    return energy.get("total_J")


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
