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

import contextlib
import functools
import importlib
import os
import signal
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from nvmkit.core.errors import ConfigError, NvmkitError
from nvmkit.sweeps.experiment import Experiment, Point
from nvmkit.sweeps.resultsdb import ResultsDB
from nvmkit.workflow.config import network_label

RUNNER_ENV = "NVMKIT_SWEEP_RUNNER"  # "module:function": a different point runner (tests use a fake)
DEFAULT_RUNNER = "nvmkit.sweeps.sweep:run_point"
EXECUTORS = ("local", "dask")
DASK_CONNECT_TIMEOUT = "10s"

# Training and test images of the full data sets, for estimates before any run has read them:
# MNIST (LeCun, Bottou, Bengio & Haffner 1998, Proc. IEEE 86(11)) and Fashion-MNIST (Xiao, Rasul &
# Vollgraf 2017, arXiv:1708.07747) both split 60,000 / 10,000.
_FULL_SIZES = {"mnist": (60_000, 10_000), "fashion-mnist": (60_000, 10_000)}


def check_executor(executor: str, scheduler: str | None, workers: int | None) -> None:
    """Validate the executor options of ``sweep`` and ``reproduce`` before anything runs."""
    if executor not in ("local", "dask"):
        raise ConfigError(f"unknown executor {executor!r}; choose local or dask")
    if executor == "dask" and not scheduler:
        raise ConfigError("--executor dask needs --scheduler ADDRESS, e.g. tcp://10.0.0.5:8786")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    # an option of the other executor would be ignored without a word: the user meant something
    if executor == "local" and scheduler:
        raise ConfigError("--scheduler is the Dask scheduler's address; add --executor dask, or drop --scheduler "
                          "to run on this machine's cores")
    if executor == "dask" and workers is not None:
        raise ConfigError("--workers counts local processes; with --executor dask the cluster's workers run "
                          "the points: drop --workers")

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


def _init_worker(threads: int, parent: int | None = None) -> None:
    # Before TensorFlow creates its thread pools, so parallel workers do not oversubscribe the cores.
    for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(var, str(threads))
    if parent is not None:
        die_with_parent(parent)


#: how often a worker checks that the sweep that started it is still alive (seconds)
PARENT_POLL_S = 0.5


def die_with_parent(parent: int) -> None:
    """End this worker process when the sweep process ``parent`` ends, however it ends.

    A pool's workers otherwise outlive a sweep killed with SIGKILL or SIGTERM: they block on their
    task queue (whose write end they hold themselves) or finish a training nobody will read. On
    Linux the kernel sends SIGKILL the moment the parent dies (``prctl(PR_SET_PDEATHSIG)``); on every
    platform a daemon thread polls the parent pid (``os.getppid()`` changes when the parent dies
    and the worker is re-parented) and covers a parent that died before the ``prctl`` call.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # no usable libc: the polling thread still works
            pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)  # no cleanup to run: the point's result had nowhere to go

    threading.Thread(target=watch, name="nvmkit-parent-watch", daemon=True).start()


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
        """Distinct trained models among the points still to run (a model file deployed as it is
        trains nothing)."""
        return len({p.model_key for p in self.todo if trains_a_model(p)})


def trains_a_model(p: Point) -> bool:
    """Whether a point trains (or loads from the cache) a model: not a user's model file run
    without ``training.epochs``, device-aware or in-place training)."""
    training = p.resolved.get("training") or {}
    return not (p.resolved.get("model") and training.get("epochs") is None
                and training.get("method") not in ("device", "in-place"))


def plan_sweep(experiment: Experiment, db: ResultsDB | None, registry=None) -> SweepPlan:
    """Validate every point and look up which are already in the database (None: no database yet)."""
    points = experiment.points(registry)
    return SweepPlan(experiment, points, db.done_keys(p.key for p in points) if db is not None else set())


def measured_rates(history: Iterable[dict]) -> dict[str, dict[str, float]]:
    """Per network, what past runs measured: ``train`` seconds per epoch and training image (from
    runs that trained), ``evaluate`` seconds per evaluated test image (all runs), ``overhead``
    seconds per point outside both (loading data or a cached model, building the plugins). Rows
    without a timing record (stored before runs were timed) are ignored."""
    sums: dict[str, list[float]] = {}
    for row in history:
        t = row.get("timing")
        if not t or not row.get("network"):
            continue
        acc = sums.setdefault(row["network"], [0.0] * 6)
        trained = t.get("train_epochs") and t.get("n_train")
        if trained:
            acc[0] += t["train_s"]
            acc[1] += t["train_epochs"] * t["n_train"]
        if t.get("test_images"):
            acc[2] += t["evaluate_s"]
            acc[3] += t["test_images"]
        if row.get("wall_time_s") is not None:
            acc[4] += max(0.0, row["wall_time_s"] - (t["train_s"] if trained else 0.0) - t["evaluate_s"])
            acc[5] += 1
    rates: dict[str, dict[str, float]] = {}
    for net, (train_s, train_units, eval_s, eval_units, overhead_s, points) in sums.items():
        r = {}
        if train_units:
            r["train"] = train_s / train_units
        if eval_units:
            r["evaluate"] = eval_s / eval_units
        if points:
            r["overhead"] = overhead_s / points
        rates[net] = r
    return rates


def estimate_seconds(points: list[Point], history: Iterable[dict], workers: int) -> tuple[float | None, str]:
    """(seconds, basis) of running ``points`` on ``workers`` parallel workers, or (None, why) when no
    estimate is possible yet.

    Only measured rates count (see :func:`measured_rates`; a results database records them for
    every point it stores): per network, seconds per epoch and training image for each model not
    yet trained (one per model key not in ``history``), and seconds per test image evaluated plus
    the measured overhead for each point. A network never timed here gets no invented number: the basis says so instead.
    """
    history = list(history)
    if not points:
        return 0.0, "nothing to run"
    rates = measured_rates(history)
    trained = {row["model_key"] for row in history if row.get("model_key")}
    total, leaders = 0.0, set()
    untimed: dict[str, set[str]] = {}
    for p in points:
        net = network_label(p.resolved)
        r = rates.get(net, {})
        n_train, n_test = _data_sizes(p)
        training = p.resolved["training"]
        trains = trains_a_model(p) and p.model_key not in trained and (p.model_key not in leaders or not training.get("use_cache", True))
        leaders.add(p.model_key)
        if trains:
            if "train" not in r:
                untimed.setdefault(net, set()).add("training")
            else:
                # a sigma_syn_target point also trains the plain model it derives its noise from;
                # that model is usually another point's (sigma_neu = 0), counted there
                # device-aware epochs are counted as plain ones (they cost up to 3x more)
                epochs = (training.get("epochs") or 0) + (
                    (training.get("device_epochs") or 1) if training.get("method") == "device" else 0)
                total += r["train"] * epochs * n_train
        scenarios = [s for s in p.resolved.get("scenarios", ())
                     if p.resolved.get("noise") or s not in ("external", "both")]
        images = sum(n_test if s == "digital" else p.resolved["trials"] * n_test for s in scenarios)
        if "evaluate" not in r:
            untimed.setdefault(net, set()).add("evaluation")
        else:
            total += r["evaluate"] * images + r.get("overhead", 0.0)
    if untimed:
        what = "; ".join(f"{net} ({' and '.join(sorted(kinds))})" for net, kinds in sorted(untimed.items()))
        return None, (f"no run of {what} has been timed in this database yet; a first sweep measures "
                      "the rates every later estimate uses")
    parallel = max(1, min(workers, len(points)))
    return total / parallel, f"from the rates measured by {len(history)} past points in the database"


def estimate_text(seconds: float | None, basis: str) -> str:
    """The estimate as the CLI prints it: a duration with its basis, or plainly none."""
    from nvmkit.core.formatting import duration

    if seconds is None:
        return f"no time estimate: {basis}"
    return f"estimate ~{duration(seconds)} ({basis})"


def _data_sizes(p: Point) -> tuple[int, int]:
    """(training, test) images the point will read."""
    from nvmkit.sweeps.experiment import identity

    ds = identity(p.resolved)["dataset"]
    name = ds["name"]
    if ds["source"] == "sample":
        return _sample_sizes(name)
    return _FULL_SIZES.get(name, _FULL_SIZES["mnist"])


@functools.lru_cache(maxsize=None)
def _sample_sizes(name: str) -> tuple[int, int]:
    from nvmkit.workflow.data import load_sample

    ds = load_sample(name)
    return len(ds.x_train), len(ds.x_test)


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
            with _sigterm_as_interrupt():  # as a pool sweep: stop, close the database, say how to resume
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
                                  initializer=_init_worker, initargs=(threads, os.getpid()))
    try:
        with _sigterm_as_interrupt():
            _schedule(todo, lambda p: pool.submit(_task, spec, p.config), _LocalWaiter(), finish)
    except cf.process.BrokenProcessPool:
        pool.shutdown(wait=False, cancel_futures=True)
        raise NvmkitError("a sweep worker process died (out of memory, or killed); the finished points "
                          "are saved: rerun to resume, with fewer --workers if memory is short") from None
    except BaseException:  # Ctrl-C or SIGTERM: stop the points in flight now, their rows are not written anyway
        _terminate(pool)
        raise
    pool.shutdown(wait=True)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM stops a sweep the way Ctrl-C does (pool workers terminated, finished rows kept, the
    database closed), not by Python's default of dying on the spot. Only the main thread may set signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
