"""`meqc reproduce --quick --force` from a fresh process, side by side with the same command at another commit.

    python benchmarks/bench_quick.py --old-tree DIR [--pairs 2] [--out benchmarks/results/quick_run.json]

`DIR` is a checkout of the reference commit (e.g. `git worktree add DIR 333188b`), run with this
interpreter and `PYTHONPATH=DIR`; the new command runs the tree this script sits in (`PYTHONPATH` set to it,
so a copy of the tree can be timed while the checkout is being edited). The two commands take turns (old, new, old, new, ...), each in a fresh
process writing to its own empty folder; the new one runs first with an empty compilation cache
(`--compile-cache` to a fresh folder), then once more with that cache filled. Wall seconds per run,
their medians and the pair-by-pair ratios new / old are printed and written as JSON (atomically).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from meqc_jax.io import atomic_write_json  # noqa: E402

MAIN = "import sys; from meqc_jax.cli import main; sys.exit(main(sys.argv[1:]))"


def timed(cmd: list[str], env: dict | None = None, cwd: str | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-tree", required=True, help="a checkout of the reference commit")
    ap.add_argument("--pairs", type=int, default=2, help="old/new pairs (default 2)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "quick_run.json"))
    args = ap.parse_args()
    if not os.path.isfile(os.path.join(args.old_tree, "meqc_jax", "cli.py")):
        sys.exit(f"bench_quick: --old-tree={args.old_tree!r} is invalid: allowed a checkout holding meqc_jax/cli.py")
    if not 1 <= args.pairs <= 20:
        sys.exit(f"bench_quick: --pairs={args.pairs} is invalid: allowed an integer in [1, 20]")
    old_rev = subprocess.run(["git", "-C", args.old_tree, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
    new_rev = subprocess.run(["git", "-C", os.path.dirname(HERE), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
    res = {"command": "meqc reproduce --quick --force --no-progress", "old": old_rev, "new": new_rev,
           "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "pairs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            old_out, new_out, warm_out, cache = (os.path.join(tmp, f"{k}{i}") for k in ("old", "new", "warm", "cache"))
            env = dict(os.environ, PYTHONPATH=args.old_tree)
            t_old = timed([sys.executable, "-c", MAIN, "reproduce", "--quick", "--force", "--out", old_out,
                           "--no-progress"], env=env, cwd=tmp)
            new = [sys.executable, "-c", MAIN, "--compile-cache", cache, "reproduce", "--quick", "--force",
                   "--no-progress", "--out"]
            env_new = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
            t_cold = timed(new + [new_out], env=env_new, cwd=tmp)
            t_warm = timed(new + [warm_out], env=env_new, cwd=tmp)
            shutil.rmtree(cache, ignore_errors=True)
            pair = {"old_s": t_old, "new_cold_s": t_cold, "new_warm_s": t_warm,
                    "cold_over_old": t_cold / t_old, "warm_over_old": t_warm / t_old}
            res["pairs"].append(pair)
            print(f"pair {i + 1}: old {t_old:.1f} s, new cold {t_cold:.1f} s ({pair['cold_over_old']:.2f}), "
                  f"warm {t_warm:.1f} s ({pair['warm_over_old']:.2f})", flush=True)
            atomic_write_json(args.out, res)
    for k in ("old_s", "new_cold_s", "new_warm_s", "cold_over_old", "warm_over_old"):
        res["median_" + k] = statistics.median(p[k] for p in res["pairs"])
    atomic_write_json(args.out, res)
    print(f"medians: old {res['median_old_s']:.1f} s, new cold {res['median_new_cold_s']:.1f} s "
          f"({res['median_cold_over_old']:.2f}), warm {res['median_new_warm_s']:.1f} s ({res['median_warm_over_old']:.2f})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
