"""What the paper-scale reproduction (`meqc reproduce --seeds 3`) takes on this machine, from measured epochs.

    python benchmarks/estimate_reproduce.py [--seeds 3] [--repeats 1] [--out benchmarks/results/estimate_reproduce.json]

Training is nearly all of a full run's time. For every training of every default part (`Part.trainings`: its
size, its PPO settings and how many configurations train in one program), this compiles the training chunk
at its real size (every seed and configuration vmapped, as `reproduce` runs it), times one epoch (median of
`--repeats` after the compile) and multiplies by the training's epochs. The projection is the sum over the
trainings, plus the compile times measured; evaluation (a few thousand slots per point) and the plots are
left out, so it is a lower bound. Printed and written as JSON (atomically).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import jax  # noqa: E402
from bench_env import median_chunk_time  # noqa: E402

from meqc_jax.env import MEQCEnv  # noqa: E402
from meqc_jax.experiments import DEFAULT_PARTS, PARTS_BY_NAME, ReproduceConfig  # noqa: E402
from meqc_jax.io import atomic_write_json  # noqa: E402
from meqc_jax.learners.ppo import make_train  # noqa: E402


def time_epoch(system, ppo, runs: int, repeats: int) -> dict:
    learner = make_train(system, ppo)
    keys = jax.random.split(jax.random.key(0), runs)
    states = learner.init_batch(keys, MEQCEnv.stack_params([learner.env.default_params()] * runs))
    t0 = time.perf_counter()
    chunk = learner.compiled_chunk(states, 1)
    compile_s = time.perf_counter() - t0
    epoch_s, _ = median_chunk_time(chunk, states, repeats)
    return {"compile_s": compile_s, "epoch_s": epoch_s}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds per run, as `meqc reproduce --seeds` (default 3)")
    ap.add_argument("--repeats", type=int, default=1, help="timed epochs per training after its compile (default 1)")
    trained = [p for p in DEFAULT_PARTS if PARTS_BY_NAME[p].trainings is not None]
    ap.add_argument("--parts", default=",".join(trained), help="comma-separated parts (default: the paper's that train)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "estimate_reproduce.json"))
    args = ap.parse_args()
    if not 1 <= args.seeds <= 100 or not 1 <= args.repeats <= 20:
        sys.exit("estimate_reproduce: --seeds in [1, 100], --repeats in [1, 20]")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS_BY_NAME or PARTS_BY_NAME[p].trainings is None]
    if bad:
        sys.exit(f"estimate_reproduce: --parts {','.join(bad)} invalid: allowed parts that train, e.g. "
                 + ",".join(trained))
    rc = ReproduceConfig(seeds=args.seeds)
    res = {"benchmark": "estimate_reproduce", "seeds": args.seeds, "device": str(jax.devices()[0]),
           "backend": jax.default_backend(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
           "jax_version": jax.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "trainings": []}
    measured: dict = {}  # trainings of the same size and settings (e.g. the three sweeps) are timed once
    for part in parts:
        for system, ppo, configs in PARTS_BY_NAME[part].trainings(part, rc):
            runs = configs * args.seeds
            key = (system, ppo, runs)
            if key not in measured:
                measured[key] = time_epoch(system, ppo, runs, args.repeats)
            t = measured[key]
            row = {"part": part, "users": system.num_users, "servers": system.num_servers, "torso": ppo.torso,
                   "runs": runs, "envs": ppo.num_envs, "slots_per_epoch": system.slots_per_episode,
                   "epochs": ppo.epochs, **t, "projected_s": t["compile_s"] + ppo.epochs * t["epoch_s"]}
            res["trainings"].append(row)
            print(f"{part}: U=E={system.num_users} {ppo.torso} x {runs} runs: {t['epoch_s']:.1f} s/epoch x "
                  f"{ppo.epochs} epochs = {row['projected_s'] / 3600:.2f} h", flush=True)
            atomic_write_json(args.out, res)
    res["projected_s"] = sum(r["projected_s"] for r in res["trainings"])
    res["projected_h"] = res["projected_s"] / 3600
    atomic_write_json(args.out, res)
    print(f"projected training time of `meqc reproduce --seeds {args.seeds}` ({', '.join(parts)}): "
          f"{res['projected_h']:.1f} h on {res['device']} ({os.cpu_count()} CPUs); wrote {args.out}")


if __name__ == "__main__":
    main()
