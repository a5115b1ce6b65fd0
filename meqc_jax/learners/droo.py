"""A DROO-style learner over joint modes, for users who contend for their servers (dynamics-spec
section 8, `MEQC-Contended-v0`).

DROO (Huang, Bi and Zhang, "Deep reinforcement learning for online computation offloading in
wireless powered mobile-edge computing networks", IEEE TMC 2020) is the usual learner of MEC
offloading when the model can price a decision: a network maps the slot's observation to a relaxed
joint decision, which is quantized into K candidate joint decisions; each is priced with the model,
the cheapest is played, and the network is trained towards the winners. It learns where to search,
the model says which candidate is best. Here:

* the network (`agents.networks.JointModeLogits`) reads every device's observation (centralized) and
  gives each device logits over its 1 + 2E modes (local, a server's CPUs, a server's QPU);
* the candidates are the argmax joint mode and K - 1 joint modes sampled from those logits
  (`DROOConfig.swaps`: also every one-device change of the argmax, U (1 + 2E) more); each is priced at
  every user's best split given the joint mode (`cost.price_modes`, as the exact optimum prices them)
  and the cheapest is the action (so the learner never does worse than its own argmax);
* training: each epoch is `slots_per_episode` batches of `num_envs` fresh slots (nothing carries
  between slots under contention); per batch, `updates` Adam steps on the cross-entropy of the
  logits towards the chosen joint modes.

Unlike PPO it needs the model at decision time (K pricings per slot, like `greedy` and
`best_response`); it applies only where joint modes price a slot exactly (contention without
carried state: `joint.check_contention_planner`). Measured against the enumerated optimum in
docs/learning.md ("Coordinating: learners under contention", DROO).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from meqc_jax import dynamics, joint
from meqc_jax.agents.networks import JointModeLogits
from meqc_jax.baselines import Policy
from meqc_jax.config import FieldChecker, SystemConfig, dataclass_to_dict
from meqc_jax.cost import ModeOutcome, mode_table, num_modes, price_modes
from meqc_jax.env import MEQCEnv
from meqc_jax.compilation import ProgramCache
from meqc_jax.learners.interface import LearnerSpec, ScanLearner


@dataclasses.dataclass(frozen=True)
class DROOConfig:
    """Settings of the DROO learner (validated)."""

    epochs: int = 20  # each: slots_per_episode batches of num_envs fresh slots
    num_envs: int = 64  # fresh slots per batch
    candidates: int = 64  # K: the argmax joint mode and K - 1 samples, priced each slot
    swaps: bool = False  # also every one-device change of the argmax joint mode
    updates: int = 4  # Adam steps per batch
    lr: float = 1e-3
    hidden: tuple[int, ...] = (256, 256)

    def __post_init__(self):
        c = FieldChecker(self, "DROOConfig")
        c.integer("epochs", 1, 10**6)
        c.integer("num_envs", 1, 2**16)
        c.integer("candidates", 1, 2**14)
        c.choice("swaps", (False, True))
        c.integer("updates", 1, 1000)
        c.real("lr", 0.0, 1.0)
        c.values("hidden", 1, 2**14, integral=True)

    def to_dict(self) -> dict:
        return dataclass_to_dict(self)


@struct.dataclass
class DROOState:
    params: dict
    opt_state: tuple
    env_params: object  # the run's (traced) EnvParams: a sweep point, or the configuration's defaults
    key: jnp.ndarray  # raw key data
    epoch: jnp.ndarray  # [] int32


@struct.dataclass
class DROOMetrics:
    """Per epoch, means over its batches: the played (cheapest candidate's) and the argmax joint mode's
    system cost per slot (Eq. 12), the cross-entropy, and > 0 where anything was NaN or inf."""

    cost: jnp.ndarray
    argmax_cost: jnp.ndarray
    loss: jnp.ndarray
    nonfinite: jnp.ndarray


# env_params hold no envs axis; every part of a runs-batched state has one leading batch axis
STATE_BATCH_AXES = DROOState(params=1, opt_state=1, env_params=1, key=1, epoch=1)


class DROOLearner(ScanLearner):
    name = "droo"
    metrics_type = DROOMetrics

    def __init__(self, system: SystemConfig, config: DROOConfig):
        joint.check_contention_planner(system, "DROO")
        if not dynamics.contended(system):
            raise ValueError(f"DROO: SystemConfig.dynamics={system.dynamics!r} is invalid: the learner searches joint "
                             "modes of users who contend; allowed: ('contention',)")
        self.system, self.config = system, config
        self.U, self.E = system.num_users, system.num_servers
        self.k = num_modes(self.E)
        self.T = system.slots_per_episode
        self.epochs, self.num_envs = config.epochs, config.num_envs
        self.state_batch_axes = STATE_BATCH_AXES
        self.env = MEQCEnv(system)
        self.uplink = system.contention_uplink
        self.net = JointModeLogits(num_users=self.U, num_modes=self.k, hidden=config.hidden)
        self.tx = optax.adam(config.lr)
        self.build_programs()

    # ------------------------------------------------------------------ the search (one slot)
    def _table(self, env_state):
        cond = dynamics.conditions(env_state.carry, self.system, env_state.scenario, env_state.tasks)
        return mode_table(self.system, env_state.scenario, env_state.tasks, cond)

    def candidates(self, logits, key):
        """[K (+ U k), U] joint modes (dynamics-spec section 8's options per user: local, a server's CPUs, its QPU):
        the argmax, K - 1 samples, and (swaps) every one-device change of the argmax."""
        top = jnp.argmax(logits, -1).astype(jnp.int32)
        parts = [top[None], jax.random.categorical(key, logits, shape=(self.config.candidates - 1, self.U)).astype(jnp.int32)]
        if self.config.swaps:
            users = jnp.arange(self.U)[:, None]
            one = jnp.broadcast_to(top, (self.U, self.k, self.U)).at[users, :, users].set(jnp.arange(self.k, dtype=jnp.int32)[None])
            parts.append(one.reshape(self.U * self.k, self.U))
        return jnp.concatenate(parts)

    def search(self, params, key, env_state, obs):
        """The slot's chosen joint mode, its pricing (Eq. 12's system cost under dynamics-spec section 8's sharing,
        each user at its best split: `cost.price_modes`), and the argmax mode's system cost (one instance)."""
        table = self._table(env_state)
        cands = self.candidates(self.net.apply(params, obs), key)
        totals = jax.vmap(lambda m: jnp.sum(price_modes(self.system, table, m, self.uplink).per_user))(cands)
        best = jnp.argmin(totals)  # the first minimum: the argmax mode wins ties
        chosen = cands[best]
        outcome: ModeOutcome = price_modes(self.system, table, chosen, self.uplink)
        return chosen, outcome, totals[best], totals[0]

    # ------------------------------------------------------------------ training
    def init(self, key, env_params=None) -> DROOState:
        env_params = self.env.default_params() if env_params is None else env_params
        k_params, k_obs, k_run = jax.random.split(key, 3)
        obs, _ = self.env.reset(k_obs, env_params)
        params = self.net.init(k_params, obs)
        return DROOState(params=params, opt_state=self.tx.init(params), env_params=env_params,
                         key=jax.random.key_data(k_run), epoch=jnp.int32(0))

    def _batch(self, carry, key):
        params, opt_state, env_params = carry
        k_reset, k_search = jax.random.split(key)
        obs, states = jax.vmap(self.env.reset, in_axes=(0, None))(jax.random.split(k_reset, self.num_envs), env_params)
        chosen, _, played, top = jax.vmap(lambda k, s, o: self.search(params, k, s, o))(
            jax.random.split(k_search, self.num_envs), states, obs)

        def loss_fn(p):
            logp = jax.nn.log_softmax(jax.vmap(self.net.apply, in_axes=(None, 0))(p, obs))
            return -jnp.mean(jnp.take_along_axis(logp, chosen[..., None], -1))

        def step(c, _):
            p, o = c
            loss, grads = jax.value_and_grad(loss_fn)(p)
            updates, o = self.tx.update(grads, o, p)
            return (optax.apply_updates(p, updates), o), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), None, length=self.config.updates)
        return (params, opt_state, env_params), jnp.stack([jnp.mean(played), jnp.mean(top), losses[0]])

    def epoch(self, state: DROOState, _=None):
        key = jax.random.wrap_key_data(state.key)
        key, k_epoch = jax.random.split(key)
        (params, opt_state, _), stats = jax.lax.scan(self._batch, (state.params, state.opt_state, state.env_params),
                                                     jax.random.split(k_epoch, self.T))
        cost, top, loss = jnp.mean(stats, axis=0)
        finite = jnp.all(jnp.isfinite(stats)) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)]))
        new = DROOState(params=params, opt_state=opt_state, env_params=state.env_params, key=jax.random.key_data(key),
                        epoch=state.epoch + 1)
        return new, DROOMetrics(cost=cost, argmax_cost=top, loss=loss, nonfinite=(~finite).astype(jnp.float32))

    # ------------------------------------------------------------------ the Learner interface, rest
    chunk_lower = "the slots per batch (num_envs), the candidates, or the runs trained at once"

    def chunk_description(self, runs: int, num_epochs: int) -> str:
        return (f"DROO training of {runs} run(s) at U={self.U}, E={self.E} with {self.num_envs} slots x "
                f"{self.config.candidates} candidates per batch")

    def act(self, params, key, env_state, obs):
        """The searched action (server, phi, preferred) for one instance: the cheapest of the candidates."""
        out = self.search(params, key, env_state, obs)[1]
        return out.server, out.phi, out.quantum

    def policy(self, params, name: str = "droo") -> Policy:
        return Policy(name, functools.partial(self.act, params), centralized=True)

    def sweep_policy(self, stacked_params, name: str = "droo") -> Policy:
        return Policy(name, None, centralized=True, params=stacked_params, act_with=self.act)

    def param_counts(self) -> dict:
        n = int(sum(np.prod(x.shape) for x in jax.tree.leaves(jax.eval_shape(self.init, jax.random.key(0)).params)))
        return {"per_agent": n, "agents": n, "central_critic": 0, "total": n}

    def describe(self) -> dict:
        return {"learner": self.name, **self.config.to_dict(), "slots_per_batch": self.num_envs,
                "batches_per_epoch": self.T, "env_steps_per_epoch": self.num_envs * self.T}


def make_train(system: SystemConfig, config: DROOConfig | None = None) -> DROOLearner:
    """The DROO learner for `system` (cached by the frozen configurations, so compiled programs are shared)."""
    config = DROOConfig() if config is None else config
    return _LEARNERS.get((system, config), lambda: DROOLearner(system, config))


_LEARNERS = ProgramCache("DROO learners", maxsize=8)
# named settings (`meqc train --learner droo --hparams NAME`): `swaps` also prices every one-device change of the
# argmax joint mode, as the contention part of the reproduction trains it
PRESETS = {"default": {}, "swaps": dict(swaps=True)}
LEARNER = LearnerSpec("droo", make_train, DROOConfig, PRESETS, "default",
                      "DROO-style search over joint modes under contention: learned candidates, priced by the model")


__all__ = ["LEARNER", "PRESETS", "DROOConfig", "DROOLearner", "DROOMetrics", "DROOState", "make_train"]
