"""Train any learner on one configuration, evaluate it on held-out slots against the references, and write
every output: what `meqc train` runs, callable from Python and notebooks as well.

    training = prepare(system, "droo", hparams="swaps", settings={"epochs": 4})   # ValueError: one line
    summary = run(training, out="runs/droo", seeds=(0, 1))

`prepare` resolves the learner (a registered name, an installed entry point or a user's
`module.path:attribute`, `meqc_jax.learners.learner_spec`), builds its settings from a preset and overrides
and builds the learner, so every bad name, field or value is refused before anything is trained. `run`
trains one run per seed with `loop.fit` (checkpointed, resumable), then evaluates each seed's policy with the
registered policies that apply on the same held-out slots (`evaluate.HELD_OUT_SEED_OFFSET` past the first
seed), and writes into `out`, each file atomically:

    config.json         the system, the learner, its preset and settings, the seeds
    metrics.csv         the learner's metrics per seed and epoch (rewritten after every chunk)
    checkpoints/        orbax checkpoints of the training state (`loop.fit`)
    summary.json        held-out costs: per seed, their mean, the reference and its ratio, the baselines
    learning_curve.png  the metric `cost` per epoch against the references (learners that report one)

The same outputs for every learner; the reference is the oracle in the paper's model, the exact joint optimum
under contention where it is enumerable, else drift-plus-penalty (`lyapunov`) where state carries, else greedy.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any

import numpy as np

from meqc_jax.baselines import BASELINE_NAMES, POLICIES, policy_names
from meqc_jax.config import SystemConfig
from meqc_jax.evaluate import HELD_OUT_SEED_OFFSET, evaluate
from meqc_jax.io import atomic_write_csv, atomic_write_json
from meqc_jax.learners import Learner, LearnerSpec, learner_spec, metric_names, metrics_table
from meqc_jax.learners.interface import settings_dict
from meqc_jax.loop import fit
from meqc_jax.plots import plot_learning_curve
from meqc_jax.sharding import device_description


@dataclasses.dataclass(frozen=True, eq=False)
class Training:
    """A learner ready to train on `system` (`prepare`): its registry entry, preset, settings and the learner."""

    system: SystemConfig
    spec: LearnerSpec
    hparams: str | None  # the preset its settings start from (None: the learner has none)
    config: Any  # the learner's settings (its `spec.config_class`), or None
    learner: Learner

    @property
    def label(self) -> str:
        """What its policies are called (`<label>_seed<s>`): PPO's torso (mlp, vqc), else the learner's name."""
        return str(self.learner.describe().get("torso", self.spec.name))


def prepare(system: SystemConfig, learner: str = "ppo", hparams: str | None = None,
            settings: dict | None = None) -> Training:
    """The learner `learner` for `system`, its settings `hparams`' preset (default: the learner's for `system`)
    with `settings` (field -> value) over it; every bad name, field or value is one ValueError line."""
    spec = learner_spec(learner)
    config = spec.config(system, hparams, **(settings or {}))
    hparams = (spec.preset_for(system) if hparams is None else hparams) if spec.config_class is not None else None
    return Training(system, spec, hparams, config, spec.make(system, config))


def reference_name(system: SystemConfig) -> str:
    """The policy a training is measured against: the registered reference (the oracle, the exact joint optimum)
    where one applies, else drift-plus-penalty where it applies, else greedy."""
    refs = policy_names(system)
    return next((n for n in refs if n in POLICIES and POLICIES[n].reference),
                "lyapunov" if "lyapunov" in refs else "greedy")


def run(training: Training, out: str, seeds=(0,), *, chunk: int = 10, eval_slots: int = 10_000,
        scenario: str | None = None, resume: bool = True, progress: bool = True, log=print,
        fit_hint: str = "the seeds, the envs, the users and servers") -> dict:
    """Train `training` once per seed, evaluate, write every output into `out` (module docstring); the summary.
    A diverged run raises `FloatingPointError`, a program that would not fit the device `ProgramTooLarge`."""
    learner, system, spec = training.learner, training.system, training.spec
    seeds = [int(s) for s in seeds]
    about, params = learner.describe(), learner.param_counts()
    config_dict = settings_dict(training.config)
    os.makedirs(out, exist_ok=True)
    atomic_write_json(os.path.join(out, "config.json"), {
        "system": system.to_dict(), "learner": spec.name, "hparams": training.hparams, "learner_config": config_dict,
        "seeds": seeds, "reward_scale": about.get("reward_scale"), "param_counts": params, "scenario": scenario})
    log(f"training {training.label} ({spec.name}"
        + (f", {training.hparams} hparams" if training.hparams else "")
        + "".join(f", {k} {about[k]}" for k in ("reward", "critic") if k in about)
        + (f", discount {about['gamma']}" if "gamma" in about else "")
        + f") on {scenario or 'the configuration'}, U={system.num_users}, E={system.num_servers}, "
          f"preset={system.preset}: {learner.epochs} epochs x {system.slots_per_episode} slots x "
          f"{learner.num_envs} envs, seeds {seeds}")

    def write_metrics(done, metrics, elapsed):
        table = metrics_table(metrics)  # [seeds, epochs, metrics]
        rows = [[s, e + 1] + [f"{float(v):.9g}" for v in table[i, e]]
                for i, s in enumerate(seeds) for e in range(table.shape[1])]
        atomic_write_csv(os.path.join(out, "metrics.csv"), ["seed", "epoch", *metric_names(metrics)], rows)

    t0 = time.perf_counter()
    state, metrics = fit(learner, seeds, chunk=chunk, ckpt_dir=os.path.join(out, "checkpoints"), resume=resume,
                         progress=progress, on_chunk=write_metrics)
    train_wall = time.perf_counter() - t0
    write_metrics(learner.epochs, metrics, train_wall)

    envs = min(100, eval_slots)
    steps = math.ceil(eval_slots / envs)
    learned = [learner.policy(learner.acting_params(state, i), f"{training.label}_seed{s}")
               for i, s in enumerate(seeds)]
    refs = [n for n in policy_names(system) if n in POLICIES]  # the registered ones (a user's are not yardsticks)
    reference = reference_name(system)
    t1 = time.perf_counter()
    res = evaluate(system, [*learned, *refs], num_envs=envs, num_slots=steps, seed=seeds[0] + HELD_OUT_SEED_OFFSET,
                   progress=progress, fit_hint=fit_hint)
    eval_wall = time.perf_counter() - t1
    per_seed = {p.name: res.summary[p.name]["mean_cost"] for p in learned}
    policy_cost = float(np.mean(list(per_seed.values())))
    ref_cost = res.summary[reference]["mean_cost"]
    summary = {
        "learner": spec.name, "hparams": training.hparams, "learner_config": config_dict, "describe": about,
        **{k: about[k] for k in ("torso", "reward", "critic", "gamma") if k in about},
        "scenario": scenario, "param_counts": params,
        "policy_cost": policy_cost, "policy_cost_per_seed": per_seed,
        "reference": reference, "reference_cost": ref_cost, "ratio_to_reference": policy_cost / ref_cost,
        **({"oracle_cost": ref_cost, "ratio_to_oracle": policy_cost / ref_cost} if reference == "oracle" else {}),
        "baselines": {b: res.summary[b]["mean_cost"] for b in refs if b in BASELINE_NAMES},
        "evaluation": res.summary, "eval_slots": envs * steps, "epochs": learner.epochs, "seeds": seeds,
        "wall_s": train_wall + eval_wall, "train_wall_s": train_wall, "eval_wall_s": eval_wall,
        "wall_s_per_epoch": train_wall / max(learner.epochs, 1), "device": device_description(),
        "eval_placement": res.placement,
    }
    atomic_write_json(os.path.join(out, "summary.json"), summary)
    if "cost" in metric_names(metrics):
        plot_learning_curve(os.path.join(out, "learning_curve.png"), np.asarray(metrics.cost), summary["baselines"],
                            ref_cost, policy_cost, reference=reference,
                            title=f"U={system.num_users}, E={system.num_servers}, {system.preset}, {training.label}"
                                  + (f", {training.hparams} hparams" if training.hparams else ""))
    log(f"policy {policy_cost:.2f} = {summary['ratio_to_reference']:.4f} x {reference} {ref_cost:.2f}; "
        + ", ".join(f"{k} {v:.2f}" for k, v in summary["baselines"].items()))
    log(f"train {train_wall:.1f} s ({summary['wall_s_per_epoch']:.2f} s/epoch), eval {eval_wall:.1f} s; wrote {out}")
    return summary


__all__ = ["Training", "prepare", "reference_name", "run"]
