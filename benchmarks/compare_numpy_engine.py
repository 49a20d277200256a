"""The crossbar engine against the numpy engine it replaced (issue 11, point 9), on the bench MLP.

The numpy engine is gone from this tree; it lives in the last commit that had it, a01bd7b. That
checkout's package is also called ``nvmkit``, so it runs from a virtual environment of its own:

    git worktree add ../nvmkit-numpy a01bd7b
    python -m venv ../nvmkit-numpy/.venv
    ../nvmkit-numpy/.venv/bin/pip install -e ../nvmkit-numpy
    python benchmarks/compare_numpy_engine.py --numpy-engine-python ../nvmkit-numpy/.venv/bin/python

Each run starts that checkout's ``benchmarks/bench_crossbar.py --no-keras --json`` (the numpy
engine against numpy's digital pass) and then this tree's ``bench_crossbar.py --mlp-only --json``
(the Keras-ops engine against the faster of Keras's and numpy's digital pass), one right after the
other (the other way round in every second run), each in a process of its own. The two benches time the same MLP on the same inputs with
the same noise (both build them from ``--seed 0``). A case's ratio, for both engines, is taken
against one digital time: the fastest digital pass of that run pair, so the two ratios differ
only by the engines' own times. Timings of separate processes spread more than timings taken in
turn in one process, so the summary also takes each side's best over all runs, against the
fastest digital pass of all runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the numpy engine's case names -> this tree's
CASES = {
    "programming error": "MLP programming error",
    "read noise": "MLP read noise",
    "both": "MLP both",
    "both, state-dependent read noise (SONOS)": "MLP both, state-dependent read noise (SONOS)",
    "both, 10 trials at once": "MLP both, 10 trials at once",
}


def _bench(python: str, script: Path, flags: list[str]) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([python, str(script), *flags, "--json"], capture_output=True, text=True,
                          env=env, cwd=script.parent.parent)
    try:  # exit status 1 is a missed target (still a result) or a crash: the JSON tells
        result = json.loads(proc.stdout)
        result["cases"]
    except (json.JSONDecodeError, KeyError, TypeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"error: {script} failed ({tail}); check that --numpy-engine-python is the "
                         "Python of a checkout of a01bd7b with its package installed") from None
    return result


def one_pair(numpy_python: str, numpy_script: Path, repeats: int, new_first: bool) -> list[dict]:
    def old_bench():
        return _bench(numpy_python, numpy_script, ["--no-keras", "--repeats", str(repeats)])

    def new_bench():
        return _bench(sys.executable, HERE / "bench_crossbar.py", ["--mlp-only", "--repeats", str(repeats)])

    if new_first:
        new, old = new_bench(), old_bench()
    else:
        old, new = old_bench(), new_bench()
    old_by = {c["case"]: c for c in old["cases"]}
    new_by = {c["case"]: c for c in new["cases"]}
    missing = [name for name in CASES if name not in old_by] + \
              [name for name in CASES.values() if name not in new_by]
    if missing:
        raise SystemExit(f"error: no case {missing[0]!r} in a bench's output; the numpy engine's "
                         "bench must be the one of commit a01bd7b")
    rows = []
    for old_name, new_name in CASES.items():
        o, n = old_by[old_name], new_by[new_name]
        old_digital = o["seconds"] / o["ratio"]  # its own (numpy) digital pass for this case
        baseline = min(old_digital, n["digital_seconds"])
        rows.append({"case": new_name, "numpy_engine_seconds": o["seconds"],
                     "engine_seconds": n["seconds"], "digital_seconds": baseline,
                     "numpy_engine_ratio": o["seconds"] / baseline,
                     "engine_ratio": n["seconds"] / baseline,
                     "numpy_engine_own_ratio": o["ratio"]})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--numpy-engine-python", required=True,
                    help="the Python of a virtual environment with a checkout of a01bd7b installed")
    ap.add_argument("--runs", type=int, default=3, help="run pairs (default 3)")
    ap.add_argument("--repeats", type=int, default=7, help="passed to both benches")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be 1 or more")
    if args.repeats < 1:
        ap.error("--repeats must be 1 or more")
    try:
        probe = subprocess.run([args.numpy_engine_python, "-I", "-c",  # -I: not the cwd's nvmkit
                                "import nvmkit, pathlib; print(pathlib.Path(nvmkit.__file__).parent.parent)"],
                               capture_output=True, text=True)
    except OSError as exc:
        ap.error(f"cannot run {args.numpy_engine_python} ({exc.strerror}); give a Python executable")
    if probe.returncode != 0:
        ap.error(f"{args.numpy_engine_python} cannot import nvmkit; install the a01bd7b checkout in it")
    numpy_script = Path(probe.stdout.strip()) / "benchmarks" / "bench_crossbar.py"
    if not numpy_script.is_file():
        ap.error(f"no benchmarks/bench_crossbar.py beside that nvmkit ({numpy_script.parent.parent})")
    runs = [one_pair(args.numpy_engine_python, numpy_script, args.repeats, new_first=bool(i % 2))
            for i in range(args.runs)]
    if args.json:
        print(json.dumps({"runs": runs}, indent=2))
        return 0
    print("each run pair: ratios against the faster digital pass of the pair")
    print(f"{'case':46s} {'run':>3s} {'digital ms':>10s} {'numpy eng ms':>12s} {'engine ms':>10s} "
          f"{'numpy eng x':>11s} {'engine x':>8s}")
    best = []
    for i, name in enumerate(CASES.values()):
        for j, run in enumerate(runs):
            r = run[i]
            print(f"{name:46s} {j + 1:3d} {1e3 * r['digital_seconds']:10.1f} "
                  f"{1e3 * r['numpy_engine_seconds']:12.1f} {1e3 * r['engine_seconds']:10.1f} "
                  f"{r['numpy_engine_ratio']:11.2f} {r['engine_ratio']:8.2f}")
        d, o, n = (min(run[i][key] for run in runs)
                   for key in ("digital_seconds", "numpy_engine_seconds", "engine_seconds"))
        best.append((name, d, o, n))
    print("\nbest of the runs for each side: ratios against the fastest digital pass of all runs")
    for name, d, o, n in best:
        print(f"{name:46s} {'':3s} {1e3 * d:10.1f} {1e3 * o:12.1f} {1e3 * n:10.1f} {o / d:11.2f} {n / d:8.2f}")
    at_most = all(n <= o for _, _, o, n in best)
    print("engine at most the numpy engine's ratio in every case (best of runs):",
          "yes" if at_most else "NO")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
