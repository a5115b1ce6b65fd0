"""The interface every learner implements; the host loop, the experiments and the CLI use only this.

A learner is built for one environment configuration and holds its compiled programs:

    learner = make_learner("ppo", system, config)      # e.g. meqc_jax.learners.ppo.make_train
    states = learner.init_batch(keys, env_params)      # one training state per run, [runs, ...]
    states, metrics = learner.train_chunk_batch(states, n)   # n epochs of every run, one jitted call
    policy = learner.policy(learner.acting_params(states, i), "ppo")   # a `baselines.Policy`

`metrics` is the learner's named metrics pytree (a `flax.struct` dataclass) with leaves
[runs, n]; it must have a `nonfinite` field (> 0 where NaN or inf appeared) so that the loop can
stop a diverged run. Training states are pytrees, so orbax checkpoints them as they are.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from meqc_jax.baselines import Policy
from meqc_jax.compilation import ProgramCache
from meqc_jax.env import MEQCEnv


class Learner(abc.ABC):
    """What `meqc_jax.loop.fit`, `meqc_jax.experiments` and `meqc_jax.cli` need of a learner."""

    env: MEQCEnv  # the environment it trains on (its reward is the learner's reward)
    epochs: int  # epochs a full training runs
    num_envs: int  # environments per run (the second batch axis that `fit` shards)
    state_batch_axes: Any  # pytree prefix of a runs-batched state: leading batch axes per part
    metrics_type: type  # the metrics dataclass train_chunk returns (has a `nonfinite` field)

    @abc.abstractmethod
    def init(self, key, env_params=None):
        """A fresh training state for one run (pure; `env_params` is one traced `EnvParams` or None)."""

    @abc.abstractmethod
    def train_chunk(self, state, num_epochs: int):
        """Advance one run by `num_epochs` epochs (pure): (state, metrics with leaves [num_epochs])."""

    @abc.abstractmethod
    def init_batch(self, keys, env_params):
        """`init` over a leading runs axis, compiled once per learner."""

    @abc.abstractmethod
    def compiled_chunk(self, states, num_epochs: int):
        """The program `train_chunk_batch(states, num_epochs)` runs, compiled ahead of time (once per
        learner, state layout and chunk length) and refused before it ever runs when its memory plan
        exceeds the device (`compilation.check_fits`)."""

    def memory_floor(self, states) -> tuple[int, str]:
        """A lower bound on the bytes one device holds while a training chunk of these runs-batched states (arrays
        or `jax.ShapeDtypeStruct`s with their shardings) runs, found from shapes alone (nothing built, traced or
        compiled), and what it counts: by default the states in and the states out (the chunk's program donates
        nothing, so both are live). `compiled_chunk` refuses a chunk whose floor exceeds the device before it
        compiles it; learners add what every chunk of theirs must also hold."""
        from meqc_jax.compilation import bytes_per_device

        return 2 * bytes_per_device(states), "the training state in and out"

    def train_chunk_batch(self, states, num_epochs: int):
        """`train_chunk` over a leading runs axis: `compiled_chunk(states, num_epochs)(states)`."""
        return self.compiled_chunk(states, num_epochs)(states)

    @property
    def compiled_chunks(self) -> int:
        """How many training programs this learner holds compiled (one per state layout and chunk length; for
        learners that share their programs, `ScanLearner.build_programs(twin=...)`, those compiled by any of them)."""
        return len(getattr(self, "chunk_executables", ()))  # (chunk length, state layout) -> executable

    @abc.abstractmethod
    def epochs_done(self, states) -> int:
        """Epochs completed by a runs-batched state (all runs advance together)."""

    @abc.abstractmethod
    def acting_params(self, states, run: int | None = None):
        """The parameters the policy acts with: every run's (stacked) or one run's."""

    @abc.abstractmethod
    def policy(self, params, name: str) -> Policy:
        """The trained agents acting deterministically with `params`, for `evaluate`."""

    @abc.abstractmethod
    def sweep_policy(self, stacked_params, name: str) -> Policy:
        """Trained agents per sweep point (parameters stacked over points), for `evaluate(env_params=...)`."""

    @abc.abstractmethod
    def param_counts(self) -> dict:
        """Trainable parameters: {"per_agent", "agents", "central_critic", "total"}."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """A JSON-able description of the learner (its name, reward, critic, discount, ...)."""


@dataclasses.dataclass(frozen=True, eq=False)
class LearnerSpec:
    """What a learner's registry entry carries (`meqc_jax.learners.LEARNERS`): how to build the learner, the frozen
    dataclass of its settings, and its named sets of settings. `meqc train --learner NAME --hparams PRESET --set
    FIELD=VALUE` is `spec.make(system, spec.config(system, PRESET, FIELD=value))`.

    `build(system, config)` returns the `Learner`; `config_class` is None for a learner without settings;
    `presets` maps a name to field values over `config_class`'s defaults; `default_preset` is the preset used when
    none is named, a name or a function of the SystemConfig (PPO: `lookahead` where state carries between slots);
    `derive(values)` gives defaults that depend on the values given (a value given or preset wins).
    """

    name: str
    build: Callable[..., Learner]
    config_class: type | None = None
    presets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    default_preset: str | Callable[[Any], str] | None = None
    summary: str = ""  # one line for --help and the docs
    # defaults that depend on the other values (preset and overrides merged; PPO: the paper's epochs for the torso)
    derive: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None

    def fields(self) -> tuple[str, ...]:
        """The settings `--set` may give (the config class's fields)."""
        return () if self.config_class is None else tuple(f.name for f in dataclasses.fields(self.config_class))

    def preset_for(self, system) -> str | None:
        """The preset used for `system` when none is named."""
        return self.default_preset(system) if callable(self.default_preset) else self.default_preset

    def config(self, system, preset: str | None = None, **overrides):
        """The learner's settings for `system`: `preset`'s values (default `preset_for(system)`) with `overrides`;
        an unknown preset or field, or a value the config class refuses, is one ValueError line."""
        if self.config_class is None:
            if overrides or preset:
                given = ", ".join([*([f"--hparams {preset}"] if preset else []), *map("--set {}=...".format, overrides)])
                raise ValueError(f"learner {self.name!r} takes no settings: {given} is invalid")
            return None
        preset = self.preset_for(system) if preset is None else preset
        if preset is not None and preset not in self.presets:
            raise ValueError(f"learner {self.name!r}: --hparams={preset!r} is invalid: allowed one of "
                             f"{', '.join(self.presets) or '(none: this learner has no presets)'}")
        unknown = [k for k in overrides if k not in self.fields()]
        if unknown:
            raise ValueError(f"learner {self.name!r}: {self.config_class.__name__} has no field {unknown[0]!r}: "
                             f"allowed {', '.join(self.fields())}")
        given = {**self.presets.get(preset, {}), **overrides}
        derived = {} if self.derive is None else self.derive(given)
        return self.config_class(**{**given, **{k: v for k, v in derived.items() if k not in given}})

    def make(self, system, config=None, **kw) -> Learner:
        """The learner for `system` with `config` (None: its builder's default; `kw` go to the builder), checked
        to be a `Learner`."""
        learner = self.build(system, config, **kw)
        if not isinstance(learner, Learner):
            raise ValueError(f"learner {self.name!r}: its builder returned {type(learner).__name__}, not a "
                             "meqc_jax.learners.Learner")
        return learner


def compiled_chunk_program(cache, program, states, num_epochs: int, what: str, lower: str, floor=None):
    """`program(states, num_epochs)` (a jitted chunk of epochs over runs) compiled ahead of time, once per
    state layout and chunk length (kept in `cache`: a `compilation.ProgramCache`, or a plain dict), and refused
    before it ever runs when its memory plan exceeds the device (`compilation.check_fits`: one line naming `what`
    was too large and what to lower). `states` may be abstract (`jax.ShapeDtypeStruct`s with the shardings the real
    states will have: `loop.fit` checks a training before it builds anything); `floor()` -> (bytes, what they
    count), a lower bound from shapes alone (`Learner.memory_floor`), refuses an oversized chunk before it is even
    compiled. A refused program is not kept: the next call checks again."""
    from meqc_jax.compilation import check_fits, refuse_if_over

    leaves, tree = jax.tree.flatten(states)
    sig = (num_epochs, tree, tuple((x.shape, x.dtype, getattr(x, "sharding", None)) for x in leaves))

    def build():
        if floor is not None:
            need, basis = floor()
            refuse_if_over(need, what, lower, basis + ", from the shapes alone", at_least=True)
        compiled = program.lower(states, num_epochs).compile()
        check_fits(compiled, what, lower)
        return compiled

    if isinstance(cache, ProgramCache):
        return cache.get(sig, build)
    if sig not in cache:
        cache[sig] = build()
    return cache[sig]


class ScanLearner(Learner):
    """What PPO and DROO share: a training is `epoch(state) -> (state, metrics)` scanned over epochs
    (`train_chunk`), vmapped over runs and jitted once (`chunk_program`), compiled per state layout and chunk
    length and checked against the device (`compiled_chunk`, kept in a `ProgramCache`).

    A subclass sets `epochs`, `num_envs` and `state_batch_axes`, implements `init`, `epoch`, `chunk_description`
    and the acting half (`policy`, `sweep_policy`, ...), and calls `build_programs()` at the end of its
    `__init__`. Its state has `params` (what it acts with) and `epoch` (epochs done) fields."""

    chunk_lower = "the runs trained at once"  # what to lower when a training chunk does not fit

    def build_programs(self, compiler_options=None, twin: ScanLearner | None = None) -> None:
        """Jit the batched initialization and training chunk; with `twin`, run its programs instead (a learner
        whose settings differ from `twin`'s only where no program reads them: they then compile once)."""
        from meqc_jax.sharding import FAST_COMPILE, jit_options

        if twin is not None:
            self.init_program, self.chunk_program = twin.init_program, twin.chunk_program
            self.chunk_executables = twin.chunk_executables
            return
        self.init_program = jax.jit(jax.vmap(self.init), compiler_options=dict(FAST_COMPILE))  # runs once
        self.chunk_program = jax.jit(self._train_chunk_batch, static_argnums=1,
                                     compiler_options=jit_options(compiler_options))
        # (chunk length, abstract states) -> checked executable (`compiled_chunk`)
        self.chunk_executables = ProgramCache(f"{type(self).__name__} training chunks")

    @abc.abstractmethod
    def epoch(self, state, _=None):
        """One epoch of one run (pure): (state, metrics)."""

    @abc.abstractmethod
    def chunk_description(self, runs: int, num_epochs: int) -> str:
        """What a training chunk of `runs` runs holds, for the one line that refuses it when it does not fit."""

    def train_chunk(self, state, num_epochs: int):
        """Advance `num_epochs` epochs: (state, metrics with leaves [num_epochs])."""
        return jax.lax.scan(self.epoch, state, None, length=num_epochs)

    def _train_chunk_batch(self, states, num_epochs: int):
        return jax.vmap(lambda s: self.train_chunk(s, num_epochs))(states)

    def __call__(self, key, env_params=None):
        """Train from scratch for `epochs` epochs: (final state, metrics per epoch). Pure; vmappable (over keys,
        and over `env_params` of a sweep)."""
        return self.train_chunk(self.init(key, env_params), self.epochs)

    def init_batch(self, keys, env_params):
        return self.init_program(keys, env_params)

    def compiled_chunk(self, states, num_epochs: int):
        """`chunk_program` compiled ahead of time for these states (once per shape and chunk length) and checked
        against the device's memory before it ever runs (`compilation.ProgramTooLarge`)."""
        runs = int(np.shape(states.epoch)[0]) if np.ndim(states.epoch) else 1
        return compiled_chunk_program(self.chunk_executables, self.chunk_program, states, num_epochs,
                                      self.chunk_description(runs, num_epochs), self.chunk_lower,
                                      floor=lambda: self.memory_floor(states))

    def epochs_done(self, states) -> int:
        return int(np.asarray(states.epoch).reshape(-1)[0])

    def acting_params(self, states, run: int | None = None):
        return states.params if run is None else jax.tree.map(lambda a: a[run], states.params)


def settings_dict(config) -> dict | None:
    """A learner's settings as JSON (None for a learner without settings; `to_dict()` where it has one)."""
    from meqc_jax.config import dataclass_to_dict

    return None if config is None else config.to_dict() if hasattr(config, "to_dict") else dataclass_to_dict(config)


def metric_names(metrics) -> tuple[str, ...]:
    """The field names of a metrics pytree (a dataclass), in order."""
    return tuple(f.name for f in dataclasses.fields(metrics))


def metrics_table(metrics) -> np.ndarray:
    """A metrics pytree with leaves [..., epochs] as one array [..., epochs, len(fields)] (for CSVs)."""
    return np.stack([np.asarray(getattr(metrics, n), dtype=np.float64) for n in metric_names(metrics)], axis=-1)


__all__ = ["Learner", "LearnerSpec", "ScanLearner", "compiled_chunk_program", "metric_names", "settings_dict", "metrics_table"]
