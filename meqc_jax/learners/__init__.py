"""Learners behind one interface (`Learner`: init / train_chunk / policy), their pure losses, and the
registry of learner names.

    ppo      hybrid multi-agent PPO of the paper (Section IV): `meqc_jax.learners.ppo`
    droo     DROO-style search over joint modes under contention (learned candidates, priced by the
             model): `meqc_jax.learners.droo`

A new learner is one module implementing `Learner` plus its test and one line in `LEARNERS`.
"""

from __future__ import annotations

import importlib

from meqc_jax.learners.interface import Learner, metric_names, metrics_table

# name -> "module:factory"; a factory takes (system: SystemConfig, config, **kw) and returns a Learner
LEARNERS = {
    "ppo": "meqc_jax.learners.ppo:make_train",
    "droo": "meqc_jax.learners.droo:make_train",
}
LEARNER_NAMES = tuple(LEARNERS)


def make_learner(name: str, system, config=None, **kw) -> Learner:
    """The named learner for `system` (one-line ValueError for an unknown name)."""
    if name not in LEARNERS:
        raise ValueError(f"unknown learner {name!r}: allowed {', '.join(LEARNER_NAMES)}")
    module, factory = LEARNERS[name].split(":")
    return getattr(importlib.import_module(module), factory)(system, config, **kw)


__all__ = ["LEARNERS", "LEARNER_NAMES", "Learner", "make_learner", "metric_names", "metrics_table"]
