"""The quick-mode budget trials of docs/learning.md "Quick mode": PPO settings vs held-out ratio to the oracle.

    python benchmarks/tune_quick.py [--out benchmarks/results/tune_quick.json]

Each trial trains one run (seed 0) at U = E = `size` on the balanced preset with the quick settings
(64 environments x 50 slots, 8 passes x 8 minibatches, lr 3e-3, 64 x 64 torsos) changed as listed,
then evaluates it with random offloading and the oracle on 4096 held-out slots at U = E = 10 (the same
user-slots at the larger sizes). Training seconds are split into compiling and running. Writes JSON
after every trial (atomically).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import jax

from meqc_jax.compilation import CompileCounter
from meqc_jax.env import MEQCEnv  # noqa: F401  (imported before the learners, as the CLI does)
from meqc_jax.evaluate import evaluate
from meqc_jax.experiments import common
from meqc_jax.experiments.common import ReproduceConfig
from meqc_jax.io import atomic_write_json
from meqc_jax.learners import make_learner
from meqc_jax.learners.ppo import PPOConfig
from meqc_jax.loop import fit

BASE = dict(torso="mlp", epochs=30, num_envs=64, num_minibatches=8, update_epochs=8, lr=3e-3, hidden=(64, 64))
TRIALS = [  # (U = E, changes to BASE)
    (10, {}),
    (10, {"shared_params": True}),
    (10, {"shared_params": True, "epochs": 15}),
    (10, {"shared_params": True, "epochs": 15, "update_epochs": 4}),
    (10, {"shared_params": True, "epochs": 10}),
    (10, {"shared_params": True, "epochs": 10, "num_envs": 32, "num_minibatches": 4}),
    (20, {"shared_params": True, "epochs": 10}),
    (30, {"shared_params": True, "epochs": 10}),
    (10, {"torso": "vqc", "shared_params": True, "epochs": 12}),
    (10, {"torso": "vqc", "shared_params": True, "epochs": 12, "update_epochs": 2, "num_minibatches": 4}),
]


def trial(size: int, changes: dict) -> dict:
    system = common.system(ReproduceConfig.quick(), size, slots=50)
    kw = {**BASE, **changes}
    learner = make_learner("ppo", system, PPOConfig(**kw))
    t0 = time.perf_counter()
    with CompileCounter() as cc:
        state, _ = fit(learner, [0], chunk=kw["epochs"])
    train_s = time.perf_counter() - t0
    policy = learner.sweep_policy(learner.acting_params(state), kw["torso"])
    res = evaluate(system, [policy, "random_offloading", "oracle"], num_envs=math.ceil(4096 * 10 / size),
                   num_slots=1, seed=1_000_004)
    s = res.summary
    return {"size": size, "changes": changes, "train_s": train_s, "compile_s": cc.seconds,
            "run_s": train_s - cc.seconds, "cost": s[kw["torso"]]["mean_cost"], "ci95": s[kw["torso"]]["ci95"],
            "random_offloading": s["random_offloading"]["mean_cost"], "oracle": s["oracle"]["mean_cost"],
            "ratio_to_oracle": s[kw["torso"]]["mean_cost"] / s["oracle"]["mean_cost"],
            "random_over_oracle": s["random_offloading"]["mean_cost"] / s["oracle"]["mean_cost"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                  "tune_quick.json"))
    args = ap.parse_args()
    out = {"base": {k: list(v) if isinstance(v, tuple) else v for k, v in BASE.items()},
           "device": str(jax.devices()[0]), "cpu_count": os.cpu_count(), "jax_version": jax.__version__,
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "trials": []}
    for size, changes in TRIALS:
        r = trial(size, changes)
        out["trials"].append(r)
        print(f"U=E={size} {json.dumps(changes)}: ratio {r['ratio_to_oracle']:.3f} (random {r['random_over_oracle']:.3f}), "
              f"run {r['run_s']:.1f} s, compile {r['compile_s']:.1f} s", flush=True)
        atomic_write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
