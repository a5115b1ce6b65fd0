"""`meqc sweep` against running its grid points one by one with `meqc evaluate`, side by side in one run.

    python benchmarks/bench_sweep.py [--repeats 2] [--sample 4] [--out benchmarks/results/sweep.json]

The grid: f_edge_ghz = 5, 10, 20 x t1_ms = 0.1, 1, 10 x lam_d = 0.1, 0.5, 0.9 (27 points), one seed, every
baseline and the oracle, U = E = 10, 64 instances x 10 slots per point. Both are fresh processes with the
persistent compilation cache off (what a first sweep costs). The one-by-one time is `--sample` points
(spread over the grid) run with `meqc evaluate --set ...`, their median times 27; the two kinds take turns.
Printed and written as JSON (atomically): grid-point-slots per second of each, and the ratio.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from meqc_jax.io import atomic_write_json  # noqa: E402

MAIN = "import sys; from meqc_jax.cli import main; sys.exit(main(sys.argv[1:]))"
GRID = {"f_edge_ghz": (5, 10, 20), "t1_ms": (0.1, 1, 10), "lam_d": (0.1, 0.5, 0.9)}
ENVS, SLOTS = 64, 10


def timed(args: list[str], cwd: str) -> float:
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", MAIN, "--compile-cache", "off", *args], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2, help="turns of (sweep, sampled points) (default 2)")
    ap.add_argument("--sample", type=int, default=4, help="points run one by one per turn (default 4)")
    ap.add_argument("--envs", type=int, default=ENVS, help=f"instances per point (default {ENVS})")
    ap.add_argument("--slots", type=int, default=SLOTS, help=f"slots per instance (default {SLOTS})")
    ap.add_argument("--smoke", action="store_true",
                    help="2 points at U = 3, E = 2, 4 x 4 slots, one turn of one sampled point: checks the script runs")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "sweep.json"))
    args = ap.parse_args()
    if not 1 <= args.repeats <= 20 or not 1 <= args.sample <= 27 or not 1 <= args.envs <= 2**20 \
            or not 1 <= args.slots <= 10**6:
        sys.exit("bench_sweep: --repeats must be in [1, 20], --sample in [1, 27], --envs in [1, 2^20] and --slots in "
                 "[1, 10^6]")
    grid, sizes, envs, slots_per = GRID, [], args.envs, args.slots
    if args.smoke:
        grid, envs, slots_per = {"f_edge_ghz": (5, 10)}, 4, 4
        sizes = ["--set", "num_users=3", "--set", "num_servers=2"]
        args.repeats, args.sample = 1, 1
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    sample = [points[round(i * (len(points) - 1) / max(args.sample - 1, 1))] for i in range(args.sample)]
    grid_args = [a for f, v in grid.items() for a in ("--grid", f"{f}={','.join(map(str, v))}")]
    res = {"grid": grid, "points": len(points), "envs": envs, "slots": slots_per, "smoke": args.smoke,
           "policies": "all (baselines + oracle)",
           "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "turns": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            out = os.path.join(tmp, f"sweep{r}")
            t_sweep = timed(["sweep", *grid_args, *sizes, "--envs", str(envs), "--slots", str(slots_per),
                             "--no-progress", "--out", out], tmp)
            with open(os.path.join(out, "summary.json")) as f:
                s = json.load(f)
            one = []
            for i, p in enumerate(sample):
                sets = [a for f, v in p.items() for a in ("--set", f"{f}={v}")] + sizes
                one.append(timed(["evaluate", *sets, "--envs", str(envs), "--slots", str(envs * slots_per),
                                  "--no-progress", "--out", os.path.join(tmp, f"eval{r}-{i}")], tmp))
            turn = {"sweep_s": t_sweep, "per_point_s": one, "evaluation_programs": s["evaluation_programs_compiled"],
                    "xla_programs": s["xla_programs_compiled"], "sweep_compile_s": s["compile_s"]}
            turn["one_by_one_s"] = statistics.median(one) * len(points)
            turn["ratio"] = turn["one_by_one_s"] / t_sweep
            res["turns"].append(turn)
            print(f"turn {r + 1}: sweep {t_sweep:.1f} s ({s['evaluation_programs_compiled']} evaluation program); "
                  f"one by one: median {statistics.median(one):.1f} s per point x {len(points)} = "
                  f"{turn['one_by_one_s']:.1f} s; ratio {turn['ratio']:.1f}x", flush=True)
    slots = len(points) * envs * slots_per
    sweep_s = statistics.median(t["sweep_s"] for t in res["turns"])
    one_s = statistics.median(t["one_by_one_s"] for t in res["turns"])
    res.update(sweep_median_s=sweep_s, one_by_one_median_s=one_s,
               sweep_point_slots_per_s=slots / sweep_s, one_by_one_point_slots_per_s=slots / one_s,
               ratio_median=statistics.median(t["ratio"] for t in res["turns"]))
    print(f"grid-point-slots per second: sweep {res['sweep_point_slots_per_s']:.0f}, one by one "
          f"{res['one_by_one_point_slots_per_s']:.0f}: {res['ratio_median']:.1f}x (median of {args.repeats} turns)")
    atomic_write_json(args.out, res)


if __name__ == "__main__":
    main()
