"""Running a sweep's points: on this machine's cores (``local``) or on a Dask cluster (``dask``).

Both executors send each point as a plain configuration dict (never arrays) to a worker, which runs
it with a *point runner* (``config dict -> RunResult dict``; by default :func:`run_point`, i.e.
:func:`nvmkit.workflow.pipeline.run`). The results come back to this process, which writes each one to the
results database the moment it arrives, so the two executors are interchangeable and a sweep
stopped at any point resumes where it left off.

Points that share a trained model (same data, network, training and seed) are scheduled so that one
of them runs first and trains the model into the model cache (``$NVMKIT_CACHE_DIR``); the rest are
released once it finishes and load the cached model, so a sweep over test-time parameters trains
each network once however many workers it has. On a cluster the cache must be a path every worker
shares, or each worker trains its own copy.
"""

from __future__ import annotations

import importlib
import os
import statistics
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from nvmkit.core.errors import ConfigError, NvmkitError
from nvmkit.sweeps.experiment import Experiment, Point
from nvmkit.sweeps.resultsdb import ResultsDB

RUNNER_ENV = "NVMKIT_SWEEP_RUNNER"  # "module:function": a different point runner (tests use a fake)
DEFAULT_RUNNER = "nvmkit.sweeps.sweep:run_point"
EXECUTORS = ("local", "dask")
DASK_CONNECT_TIMEOUT = "10s"

# Rough seconds when the database holds no history: a point that trains its network (default
# epochs, embedded sample, 2 cores) and one that loads it from the cache (5 trials, 4 scenarios).
_GUESS_TRAIN_S = {"mlp": 15.0, "rnn": 40.0, "cnn": 90.0}
_GUESS_EVAL_S = {"mlp": 3.0, "rnn": 5.0, "cnn": 10.0}
_FULL_TRAIN_FACTOR = 15.0  # 60,000 training images instead of the sample's 4,000
_FULL_EVAL_FACTOR = 10.0  # 10,000 test images instead of 1,000


def check_executor(executor: str, scheduler: str | None, workers: int | None) -> None:
    """Validate the executor options of ``sweep`` and ``reproduce`` before anything runs."""
    if executor not in ("local", "dask"):
        raise ConfigError(f"unknown executor {executor!r}; choose local or dask")
    if executor == "dask" and not scheduler:
        raise ConfigError("--executor dask needs --scheduler ADDRESS, e.g. tcp://10.0.0.5:8786")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")

def run_point(config: dict) -> dict:
    """The default point runner: one pipeline run, as a plain dict."""
    from nvmkit.workflow import pipeline

    return pipeline.run(config).to_dict()


def load_runner(spec: str | Callable[[dict], dict] | None = None) -> Callable[[dict], dict]:
    """A point runner from a callable, a ``module:function`` spec, ``$NVMKIT_SWEEP_RUNNER`` or the default."""
    if callable(spec):
        return spec
    spec = spec or os.environ.get(RUNNER_ENV) or DEFAULT_RUNNER
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load point runner {spec!r} ({exc}); write MODULE:FUNCTION "
                          f"importable on every worker, or unset {RUNNER_ENV}") from None
    if not callable(fn):
        raise ConfigError(f"point runner {spec!r} is not a function; write MODULE:FUNCTION")
    return fn


def runner_spec(runner: str | Callable | None = None) -> str | Callable:
    """What is shipped to workers: a spec string where possible (any process can import it)."""
    if callable(runner):
        return runner
    return runner or os.environ.get(RUNNER_ENV) or DEFAULT_RUNNER


def _task(spec, config: dict) -> dict:
    """What a worker runs: import the runner there, run one point."""
    return load_runner(spec)(config)


def _init_worker(threads: int) -> None:
    # Before TensorFlow creates its thread pools, so parallel workers do not oversubscribe the cores.
    for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(var, str(threads))


# -- planning ----------------------------------------------------------------------------------------
@dataclass
class SweepPlan:
    experiment: Experiment
    points: list[Point]
    done: set[str]

    @property
    def todo(self) -> list[Point]:
        return [p for p in self.points if p.key not in self.done]

    @property
    def models(self) -> int:
        """Distinct trained models among the points still to run."""
        return len({p.model_key for p in self.todo})


def plan_sweep(experiment: Experiment, db: ResultsDB, registry=None) -> SweepPlan:
    """Validate every point and look up which are already in the database."""
    points = experiment.points(registry)
    return SweepPlan(experiment, points, db.done_keys(p.key for p in points))


def estimate_seconds(points: list[Point], history: Iterable[tuple[str, bool, str | None, float]],
                     workers: int) -> tuple[float, str]:
    """(seconds, basis): one training per model not yet trained plus one evaluation per point, timed
    from the database's past points of the same network and data kind, else a rough guess."""
    history = list(history)
    trained_keys = {mk for _, _, mk, _ in history if mk}
    first: dict[tuple[str, bool], list[float]] = {}
    later: dict[tuple[str, bool], list[float]] = {}
    seen: set = set()
    for network, sample, mk, wall in history:
        bucket = later if mk is None or mk in seen else first
        bucket.setdefault((network, sample), []).append(wall)
        seen.add(mk)
    total, guessed, leaders = 0.0, 0, set()
    for p in points:
        net, sample = p.resolved["network"]["name"], _is_sample(p)
        trains = p.model_key not in trained_keys and p.model_key not in leaders
        leaders.add(p.model_key)
        past = (first if trains else later).get((net, sample))
        if past:
            total += statistics.fmean(past)
            continue
        guessed += 1
        if trains:
            epochs = p.resolved["training"].get("epochs") or 10
            total += _GUESS_TRAIN_S.get(net, 60.0) * epochs / 10 * (1 if sample else _FULL_TRAIN_FACTOR)
        total += (_GUESS_EVAL_S.get(net, 5.0) * p.resolved.get("trials", 5) / 5
                  * (1 if sample else _FULL_EVAL_FACTOR))
    parallel = max(1, min(workers, len(points)))
    if not points:
        basis = "nothing to run"
    elif guessed == 0:
        basis = "from past points in the database"
    elif guessed == len(points):
        basis = "a rough guess: no past points of these networks in the database"
    else:
        basis = f"past points, and a rough guess for {guessed}"
    return total / parallel, basis


def _is_sample(p: Point) -> bool:
    from nvmkit.sweeps.experiment import identity

    return identity(p.resolved)["dataset"]["source"] == "sample"


# -- running ---------------------------------------------------------------------------------------
@dataclass
class Outcome:
    point: Point
    result: dict | None = None
    error: str | None = None
    inserted: bool = False


@dataclass
class SweepSummary:
    ran: int = 0
    inserted: int = 0
    failed: list[Outcome] = field(default_factory=list)
    wall_time_s: float = 0.0


def run_sweep(points: list[Point], db: ResultsDB, *, executor: str = "local", workers: int | None = None,
              scheduler: str | None = None, runner: str | Callable | None = None,
              experiment: str | None = None,
              on_done: Callable[[Outcome], None] | None = None) -> SweepSummary:
    """Run ``points`` (skipping those already in ``db``) and store each result as it finishes."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of: {', '.join(EXECUTORS)}")
    done = db.done_keys(p.key for p in points)
    todo = [p for p in points if p.key not in done]
    summary = SweepSummary()
    started = time.perf_counter()

    def finish(point: Point, result: dict | None, error: BaseException | None) -> None:
        out = Outcome(point)
        if error is not None:
            out.error = _one_line(error)
            summary.failed.append(out)
        else:
            out.result = result
            out.inserted = db.insert(point.key, result, experiment, point.model_key)
            summary.inserted += out.inserted
        summary.ran += 1
        if on_done is not None:
            on_done(out)

    spec = runner_spec(runner)
    if not todo:
        pass
    elif executor == "dask":
        if not scheduler:
            raise ConfigError("--executor dask needs --scheduler ADDRESS, e.g. tcp://10.0.0.5:8786")
        _run_dask(todo, scheduler, spec, finish)
    else:
        n = workers if workers is not None else (os.cpu_count() or 1)
        if n < 1:
            raise ConfigError(f"--workers must be >= 1, got {n}")
        if n == 1 or len(todo) == 1:
            _run_sequential(todo, load_runner(spec), finish)
        else:
            _run_pool(todo, min(n, len(todo)), spec, finish)
    summary.wall_time_s = time.perf_counter() - started
    return summary


def _run_sequential(todo: list[Point], runner, finish) -> None:
    for point in _grouped_order(todo):
        try:
            result = runner(point.config)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # one failing point must not stop the sweep
            finish(point, None, exc)
        else:
            finish(point, result, None)


def _run_pool(todo: list[Point], workers: int, spec, finish) -> None:
    import concurrent.futures as cf
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawn: forking a parent that has loaded TensorFlow can deadlock the child
    pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_init_worker, initargs=(threads,))
    try:
        _schedule(todo, lambda p: pool.submit(_task, spec, p.config), _LocalWaiter(), finish)
    except cf.process.BrokenProcessPool:
        pool.shutdown(wait=False, cancel_futures=True)
        raise NvmkitError("a sweep worker process died (out of memory, or killed); the finished points "
                          "are saved: rerun to resume, with fewer --workers if memory is short") from None
    except BaseException:  # Ctrl-C: stop the points in flight now, their rows are not written anyway
        _terminate(pool)
        raise
    pool.shutdown(wait=True)


def _terminate(pool) -> None:
    if hasattr(pool, "terminate_workers"):  # Python >= 3.14
        pool.terminate_workers()
        return
    procs = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()


def _run_dask(todo: list[Point], scheduler: str, spec, finish) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:  # pragma: no cover - a declared dependency
        raise ConfigError("the dask executor needs dask.distributed: pip install 'dask[distributed]'") from None
    try:
        client = Client(scheduler, timeout=DASK_CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {scheduler} ({_one_line(exc)}); start one "
                          "with `dask scheduler` and workers with `dask worker ADDRESS`, or fix --scheduler") from None
    ac = as_completed()
    waiter = _DaskWaiter(ac)
    try:
        _schedule(todo, lambda p: client.submit(_task, spec, p.config, pure=False,
                                                key=f"nvmkit-point-{p.key[:16]}-{time.monotonic_ns()}"),
                  waiter, finish)
    finally:
        for fut in waiter.pending:
            fut.cancel()
        client.close()


class _LocalWaiter:
    def __init__(self):
        self.pending: set = set()

    def add(self, fut) -> None:
        self.pending.add(fut)

    def next_done(self):
        import concurrent.futures as cf

        done, _ = cf.wait(self.pending, return_when=cf.FIRST_COMPLETED)
        self.pending -= done
        return done


class _DaskWaiter:
    def __init__(self, ac):
        self.ac = ac
        self.pending: set = set()

    def add(self, fut) -> None:
        self.pending.add(fut)
        self.ac.add(fut)

    def next_done(self):
        fut = next(self.ac)
        self.pending.discard(fut)
        return [fut]


def _schedule(todo: list[Point], submit, waiter, finish) -> None:
    """Submit one point per trained model first; release the rest of a model's points when it is cached."""
    groups: OrderedDict[str, deque[Point]] = OrderedDict()
    for p in todo:
        groups.setdefault(p.model_key, deque()).append(p)
    which: dict[Any, Point] = {}

    def send(p: Point) -> None:
        fut = submit(p)
        which[fut] = p
        waiter.add(fut)

    for points in groups.values():
        shares_cache = points[0].config.get("training", {}).get("use_cache", True)
        send(points.popleft())
        while points and not shares_cache:  # each point trains anyway: nothing to wait for
            send(points.popleft())
    while waiter.pending:
        for fut in waiter.next_done():
            p = which.pop(fut)
            try:
                result, error = fut.result(), None
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # the worker's exception, re-raised here
                result, error = None, exc
            finish(p, result, error)
            rest = groups.get(p.model_key)
            while rest:
                send(rest.popleft())


def _grouped_order(todo: list[Point]) -> list[Point]:
    """Points of one model together, in first-appearance order (the cache stays warm)."""
    groups: OrderedDict[str, list[Point]] = OrderedDict()
    for p in todo:
        groups.setdefault(p.model_key, []).append(p)
    return [p for g in groups.values() for p in g]


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, NvmkitError):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
