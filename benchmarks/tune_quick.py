"""The quick-mode budget trials of docs/learning.md "Quick mode": PPO settings vs held-out ratio to the oracle.

    python benchmarks/tune_quick.py [--out benchmarks/results/tune_quick.json]
    python benchmarks/tune_quick.py --set minibatches --seeds 3 --out benchmarks/results/tune_quick_minibatches.json

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

# 2026-12-06 (issue 15): smaller minibatches, fewer passes. The gradient steps per epoch, not the samples
# each pass reads, buy learning in a short budget: 64 minibatches x 2 passes is 128 steps at a quarter
# of the update's arithmetic of 8 x 8 (64 steps), and learns as well or better at every size.
SHARED = {"shared_params": True}
MINIBATCH_TRIALS = [
    (10, {**SHARED, "epochs": 15}),
    (10, {**SHARED, "epochs": 15, "hidden": [32, 32]}),
    (20, {**SHARED, "epochs": 10, "hidden": [32, 32]}),
    (30, {**SHARED, "epochs": 10, "hidden": [32, 32]}),
    (10, {**SHARED, "epochs": 15, "num_minibatches": 16, "update_epochs": 4}),
    (10, {**SHARED, "epochs": 15, "num_minibatches": 32, "update_epochs": 2}),
    (10, {**SHARED, "epochs": 15, "num_minibatches": 16, "update_epochs": 8}),
    (10, {**SHARED, "epochs": 15, "num_minibatches": 32, "update_epochs": 4}),
    (10, {**SHARED, "epochs": 10, "num_minibatches": 16, "update_epochs": 8}),
    (10, {**SHARED, "epochs": 15, "num_minibatches": 64, "update_epochs": 2}),
    (10, {**SHARED, "epochs": 15, "num_minibatches": 128, "update_epochs": 2}),
    (10, {**SHARED, "epochs": 15, "num_minibatches": 64, "update_epochs": 4}),
    (10, {**SHARED, "epochs": 15, "num_minibatches": 160, "update_epochs": 1}),
    (10, {**SHARED, "epochs": 20, "num_minibatches": 64, "update_epochs": 2}),
    (20, {**SHARED, "epochs": 10}),
    (20, {**SHARED, "epochs": 10, "num_minibatches": 64, "update_epochs": 2}),
    (20, {**SHARED, "epochs": 10, "num_minibatches": 32, "update_epochs": 4}),
    (30, {**SHARED, "epochs": 10}),
    (30, {**SHARED, "epochs": 10, "num_minibatches": 64, "update_epochs": 2}),
    (30, {**SHARED, "epochs": 10, "num_minibatches": 32, "update_epochs": 4}),
    (10, {**SHARED, "torso": "vqc", "epochs": 10}),
    (10, {**SHARED, "torso": "vqc", "epochs": 10, "num_minibatches": 64, "update_epochs": 2}),
]
TRIAL_SETS = {"passes": TRIALS, "minibatches": MINIBATCH_TRIALS}


def trial(size: int, changes: dict, seeds: int = 1) -> dict:
    """One trial: `seeds` runs (seeds 0, 1, ...) trained in one program, each evaluated on the same
    held-out slots; the ratio is the mean over the seeds (the per-seed ratios are listed too)."""
    system = common.system(ReproduceConfig.quick(oracle_lp_first=True), size, slots=50)
    kw = {**BASE, **changes}
    learner = make_learner("ppo", system, PPOConfig(**{k: tuple(v) if k == "hidden" else v for k, v in kw.items()}))
    t0 = time.perf_counter()
    with CompileCounter() as cc:
        state, _ = fit(learner, list(range(seeds)), chunk=kw["epochs"])
    train_s = time.perf_counter() - t0
    policy = learner.sweep_policy(learner.acting_params(state), kw["torso"])
    params = MEQCEnv.stack_params([learner.env.default_params()] * seeds)
    res = evaluate(system, [policy, "random_offloading", "oracle"], num_envs=math.ceil(4096 * 10 / size),
                   num_slots=1, seed=1_000_004, env_params=params)
    cost = [p[kw["torso"]]["mean_cost"] for p in res.points]
    oracle = res.points[0]["oracle"]["mean_cost"]
    rand = res.points[0]["random_offloading"]["mean_cost"]
    return {"size": size, "changes": changes, "seeds": seeds, "train_s": train_s, "compile_s": cc.seconds,
            "run_s": train_s - cc.seconds, "cost": sum(cost) / seeds, "cost_per_seed": cost,
            "ci95": res.points[0][kw["torso"]]["ci95"], "random_offloading": rand, "oracle": oracle,
            "ratio_to_oracle": sum(cost) / seeds / oracle, "ratio_per_seed": [c / oracle for c in cost],
            "random_over_oracle": rand / oracle}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                  "tune_quick.json"))
    ap.add_argument("--set", choices=tuple(TRIAL_SETS), default="passes",
                    help="a named list of trials of docs/learning.md (default passes)")
    ap.add_argument("--trials", help="JSON list of [size, {changes}] instead of a named set")
    ap.add_argument("--seeds", type=int, default=1, help="runs per trial, seeds 0.. (default 1)")
    args = ap.parse_args()
    trials = TRIAL_SETS[args.set] if args.trials is None else [(int(s), dict(c)) for s, c in json.loads(args.trials)]
    out = {"base": {k: list(v) if isinstance(v, tuple) else v for k, v in BASE.items()},
           "device": str(jax.devices()[0]), "cpu_count": os.cpu_count(), "jax_version": jax.__version__,
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "trials": []}
    for size, changes in trials:
        r = trial(size, changes, args.seeds)
        out["trials"].append(r)
        print(f"U=E={size} {json.dumps(changes)}: ratio {r['ratio_to_oracle']:.3f} "
              f"(per seed {', '.join(f'{x:.3f}' for x in r['ratio_per_seed'])}; random {r['random_over_oracle']:.3f}), "
              f"run {r['run_s']:.1f} s, compile {r['compile_s']:.1f} s", flush=True)
        atomic_write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
