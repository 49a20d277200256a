"""Which test-set noise reproduces the seed's Result 1 "External" column? (issue 20, point 5)

    python scripts/fit_external.py --data-dir ../shared/datasets --trials 3 --claims

Takes the six plain networks of the seed study's Result 1 section (trained as `nvmkit reproduce` trains
them, so from the model cache when it holds them), evaluates each on its noisy test set over a grid of
levels of every bundled test-set noise, fits one level per noise type by least squares against the
seed's six External cells (nvmkit/reproduction/external_fit.py), evaluates again at the fitted level,
and prints a table: our accuracy at the fitted level, ours minus the seed's (points), RMS.

--claims: for the best-fitting noise type only, reruns the six plain Result 1 points through the
pipeline with that noise at the fitted level (internal, external and both, --trials trials) and prints
the verdicts of the claims that read plain Result 1 rows (seed_study claims 1 to 4). With --noise-trained it
reruns the noise-trained (sigma_neu 0.1) points too and adds claim 5; --at NOISE:LEVEL skips the fit
and reruns at that level.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", help="folder with the full data (Keras cache layout)")
    ap.add_argument("--quick", action="store_true", help="the embedded sample (seed-quick study)")
    ap.add_argument("--trials", type=int, default=3, help="noisy draws of the test set per level")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--points", type=int, default=13, help="grid levels per noise type")
    ap.add_argument("--noise", action="append", help="noise types (default: all bundled)")
    ap.add_argument("--claims", action="store_true", help="rerun Result 1 at the best fit; claim verdicts")
    ap.add_argument("--noise-trained", action="store_true",
                    help="with --claims: rerun the noise-trained (sigma_neu 0.1) points too and add claim 5")
    ap.add_argument("--at", help="with --claims: skip the fit and rerun at this NOISE:LEVEL (e.g. speckle:1.04996)")
    ap.add_argument("--json", help="write the fits (and claim rows) here")
    args = ap.parse_args(argv)

    from nvmkit.core._quiet import import_keras

    import_keras()
    from nvmkit.reproduction import external_fit as ef

    started = time.perf_counter()
    if args.at:
        if not args.claims:
            ap.error("--at needs --claims")
        name, _, level = args.at.partition(":")
        best = ef.LevelFit(name, float(level), {}, {})
        return _claims(best, args, {"at": args.at}, started)
    models, test, sample = ef.plain_models(args.data_dir, quick=args.quick)
    print(f"models: {', '.join(f'{n}/{d}' for n, d in models)}; sample: {sample}", file=sys.stderr)
    noises = tuple(args.noise or ef.NOISES)
    levels = {n: ef.default_levels(n, args.points) for n in noises}
    fits = ef.fit_external(models, test, noises=noises, levels=levels, trials=args.trials, seed=args.seed,
                           progress=lambda m: print(m, file=sys.stderr))
    fit_s = time.perf_counter() - started
    print(f"Fitted External level per noise type ({args.trials} trials per level, seed {args.seed}; "
          f"accuracy % at the fitted level, in brackets ours minus the seed's, points; {fit_s:.0f} s)\n")
    print(ef.render_fits(fits))
    out = {"trials": args.trials, "seed": args.seed, "points": args.points, "sample": sample,
           "fits": [f.to_dict() for f in fits], "fit_seconds": fit_s}
    if args.claims:
        return _claims(min(fits, key=lambda f: f.rms), args, out, started)
    out["wall_seconds"] = time.perf_counter() - started
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0


def _claims(best, args, out, started) -> int:
    rows = rerun_result1(best, args)
    verdicts = claims(rows)
    print(f"\nClaims on plain Result 1 rerun with {best.noise} {best.level:.3f} as External "
          f"({args.trials} trials per cell):\n")
    from nvmkit.reproduction.seed_study import render_result1, render_verdicts

    print(render_result1(rows, 0.0, rows))
    print()
    if args.noise_trained:
        print(render_result1(rows, 0.1, rows))
        print()
    print(render_verdicts(verdicts))
    out["claims"] = {"noise": best.noise, "level": best.level, "verdicts": [v.to_dict() for v in verdicts],
                     "rows": rows}
    out["wall_seconds"] = time.perf_counter() - started
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0


def rerun_result1(fit, args) -> list[dict]:
    """The plain (and with --noise-trained the sigma_neu 0.1) Result 1 points with the fitted noise as test-set noise, as results-database rows."""
    from nvmkit.reproduction.reproduce import plan_reproduction
    from nvmkit.workflow.config import RunConfig
    from nvmkit.workflow.pipeline import run

    plan = plan_reproduction(quick=args.quick, data_dir=args.data_dir, sections=["result1"])
    rows = []
    for _, points in plan.sections:
        for p in points:
            data = json.loads(json.dumps(p.config))
            sigma = float((data.get("training") or {}).get("sigma_neu") or 0.0)
            if sigma != 0.0 and not args.noise_trained:
                continue
            data["noise"] = f"{fit.noise}:{fit.level:.6g}"
            data["trials"] = args.trials
            data["energy"] = "none"
            data.pop("output", None)
            res = run(RunConfig.from_dict(data)).to_dict()
            cfg = res["config"]
            rows.append({"network": cfg["network"]["name"], "dataset": res["dataset"]["name"],
                         "sigma_neu": sigma, "noise": fit.noise, "noise_level": fit.level,
                         "sample": res["dataset"].get("sample"), "accuracy": res["accuracy"], "config": cfg})
            print(f"rerun {rows[-1]['network']}/{rows[-1]['dataset']} done", file=sys.stderr)
    return rows


def claims(rows):
    from nvmkit.reproduction import seed_study as ss

    out = [ss.claim_cnn_best_internal(rows), ss.claim_rnn_parity_external(rows),
           ss.claim_rnn_beats_cnn_fashion_both(rows), ss.claim_rnn_beats_mlp(rows)]
    if any(r["sigma_neu"] for r in rows):
        out.append(ss.claim_noise_training_result1(rows))
    return out


if __name__ == "__main__":
    sys.exit(main())
