"""Learners behind one interface (`Learner`: init / train_chunk / policy), their pure losses, and the
registry of learner names.

    ppo      hybrid multi-agent PPO of the paper (Section IV): `meqc_jax.learners.ppo`
    droo     DROO-style search over joint modes under contention (learned candidates, priced by the
             model): `meqc_jax.learners.droo`
    priced   drift-plus-penalty's per-slot solver under learned prices of the carry, from the best
             grid V, refined by evolution strategies on whole episodes: `meqc_jax.learners.priced`

Each entry names a `LearnerSpec` (how to build the learner, its settings' dataclass and named presets).
A new learner is one module implementing `Learner` with a `LearnerSpec`, its test, and one line in
`LEARNERS`; it then trains from `meqc train --learner NAME`, `meqc sweep --policies learner:NAME` and
`meqc reproduce --learner NAME`. A user's own learner needs no line here: `--learner my_pkg.my_mod:MyLearner`
(a `LearnerSpec`, or a `Learner` class / factory `(system, config) -> Learner`, whose optional attributes
`config_class`, `presets` and `default_preset` say what `--set` and `--hparams` may give), or an installed
package's entry point in the group `meqc_jax.learners`.
"""

from __future__ import annotations

import dataclasses

from meqc_jax import plugins
from meqc_jax.learners.interface import Learner, LearnerSpec, ScanLearner, metric_names, metrics_table

# name -> "module:attribute" naming its LearnerSpec (or a factory (system, config, **kw) -> Learner)
LEARNERS = {
    "ppo": "meqc_jax.learners.ppo:LEARNER",
    "droo": "meqc_jax.learners.droo:LEARNER",
    "priced": "meqc_jax.learners.priced:LEARNER",
}
LEARNER_NAMES = tuple(LEARNERS)
ENTRY_POINTS = "meqc_jax.learners"
EXPECTED = ("a meqc_jax.learners.LearnerSpec, or a Learner class or factory (SystemConfig, config) -> "
            "meqc_jax.learners.Learner")


def learner_names() -> tuple[str, ...]:
    """The registered learners, then those installed packages provide (`meqc_jax.learners` entry points)."""
    return LEARNER_NAMES + tuple(n for n in plugins.entry_points(ENTRY_POINTS) if n not in LEARNERS)


def as_spec(obj, name: str, what: str = "--learner") -> LearnerSpec:
    """`obj` as a `LearnerSpec`: itself, or a `Learner` class / factory `(system, config) -> Learner` with its
    optional `config_class`, `presets` and `default_preset` attributes (one-line ValueError for anything else)."""
    if isinstance(obj, LearnerSpec):
        return obj
    if not callable(obj):
        raise ValueError(f"{what}={name!r} names an object of type {type(obj).__name__!r}; expected {EXPECTED}")
    return LearnerSpec(name, obj, getattr(obj, "config_class", None), dict(getattr(obj, "presets", {}) or {}),
                       getattr(obj, "default_preset", None), (obj.__doc__ or "").strip().split("\n")[0])


def learner_spec(name: str, what: str = "--learner") -> LearnerSpec:
    """The `LearnerSpec` that `name` names: a registered learner, an installed entry point, or a user's
    `module.path:attribute`; loaded now, so that a wrong name or path is one ValueError line before anything runs."""
    if name in LEARNERS:  # a registered or installed learner is called by the name it is listed under
        return dataclasses.replace(as_spec(plugins.load(LEARNERS[name], what, EXPECTED), name, what), name=name)
    if plugins.is_spec(name):  # a user's LearnerSpec keeps its own name; a class or factory is named by its path
        return as_spec(plugins.load(name, what, EXPECTED), name, what)
    ep = plugins.entry_points(ENTRY_POINTS).get(name)
    if ep is None:
        raise ValueError(f"{what}={name!r} is invalid: allowed one of {', '.join(learner_names())}, an installed "
                         f"{ENTRY_POINTS} entry point, or module.path:attribute naming {EXPECTED}")
    return dataclasses.replace(as_spec(plugins.load_entry_point(ep, what, EXPECTED), name, what), name=name)


def default_learner(system) -> str:
    """The learner `meqc train` trains when none is named: the best one measured for the model (docs/learning.md,
    benchmarks/beat_dpp.py): `priced` where state carries between slots (queues, batteries, drift), `droo` under
    contention alone (nothing carried), the paper's hybrid PPO on the paper's model."""
    from meqc_jax import dynamics

    if dynamics.carries_state(system):
        return "ppo" if dynamics.contended(system) else "priced"
    return "droo" if dynamics.contended(system) else "ppo"


def make_learner(name: str, system, config=None, **kw) -> Learner:
    """The named learner for `system` with `config` (None: the learner's own default); `kw` go to its builder
    (one-line ValueError for an unknown name or a builder that returns no `Learner`)."""
    return learner_spec(name).make(system, config, **kw)


__all__ = ["ENTRY_POINTS", "LEARNERS", "LEARNER_NAMES", "Learner", "LearnerSpec", "ScanLearner", "as_spec",
           "default_learner", "learner_names",
           "learner_spec", "make_learner", "metric_names", "metrics_table"]
