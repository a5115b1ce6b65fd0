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
from typing import Any

import numpy as np

from meqc_jax.baselines import Policy
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
        """How many training programs this learner holds compiled (one per state layout and chunk length; for PPO
        learners that share their programs, `PPOLearner.share_programs`, those compiled by any of them)."""
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


def compiled_chunk_program(cache: dict, program, states, num_epochs: int, what: str, lower: str, floor=None):
    """`program(states, num_epochs)` (a jitted chunk of epochs over runs) compiled ahead of time, once per
    state layout and chunk length (kept in `cache`), and refused before it ever runs when its memory plan
    exceeds the device (`compilation.check_fits`: one line naming `what` was too large and what to lower).
    `states` may be abstract (`jax.ShapeDtypeStruct`s with the shardings the real states will have: `loop.fit`
    checks a training before it builds anything); `floor()` -> (bytes, what they count), a lower bound from
    shapes alone (`Learner.memory_floor`), refuses an oversized chunk before it is even compiled."""
    import jax

    from meqc_jax.compilation import check_fits, refuse_if_over

    leaves, tree = jax.tree.flatten(states)
    sig = (num_epochs, tree, tuple((x.shape, x.dtype, getattr(x, "sharding", None)) for x in leaves))
    compiled = cache.get(sig)
    if compiled is None:
        if floor is not None:
            need, basis = floor()
            refuse_if_over(need, what, lower, basis + ", from the shapes alone", at_least=True)
        compiled = program.lower(states, num_epochs).compile()
        check_fits(compiled, what, lower)
        cache[sig] = compiled
    return compiled


def metric_names(metrics) -> tuple[str, ...]:
    """The field names of a metrics pytree (a dataclass), in order."""
    return tuple(f.name for f in dataclasses.fields(metrics))


def metrics_table(metrics) -> np.ndarray:
    """A metrics pytree with leaves [..., epochs] as one array [..., epochs, len(fields)] (for CSVs)."""
    return np.stack([np.asarray(getattr(metrics, n), dtype=np.float64) for n in metric_names(metrics)], axis=-1)


__all__ = ["Learner", "compiled_chunk_program", "metric_names", "metrics_table"]
