"""A tiny learner (and a policy) written as a user would, outside the package (the tests load it by module path,
`split_bandit:SplitBandit`, through a registry line, and through an entry point).

Every user keeps the same share phi of its task (one of five) and offloads the rest to server 0; each
epoch prices every phi on a batch of fresh slots (the env's own `price`) and keeps running means; it acts
with the cheapest. Its settings (`BanditConfig`) and presets are what `meqc train --set` / `--hparams` give.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from meqc_jax.baselines import Policy
from meqc_jax.config import SystemConfig
from meqc_jax.env import MEQCEnv
from meqc_jax.learners import Learner, LearnerSpec
from meqc_jax.learners.interface import compiled_chunk_program

PHI_GRID = jnp.linspace(0.0, 1.0, 5)


@dataclasses.dataclass(frozen=True)
class BanditConfig:
    epochs: int = 6
    num_envs: int = 8  # fresh slots per epoch

    def __post_init__(self):
        for name in ("epochs", "num_envs"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 10_000:
                raise ValueError(f"BanditConfig.{name}={v!r} is invalid: allowed an integer in [1, 10000]")


@struct.dataclass
class BanditState:
    mean_cost: jnp.ndarray  # [G] running mean slot cost of each constant split phi
    count: jnp.ndarray  # [] batches seen
    key: jnp.ndarray  # raw key data
    epoch: jnp.ndarray  # [] int32


@struct.dataclass
class BanditMetrics:
    cost: jnp.ndarray  # the cheapest split's running mean cost
    nonfinite: jnp.ndarray


class SplitBandit(Learner):
    """the split bandit: the cheapest constant split phi, offloading the rest to server 0"""

    metrics_type = BanditMetrics
    config_class = BanditConfig
    presets = {"default": {}, "fast": {"epochs": 2}}
    default_preset = "default"

    def __init__(self, system: SystemConfig, config: BanditConfig | None = None):
        config = BanditConfig() if config is None else config
        self.system, self.env, self.config = system, MEQCEnv(system), config
        self.epochs, self.num_envs = config.epochs, config.num_envs
        self.state_batch_axes = BanditState(mean_cost=1, count=1, key=1, epoch=1)
        self.chunk_program = jax.jit(jax.vmap(self.train_chunk, in_axes=(0, None)), static_argnums=1)
        self.chunk_executables: dict = {}

    def action(self, phi):
        return jnp.zeros(self.system.num_users, jnp.int32), jnp.full(self.system.num_users, phi)

    def init(self, key, env_params=None):
        return BanditState(mean_cost=jnp.zeros(PHI_GRID.shape), count=jnp.float32(0.0),
                           key=jax.random.key_data(key), epoch=jnp.int32(0))

    def _epoch(self, state, _):
        key, k_reset, k_price = jax.random.split(jax.random.wrap_key_data(state.key), 3)
        _, envs = jax.vmap(self.env.reset)(jax.random.split(k_reset, self.num_envs))
        price = jax.vmap(lambda k, s, phi: self.env.price(k, s, self.action(phi)).total, in_axes=(0, 0, None))
        costs = jax.vmap(lambda phi: jnp.mean(price(jax.random.split(k_price, self.num_envs), envs, phi)))(PHI_GRID)
        count = state.count + 1.0
        mean = state.mean_cost + (costs - state.mean_cost) / count
        new = BanditState(mean_cost=mean, count=count, key=jax.random.key_data(key), epoch=state.epoch + 1)
        return new, BanditMetrics(cost=jnp.min(mean), nonfinite=(~jnp.all(jnp.isfinite(mean))).astype(jnp.float32))

    def train_chunk(self, state, num_epochs):
        return jax.lax.scan(self._epoch, state, None, length=num_epochs)

    def init_batch(self, keys, env_params):
        return jax.vmap(self.init)(keys)

    def compiled_chunk(self, states, num_epochs):
        return compiled_chunk_program(self.chunk_executables, self.chunk_program, states, num_epochs,
                                      "the split bandit", "nothing")

    def epochs_done(self, states):
        return int(np.asarray(states.epoch).reshape(-1)[0])

    def acting_params(self, states, run=None):
        return states.mean_cost if run is None else states.mean_cost[run]

    def policy(self, params, name):
        return Policy(name, lambda key, env_state, obs: self.action(PHI_GRID[jnp.argmin(params)]))

    def sweep_policy(self, stacked_params, name):
        return Policy(name, None, params=stacked_params,
                      act_with=lambda p, key, env_state, obs: self.action(PHI_GRID[jnp.argmin(p)]))

    def param_counts(self):
        return {"per_agent": 0, "agents": 0, "central_critic": 0, "total": int(PHI_GRID.size)}

    def describe(self):
        return {"learner": "split_bandit", "phi_grid": [float(x) for x in PHI_GRID]}


# what a registry line or an entry point may name instead of the class: the same learner as a LearnerSpec
LEARNER = LearnerSpec("split_bandit", SplitBandit, BanditConfig, SplitBandit.presets, "default",
                      "the cheapest constant split")


def make_half_to_server0(config: SystemConfig) -> Policy:
    """A user's policy factory (`--policies split_bandit:make_half_to_server0`): half of every task to server 0."""
    return Policy("half_to_0", lambda key, env_state, obs: (jnp.zeros(config.num_users, jnp.int32),
                                                             jnp.full(config.num_users, 0.5)))
