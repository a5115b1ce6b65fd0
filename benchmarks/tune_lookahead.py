"""The lookahead trials of docs/learning.md "Looking ahead": PPO on a scenario with carried state vs myopic
greedy and drift-plus-penalty, paired over the same instances.

    python benchmarks/tune_lookahead.py MEQC-Queues-v0 --epochs 400 --set actor_order=sequential \
        [--set actor_order=simultaneous ...] [--eval-envs 32] [--out benchmarks/results/tune_lookahead.json]

One trial trains one run (seed 0) at U = E = 10 with `PPOConfig.preset("lookahead")` (changed by each
`--set FIELD=VALUE`; values parsed as JSON where they parse, else as text), then evaluates it with
`greedy` and `lyapunov` (V = 30, theta = the capacity; with a battery also V = 0.3, theta = half of it) on
`--eval-envs` instances x one 500-slot episode, every policy on its own trajectory with common random numbers
(the dynamics parts' evaluation seed). Prints and appends one JSON record to `--out` (written atomically):
the training seconds, the training curve every tenth of the run, each policy's cost and drop share, and
PPO's paired excess over greedy with its 95 % interval.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np

from meqc_jax.baselines import lyapunov_policy
from meqc_jax.evaluate import evaluate, paired_comparison
from meqc_jax.io import atomic_write_json
from meqc_jax.learners import make_learner
from meqc_jax.learners.ppo import PPOConfig
from meqc_jax.loop import fit
from meqc_jax.scenarios import scenario_config

EVAL_SEED = 2_000_003  # the dynamics parts' evaluation seed with ReproduceConfig.seed = 0


def _value(text: str):
    try:
        v = json.loads(text)
    except json.JSONDecodeError:
        return text
    return tuple(v) if isinstance(v, list) else v


def make_trial_learner(scenario: str, epochs: int, changes: dict, size: int = 10):
    """The trial's SystemConfig and PPO learner. A bad scenario, field or value raises ValueError (one line)
    before anything compiles (the learner checks its minibatch count before its first compile)."""
    fields = {f.name for f in dataclasses.fields(PPOConfig)} - {"hparams"}
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise ValueError(f"--set {unknown[0]}=... is invalid: allowed a PPOConfig field other than hparams")
    system = scenario_config(scenario, num_users=size, num_servers=size, slots_per_episode=500)
    return system, make_learner("ppo", system, PPOConfig.preset("lookahead", epochs=epochs, **changes))


def trial(scenario: str, changes: dict, system, learner, eval_envs: int, seed: int = 0) -> dict:
    """Train `learner` (seed `seed`) and evaluate it against greedy and lyapunov: one JSON record."""
    epochs = learner.ppo.epochs
    t = time.time()
    chunk = max(c for c in range(1, min(25, epochs) + 1) if epochs % c == 0)  # one training program
    state, metrics = fit(learner, [seed], chunk=chunk, progress=False)
    train_s = time.time() - t
    curve = np.asarray(metrics.cost)[0]
    pols = ["greedy", lyapunov_policy(system, 30.0, system.battery_j), learner.policy(learner.acting_params(state, 0), "ppo")]
    if "battery" in system.dynamics:
        pols.insert(2, lyapunov_policy(system, 0.3, 0.5 * system.battery_j))
    res = evaluate(system, pols, num_envs=eval_envs, num_slots=500, seed=EVAL_SEED, progress=False)
    S = res.summary
    paired = paired_comparison(res.per_slot, "ppo", "greedy")
    return dict(scenario=scenario, epochs=epochs, changes={k: (list(v) if isinstance(v, tuple) else v)
                                                           for k, v in changes.items()},
                eval_envs=eval_envs, train_s=round(train_s, 1),
                curve=[round(float(c), 1) for c in curve[:: max(1, epochs // 10)]],
                costs={n: round(S[n]["mean_cost"], 1) for n in S}, drops={n: round(S[n]["drop_share"], 4) for n in S},
                ppo_vs_greedy=round(paired["excess"], 4), ci95=round(paired["ci95"], 4))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario")
    ap.add_argument("--epochs", type=int, default=200, help="PPO epochs (PPOConfig.epochs' range)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a PPOConfig change")
    ap.add_argument("--eval-envs", type=int, default=32, help="evaluation instances, at least 2 (for the interval)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "tune_lookahead.json"))
    args = ap.parse_args()
    changes = {}
    for item in args.set:
        field, sep, text = item.partition("=")
        if not sep:
            ap.error(f"--set {item!r} is invalid: allowed FIELD=VALUE")
        changes[field.strip()] = _value(text.strip())
    if args.eval_envs < 2:
        ap.error(f"--eval-envs={args.eval_envs} is invalid: allowed an integer >= 2")
    try:  # every configuration error before anything compiles
        system, learner = make_trial_learner(args.scenario, args.epochs, changes)
    except (ValueError, TypeError) as e:
        ap.error(str(e))
    record = trial(args.scenario, changes, system, learner, args.eval_envs)
    print(json.dumps(record))
    records = json.load(open(args.out)) if os.path.exists(args.out) else []
    atomic_write_json(args.out, records + [record])


if __name__ == "__main__":
    main()
