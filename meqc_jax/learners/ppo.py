"""Hybrid discrete-continuous multi-agent PPO (paper Section IV, Eqs. 17-33), the whole loop in jit.

Built like PureJaxRL's `make_train`: `make_train(system, ppo)` returns a `PPOLearner` whose call
`learner(key)` is one pure function -- init, then a `lax.scan` over epochs, each a `lax.scan` over
the epoch's slots (rollout, vmapped over environments and agents), GAE, and a `lax.scan` over
update passes and minibatches. `jax.vmap(learner)(keys)` trains several seeds at once. For long
runs `learner.train_chunk(state, n)` advances n epochs so the host can checkpoint between chunks
(`meqc_jax.loop.fit`), and a resumed run is bit-identical to an uninterrupted one.

Per agent (device) there are two actor-critics (`agents.HybridActorCritic`): the discrete one
(server, critic V^D) and the continuous one (local fraction, critic V^C). Each part has its own
clipped objective (Eqs. 27-33) with advantages from its own critic (GAE, Eq. 26, per critic);
the losses add (`meqc_jax.learners.losses`). Two small strategies fix the rest:

* agent stacking: `IndependentAgents` (the paper: every device trains its own parameters, stacked
  on a leading agent axis and applied with `vmap`, each with its own Adam state and gradient
  clipping) or `SharedAgents` (one network for all agents, a one-hot agent id appended to the
  observation);
* critic: `LocalCritics` (each agent's own value heads) or `CentralCritic` (one critic over all
  agents' observations, training only; execution stays decentralized); `critic="auto"` uses
  the central one exactly when the reward is the shared -C.

The reward is the environment's (`env.Reward`, normalized by `env.local_cost_scale`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from meqc_jax import dynamics
from meqc_jax.agents.distributions import deterministic_action, hybrid_entropy, hybrid_log_prob, sample_hybrid
from meqc_jax.agents.networks import TORSOS, CentralCritic as CentralCriticNet, HybridActorCritic
from meqc_jax.agents.vqc import BACKENDS as VQC_BACKENDS
from meqc_jax.baselines import Policy
from meqc_jax.config import FieldChecker, SystemConfig, dataclass_to_dict
from meqc_jax.env import REWARDS, EnvState, MEQCEnv, Reward, local_cost_scale
from meqc_jax.learners import losses
from meqc_jax.compilation import ProgramCache
from meqc_jax.learners.interface import LearnerSpec, ScanLearner
from meqc_jax.slot_solver import lyapunov_function

CRITICS = ("auto", "local", "central")
ACTOR_INPUTS = ("own", "global")
ACTOR_ORDERS = ("simultaneous", "sequential")
# `lookahead`: the set measured under carried state (docs/learning.md "Looking ahead", MEQC-Queues-v0): a
# discount, returns normalized by (1 - gamma), own cost plus half the others' (a queue is a commons), one
# network for all devices, 32 environments, the step size annealed to 0, and devices acting in index order
# (each sees where the earlier devices of its slot offload, as the FIFO queues and greedy's solver do: without
# it PPO tied greedy in MEQC-Queues-v0; with it 7 % below in 200 epochs, 13 % in 400; benchmarks/tune_lookahead.py)
LOOKAHEAD = dict(gamma=0.95, reward="mixed", reward_others=0.5, shared_params=True, hidden=(64, 64), lr=1e-3,
                 update_epochs=4, anneal_lr=True, normalize_returns=True, num_envs=32, actor_order="sequential")


# The paper's epochs (Section V-B): 250 for the MLP learner, 125 for the VQC one; a training's default.
PAPER_EPOCHS = {"mlp": 250, "vqc": 125}
# The named hyperparameter sets (`PPOConfig.preset`, `meqc train --hparams`): field values over the defaults.
# `paper`: the paper's discount 0.95 and shared reward -C; `project`: the defaults, measured best for the paper's
# model; `lookahead`: measured for scenarios with dynamics (`LOOKAHEAD`).
PRESETS = {
    "project": dict(hparams="project"),
    "paper": dict(hparams="paper", gamma=0.95, reward="shared", critic="local", normalize_returns=False),
    "lookahead": dict(hparams="lookahead", **LOOKAHEAD),
}
HPARAM_SETS = tuple(PRESETS)


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Learner hyperparameters (validated, hashable). See docs/learning.md for why these defaults.

    `hparams="paper"` is the paper's set (discount 0.95, the shared reward -C); the project's
    defaults (discount 0, each agent's own cost) learn much faster in the paper's model because its
    slots are independent of past actions (`env.memoryless`), so returns beyond the current slot
    are pure noise there. Scenarios with dynamics need a discount > 0.
    `reward` names the env's reward (`env.REWARDS`) the learner trains on.
    """

    hparams: str = "project"
    num_envs: int = 64
    epochs: int = 250
    gamma: float = 0.0
    gae_lambda: float = 0.95
    lr: float = 1e-3
    update_epochs: int = 2
    num_minibatches: int = 8
    clip_eps: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.003
    max_grad_norm: float = 0.5
    reward: str = "own"
    reward_others: float = 0.5  # `mixed` reward: the weight of the other agents' costs (env.Reward)
    critic: str = "auto"
    shared_params: bool = False
    # what each actor sees: "own" (its device's observation, decentralized execution: the paper's) or "global"
    # (every device's observation as well: a controller at the edge that sees the whole slot and still
    # factorizes the joint action into one head per device; dynamics-spec section 8's coordination)
    actor_inputs: str = "own"
    # "simultaneous" (the paper: every device acts at once) or "sequential": devices act in index order within
    # a slot, each seeing how many earlier devices offload to each server (a reservation round before the
    # uploads), so later devices can avoid crowded servers (dynamics-spec section 8)
    actor_order: str = "simultaneous"
    torso: str = "mlp"
    hidden: tuple[int, ...] = (256, 256)
    vqc_backend: str = "jax"
    init_log_std: float = -0.5
    # rewards x (1 - gamma) before GAE, so that returns and values stay O(1) at any discount (the policy
    # loss is unchanged: advantages are standardized); no effect at gamma = 0 (the project's default)
    normalize_returns: bool = True
    anneal_lr: bool = False  # the step size falls linearly to 0 over the run's updates
    # Potential-based reward shaping (Ng et al. 1999) with the drift-plus-penalty's Lyapunov function L
    # (`slot_solver.lyapunov_function`): each agent's reward gains (L(s) - gamma L(s')) / (V scale), so the
    # drift a slot causes in queues and batteries is felt in the slot that causes it (LyDROO's idea) while
    # the optimal policy of the discounted return stays the same. 0 = off (the default); V as in `lyapunov`.
    shaping_v: float = 0.0
    shaping_theta: float | None = None  # LODCO's battery target, J; None = the battery capacity

    def __post_init__(self):
        c = FieldChecker(self, "PPOConfig")
        c.choice("hparams", HPARAM_SETS)
        c.choice("reward", REWARDS)
        c.choice("critic", CRITICS)
        c.choice("torso", TORSOS)
        c.choice("vqc_backend", VQC_BACKENDS)
        c.choice("shared_params", (False, True))
        c.choice("actor_inputs", ACTOR_INPUTS)
        c.choice("actor_order", ACTOR_ORDERS)
        c.choice("normalize_returns", (False, True))
        c.choice("anneal_lr", (False, True))
        c.integer("num_envs", 1, 2**20)
        c.integer("epochs", 1, 10**6)
        c.integer("update_epochs", 1, 1000)
        c.integer("num_minibatches", 1, 2**20)
        c.real("gamma", 0.0, 1.0, lo_open=False)
        c.real("reward_others", 0.0, 1.0, lo_open=False)
        c.real("gae_lambda", 0.0, 1.0, lo_open=False)
        c.real("lr", 0.0, 1.0)
        c.real("clip_eps", 0.0, 1.0)
        c.real("vf_coef", 0.0, 100.0, lo_open=False)
        c.real("ent_coef", 0.0, 10.0, lo_open=False)
        c.real("max_grad_norm", 0.0, 1e6)
        c.real("init_log_std", -10.0, 2.0, lo_open=False)
        c.real("shaping_v", 0.0, 1e9, lo_open=False)
        if self.shaping_theta is not None:
            c.real("shaping_theta", 0.0, 1e6, lo_open=False)
        c.values("hidden", 1, 65536, integral=True, lo_open=False)

    @classmethod
    def preset(cls, hparams: str = "project", **overrides) -> PPOConfig:
        """The named hyperparameter set, with overrides. `paper`: discount 0.95, shared reward; `lookahead`:
        the set for scenarios with dynamics (`LOOKAHEAD`)."""
        if hparams not in PRESETS:
            raise ValueError(f"PPOConfig.hparams={hparams!r} is invalid: allowed one of " + ", ".join(HPARAM_SETS))
        return cls(**{**PRESETS[hparams], **overrides})

    @property
    def central_critic(self) -> bool:
        """Whether values come from the centralized critic. `auto`: exactly for the shared reward,
        whose return depends on every agent's state; an agent's own cost depends (QPU arbitration
        aside) only on its own observation, which its local critic already sees."""
        return self.critic == "central" or (self.critic == "auto" and self.reward == "shared")

    def to_dict(self) -> dict:
        return dataclass_to_dict(self)


# ---------------------------------------------------------------------------- typed data
@struct.dataclass
class TrainState:
    """Everything a training run carries between epochs (a pytree; checkpointable)."""

    params: dict
    opt_state: tuple
    env_state: EnvState
    obs: jnp.ndarray  # [N, U, D]
    key: jnp.ndarray  # raw uint32 key data (kept raw so checkpoints need no key support)
    epoch: jnp.ndarray  # [] int32, epochs completed
    critic: dict  # centralized critic {"params", "opt_state"}; {} with local critics


# How many leading batch axes each part of a runs-batched TrainState has, for `sharding.place`:
# env_state and obs carry [runs, envs, ...]; everything else [runs, ...].
STATE_BATCH_AXES = TrainState(params=1, opt_state=1, env_state=2, obs=2, key=1, epoch=1, critic=1)


@struct.dataclass
class Transition:
    """One slot of a rollout, every environment and agent: [N, U, ...]."""

    obs: jnp.ndarray  # [N, U, D]
    server: jnp.ndarray  # [N, U]
    x: jnp.ndarray  # [N, U] pre-clip continuous sample
    logp_d: jnp.ndarray
    logp_c: jnp.ndarray
    value_d: jnp.ndarray
    value_c: jnp.ndarray
    reward: jnp.ndarray  # [N, U], the env's (normalized) reward
    done: jnp.ndarray  # [N]


@struct.dataclass
class Batch:
    """The update's data, [T, N, U, ...] (or a minibatch of it): network inputs, the actions taken,
    their log-probabilities, and per-critic advantages and value targets (Eq. 26)."""

    obs: jnp.ndarray  # network inputs (with the agent id when parameters are shared)
    server: jnp.ndarray
    x: jnp.ndarray
    logp_d: jnp.ndarray
    logp_c: jnp.ndarray
    adv_d: jnp.ndarray
    adv_c: jnp.ndarray
    target_d: jnp.ndarray
    target_c: jnp.ndarray


def _pack(terms) -> jnp.ndarray:
    """A dataclass of scalars (or equal-shape arrays) as one array [..., fields]: means over agents and
    minibatches are then taken over one stacked array, in the same order as the fields."""
    return jnp.stack([getattr(terms, f.name) for f in dataclasses.fields(terms)], axis=-1)


def _unpack(cls, vec):
    return cls(*(vec[..., i] for i in range(len(dataclasses.fields(cls)))))


@struct.dataclass
class LossTerms:
    """The loss terms of one update step (Eqs. 27-33), means over the minibatch."""

    entropy_d: jnp.ndarray
    entropy_c: jnp.ndarray
    loss_pg_d: jnp.ndarray
    loss_pg_c: jnp.ndarray
    loss_v_d: jnp.ndarray
    loss_v_c: jnp.ndarray
    approx_kl_d: jnp.ndarray
    approx_kl_c: jnp.ndarray


@struct.dataclass
class RolloutStats:
    """Means over an epoch's slots, environments and users of the priced slots (Eq. 12)."""

    cost: jnp.ndarray  # system cost C per slot
    latency: jnp.ndarray  # per-user latency, s
    energy: jnp.ndarray  # per-user energy, J
    quantum_share: jnp.ndarray  # users served by a QPU


@struct.dataclass
class Metrics(LossTerms, RolloutStats):
    """What one epoch reports: the RolloutStats fields, then the LossTerms fields, then `nonfinite`
    (leaves [] per epoch, [epochs] from a chunk, [runs, epochs] batched)."""

    nonfinite: jnp.ndarray  # 1.0 if NaN or inf appeared in the losses or parameters this epoch

    @classmethod
    def of(cls, stats: RolloutStats, terms: LossTerms, nonfinite) -> Metrics:
        return cls(**vars(stats), **vars(terms), nonfinite=nonfinite)


METRIC_NAMES = tuple(f.name for f in dataclasses.fields(Metrics))


# ---------------------------------------------------------------------------- strategy 1: agent stacking
class IndependentAgents:
    """Every agent its own network parameters (the paper), stacked on a leading agent axis and applied
    with `vmap`; each agent has its own Adam state and gradient clipping."""

    extra_inputs = 0

    def __init__(self, net, tx, num_agents: int):
        self.net, self.tx, self.U = net, tx, num_agents

    def inputs(self, obs):
        return obs

    def init(self, key, dummy):
        return jax.vmap(self.net.init, in_axes=(0, None))(jax.random.split(key, self.U), dummy)

    def apply(self, params, x):
        """x [B, U, D] -> outputs [B, U, ...]."""
        return jax.vmap(self.net.apply, in_axes=(0, 1), out_axes=1)(params, x)

    def opt_init(self, params):
        return jax.vmap(self.tx.init)(params)

    def gradients(self, grad_fn, params, mb: Batch):
        """Each agent's gradient on its own slice of the minibatch; loss terms averaged over agents."""
        per_agent = jax.tree.map(lambda a: jnp.moveaxis(a, 1, 0), mb)  # [U, mb, ...]
        (_, aux), grads = jax.vmap(grad_fn)(params, per_agent)
        return aux.mean(axis=0), grads

    def opt_update(self, grads, opt_state, params):
        return jax.vmap(self.tx.update)(grads, opt_state, params)


class SharedAgents(IndependentAgents):
    """One network for all agents, a one-hot agent id appended to each observation; one Adam state."""

    def __init__(self, net, tx, num_agents: int):
        super().__init__(net, tx, num_agents)
        self.extra_inputs = num_agents

    def inputs(self, obs):
        ids = jnp.broadcast_to(jnp.eye(self.U), obs.shape[:-1] + (self.U,))
        return jnp.concatenate([obs, ids], axis=-1)

    def init(self, key, dummy):
        return self.net.init(key, dummy)

    def apply(self, params, x):
        return self.net.apply(params, x)

    def opt_init(self, params):
        return self.tx.init(params)

    def gradients(self, grad_fn, params, mb: Batch):
        """One gradient over every agent's data at once."""
        merged = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), mb)
        (_, aux), grads = grad_fn(params, merged)
        return aux, grads

    def opt_update(self, grads, opt_state, params):
        return self.tx.update(grads, opt_state, params)


class GlobalInputs:
    """Any agent strategy, with every agent's observation (flattened) appended to each agent's own before
    the strategy's inputs (`PPOConfig.actor_inputs = "global"`): centralized execution with one action head
    per device, so a deterministic policy can represent any joint action of the slot."""

    def __init__(self, base, obs_dim: int):
        self.base, self.obs_dim = base, obs_dim
        self.extra_inputs = base.extra_inputs + base.U * obs_dim

    def inputs(self, obs):
        # the env's observations only: under actor_order="sequential" an agent's own reservations come after them
        flat = obs[..., :self.obs_dim].reshape(obs.shape[:-2] + (-1,))
        everyone = jnp.broadcast_to(flat[..., None, :], obs.shape[:-1] + flat.shape[-1:])
        return self.base.inputs(jnp.concatenate([obs, everyone], axis=-1))

    def __getattr__(self, name):  # init, apply, gradients, ...: the base strategy's
        return getattr(self.base, name)


# ---------------------------------------------------------------------------- strategy 2: the critic
class LocalCritics:
    """Each agent's own value heads V^D, V^C (in its actor-critic), trained with its policy loss."""

    def init(self, key, num_agents: int, input_dim: int) -> dict:
        return {}

    def with_values(self, critic: dict, out, x):
        return out

    def agent_value_losses(self, out, mb: Batch):
        return losses.value_loss(out.value_d, mb.target_d), losses.value_loss(out.value_c, mb.target_c)

    def update(self, critic: dict, mb: Batch, terms_vec):
        return critic, terms_vec  # the value heads were trained with the agents' loss


class CentralCritic:
    """One critic over all agents' observations (CTDE, as in MAPPO) giving every agent's V^D and V^C;
    the agents' own value heads are then unused and get no loss."""

    def __init__(self, net, tx, vf_coef: float):
        self.net, self.tx, self.vf_coef = net, tx, vf_coef

    def init(self, key, num_agents: int, input_dim: int) -> dict:
        cp = self.net.init(key, jnp.zeros((1, num_agents, input_dim)))
        return {"params": cp, "opt_state": self.tx.init(cp)}

    def with_values(self, critic: dict, out, x):
        v = self.net.apply(critic["params"], x)  # [..., U, 2]
        return out.replace(value_d=v[..., 0], value_c=v[..., 1])

    def agent_value_losses(self, out, mb: Batch):
        return jnp.zeros(()), jnp.zeros(())

    def loss(self, critic_params, mb: Batch):
        """The critic's value loss over a minibatch of global states [mb, U, D], per-critic GAE targets."""
        v = self.net.apply(critic_params, mb.obs)
        per_head = losses.value_loss_per_head(v, jnp.stack([mb.target_d, mb.target_c], axis=-1))  # [2]: V^D, V^C
        return self.vf_coef * per_head.sum(), per_head

    def update(self, critic: dict, mb: Batch, terms_vec):
        """One Adam step of the critic on a minibatch; its value losses replace the agents' in the terms."""
        (_, v_losses), grads = jax.value_and_grad(self.loss, has_aux=True)(critic["params"], mb)
        updates, opt_state = self.tx.update(grads, critic["opt_state"], critic["params"])
        critic = {"params": optax.apply_updates(critic["params"], updates), "opt_state": opt_state}
        terms = _unpack(LossTerms, terms_vec).replace(loss_v_d=v_losses[0], loss_v_c=v_losses[1])
        return critic, _pack(terms)


# ---------------------------------------------------------------------------- the learner
class PPOLearner(ScanLearner):
    """`make_train`'s result: `learner(key)` trains from scratch in one jitted function; the `Learner`
    interface (init / train_chunk / policy) serves the host loop."""

    name = "ppo"
    metrics_type = Metrics

    chunk_lower = ("the envs (--envs), the slots per epoch (--slots-per-epoch), the users and servers (--users, "
                   "--servers), or the seeds trained at once (--seeds)")

    def __init__(self, system: SystemConfig, ppo: PPOConfig, scale: float | None = None,
                 compiler_options: tuple[tuple[str, object], ...] | None = None, twin: PPOLearner | None = None):
        """`scale` overrides the reward's normalization (default `env.local_cost_scale`);
        `compiler_options` (XLA options as (name, value) pairs) apply to the batched training
        program; `FAST_COMPILE` trades run time for compile time (short runs, tests). With `twin` (a learner whose
        configuration differs from this one's only where no program reads it) its programs run instead."""
        self.system, self.ppo = system, ppo
        self.U, self.E = system.num_users, system.num_servers
        self.T = system.slots_per_episode  # an epoch is one episode (paper: 500 slots)
        self.epochs, self.num_envs = ppo.epochs, ppo.num_envs
        self.state_batch_axes = STATE_BATCH_AXES
        self.batch = self.T * ppo.num_envs
        if self.batch % ppo.num_minibatches:  # checked before the reward scale's first compile
            raise ValueError(f"PPOConfig.num_minibatches={ppo.num_minibatches} is invalid: allowed a divisor of "
                             f"slots_per_episode x num_envs = {self.batch}")
        self.scale = local_cost_scale(system) if scale is None else float(scale)
        self.env = MEQCEnv(system, reward=Reward.normalized(ppo.reward, system, self.scale, ppo.reward_others))
        self.shaping_theta = system.battery_j if ppo.shaping_theta is None else float(ppo.shaping_theta)
        self.net = HybridActorCritic(num_servers=self.E, torso=ppo.torso, hidden=ppo.hidden,
                                     init_log_std=ppo.init_log_std, vqc_backend=ppo.vqc_backend)
        lr = ppo.lr
        if ppo.anneal_lr:  # linearly to 0 over every update step of the run (PPO's usual schedule)
            lr = optax.linear_schedule(ppo.lr, 0.0, ppo.epochs * ppo.update_epochs * ppo.num_minibatches)
        self.tx = optax.chain(optax.clip_by_global_norm(ppo.max_grad_norm), optax.adam(lr, eps=1e-5))
        self.agents = (SharedAgents if ppo.shared_params else IndependentAgents)(self.net, self.tx, self.U)
        if ppo.actor_inputs == "global":
            self.agents = GlobalInputs(self.agents, self.env.obs_dim)
        self.critic = (CentralCritic(CentralCriticNet(num_agents=self.U, hidden=ppo.hidden), self.tx, ppo.vf_coef)
                       if ppo.central_critic else LocalCritics())
        self.sequential = ppo.actor_order == "sequential"
        # the networks' input width: the observation, the strategy's extras, and (sequential) the reservations
        self.obs_dim = self.env.obs_dim + self.agents.extra_inputs + (self.E if self.sequential else 0)
        # batched over runs (seeds, sweep points): used by `fit`, compiled once per learner and chunk
        self.build_programs(compiler_options, twin)

    # ------------------------------------------------------------------ networks over agents
    def apply(self, params, obs, critic: dict | None = None):
        """Outputs for every agent; obs [..., U, D] with any leading axes -> fields [..., U, ...].
        With `critic` (a central critic's state) its values replace the agents' value heads."""
        x = self.agents.inputs(obs)
        lead = x.shape[:-2]
        out = self.agents.apply(params, x.reshape((-1, self.U, x.shape[-1])))
        out = jax.tree.map(lambda a: a.reshape(lead + a.shape[1:]), out)
        return self.critic.with_values(critic, out, x) if critic else out

    def choose(self, params, obs, key=None, critic: dict | None = None):
        """Every agent's action for observations [..., U, D]: sampled with `key`, deterministic (argmax
        server, phi = clip(mean)) without. Returns (inputs [..., U, D'], server, x, outputs), where inputs are
        what each agent acted on: its observation, plus under `actor_order="sequential"` the share of the U
        devices before it that offload to each server, which it learns in index order (a `lax.scan` over the
        agents; each agent's outputs depend only on its own inputs, so they are recomputed once at the end)."""
        if not self.sequential:
            out = self.apply(params, obs, critic)
            server, x = (deterministic_action(out) if key is None else sample_hybrid(key, out))
            return obs, server, x, out
        lead = obs.shape[:-2]
        keys = None if key is None else jax.random.split(key, self.U)

        def place(counts, xs):
            u, k = xs
            inputs = jnp.concatenate([obs, jnp.broadcast_to(counts[..., None, :] / self.U, lead + (self.U, self.E))], -1)
            out_u = jax.tree.map(lambda a: jnp.take(a, u, axis=len(lead)), self.apply(params, inputs))
            server_u, x_u = deterministic_action(out_u) if k is None else sample_hybrid(k, out_u)
            offload = (jnp.clip(x_u, 0.0, 1.0) < 1.0).astype(float)
            counts = counts + jax.nn.one_hot(server_u, self.E) * offload[..., None]
            return counts, (inputs[..., u, :], server_u, x_u)

        _, (rows, server, x) = jax.lax.scan(place, jnp.zeros(lead + (self.E,)), (jnp.arange(self.U), keys))
        move = lambda a: jnp.moveaxis(a, 0, len(lead))  # noqa: E731  [U, ...] -> [..., U, ...]
        inputs, server, x = move(rows), move(server), move(x)
        return inputs, server, x, self.apply(params, inputs, critic)

    def init_params(self, key):
        """Network parameters: stacked over agents (independent) or one set (shared)."""
        return self.agents.init(key, jnp.zeros((1, self.obs_dim)))

    # ------------------------------------------------------------------ one epoch
    def init(self, key, env_params=None) -> TrainState:
        """Fresh parameters, Adam states and `num_envs` reset environments; epoch 0.
        `env_params` (one `EnvParams`, traced) trains on a swept configuration without recompiling."""
        k_params, k_env, k_run, k_critic = jax.random.split(key, 4)
        params = self.init_params(k_params)
        obs, env_state = jax.vmap(self.env.reset, in_axes=(0, None))(
            jax.random.split(k_env, self.ppo.num_envs), env_params)
        return TrainState(params=params, opt_state=self.agents.opt_init(params), env_state=env_state, obs=obs,
                          key=jax.random.key_data(k_run), epoch=jnp.int32(0),
                          critic=self.critic.init(k_critic, self.U, self.obs_dim))

    def rollout(self, params, env_state, obs, key, critic: dict | None = None):
        """One epoch of slots (a `lax.scan`): sample hybrid actions (Eqs. 17-20), step all envs, record
        transitions with the env's rewards; returns (env state, obs, trajectory [T, ...], RolloutStats)."""
        N = self.ppo.num_envs

        def slot(carry, k):
            env_state, obs = carry
            k_act, k_env = jax.random.split(k)
            inputs, server, x, out = self.choose(params, obs, k_act, critic)
            logp_d, logp_c = hybrid_log_prob(out, server, x)
            obs2, env_state2, reward, done, info = self.env.batch_step(
                jax.random.split(k_env, N), env_state, (server, jnp.clip(x, 0.0, 1.0)))
            c = info["cost"]
            if self.ppo.shaping_v > 0:  # potential-based shaping (PPOConfig.shaping_v); L = 0 after an episode ends
                lyap = jax.vmap(lyapunov_function, in_axes=(0, None))
                l_now, l_next = lyap(env_state, self.shaping_theta), lyap(env_state2, self.shaping_theta)
                shaped = (l_now - self.ppo.gamma * jnp.where(done, 0.0, l_next)) / (self.ppo.shaping_v * self.env.reward.scale)
                reward = reward + shaped[:, None]
            tr = Transition(obs=inputs, server=server, x=x, logp_d=logp_d, logp_c=logp_c, value_d=out.value_d,
                            value_c=out.value_c, reward=reward, done=done)
            stats = RolloutStats(cost=jnp.mean(c.total), latency=jnp.mean(c.latency), energy=jnp.mean(c.energy),
                                 quantum_share=jnp.mean(c.quantum.astype(float)))
            return (env_state2, obs2), (tr, _pack(stats))

        (env_state, obs), (traj, stats) = jax.lax.scan(slot, (env_state, obs), jax.random.split(key, self.T))
        return env_state, obs, traj, _unpack(RolloutStats, jnp.mean(stats, axis=0))

    def make_batch(self, traj: Transition, last) -> Batch:
        """Per-critic GAE (Eq. 26) of a trajectory given the outputs `last` after its final slot."""
        g, lam = self.ppo.gamma, self.ppo.gae_lambda
        reward = traj.reward * (1.0 - g) if (self.ppo.normalize_returns and g > 0) else traj.reward
        adv_d, target_d = losses.gae(traj.value_d, last.value_d, reward, traj.done, g, lam)
        adv_c, target_c = losses.gae(traj.value_c, last.value_c, reward, traj.done, g, lam)
        return Batch(obs=self.agents.inputs(traj.obs), server=traj.server, x=traj.x, logp_d=traj.logp_d,
                     logp_c=traj.logp_c, adv_d=adv_d, adv_c=adv_c, target_d=target_d, target_c=target_c)

    def agent_loss(self, params, mb: Batch):
        """Eqs. 27-33 for one agent's minibatch (with shared parameters: all agents' data at once).
        Returns (loss, packed LossTerms)."""
        ppo = self.ppo
        out = self.net.apply(params, mb.obs)
        logp_d, logp_c = hybrid_log_prob(out, mb.server, mb.x)
        ent_d, ent_c = hybrid_entropy(out)
        pg_d, kl_d = losses.clipped_surrogate(logp_d, mb.logp_d, mb.adv_d, ppo.clip_eps)
        pg_c, kl_c = losses.clipped_surrogate(logp_c, mb.logp_c, mb.adv_c, ppo.clip_eps)
        v_d, v_c = self.critic.agent_value_losses(out, mb)
        loss = pg_d + pg_c + ppo.vf_coef * (v_d + v_c) - ppo.ent_coef * (ent_d.mean() + ent_c.mean())
        terms = LossTerms(entropy_d=ent_d.mean(), entropy_c=ent_c.mean(), loss_pg_d=pg_d, loss_pg_c=pg_c,
                          loss_v_d=v_d, loss_v_c=v_c, approx_kl_d=kl_d, approx_kl_c=kl_c)
        return loss, _pack(terms)

    def update(self, params, opt_state, data: Batch, key, critic: dict | None = None):
        """`update_epochs` passes over the epoch's data in `num_minibatches` shuffled minibatches.
        Returns (params, opt_state, critic, LossTerms averaged over the passes)."""
        ppo = self.ppo
        B = self.batch
        flat = jax.tree.map(lambda a: a.reshape((B,) + a.shape[2:]), data)  # [B, U, ...]
        mb_size = B // ppo.num_minibatches
        grad_fn = jax.value_and_grad(self.agent_loss, has_aux=True)
        critic = critic or {}

        def minibatch(carry, idx):
            params, opt_state, critic = carry
            mb = jax.tree.map(lambda a: a[idx], flat)  # [mb, U, ...]
            aux, grads = self.agents.gradients(grad_fn, params, mb)
            updates, opt_state = self.agents.opt_update(grads, opt_state, params)
            if critic:
                critic, aux = self.critic.update(critic, mb, aux)
            return (optax.apply_updates(params, updates), opt_state, critic), aux

        def one_pass(carry, k):
            perm = jax.random.permutation(k, B).reshape(ppo.num_minibatches, mb_size)
            return jax.lax.scan(minibatch, carry, perm)

        (params, opt_state, critic), aux = jax.lax.scan(one_pass, (params, opt_state, critic),
                                                        jax.random.split(key, ppo.update_epochs))
        return params, opt_state, critic, _unpack(LossTerms, aux.reshape(-1, aux.shape[-1]).mean(axis=0))

    def epoch(self, state: TrainState, _=None):
        """Rollout, per-critic GAE (Eq. 26) and the clipped updates (Eqs. 27-33) for one epoch."""
        key = jax.random.wrap_key_data(state.key)
        key, k_roll, k_upd = jax.random.split(key, 3)
        env_state, obs, traj, stats = self.rollout(state.params, state.env_state, state.obs, k_roll, state.critic)
        last = self.choose(state.params, obs, None, state.critic)[3]  # values after the epoch's last slot
        data = self.make_batch(traj, last)
        params, opt_state, critic, terms = self.update(state.params, state.opt_state, data, k_upd, state.critic)
        finite = jnp.all(jnp.isfinite(_pack(terms))) & jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves((params, critic))]))
        new = TrainState(params=params, opt_state=opt_state, env_state=env_state, obs=obs,
                         key=jax.random.key_data(key), epoch=state.epoch + 1, critic=critic)
        return new, Metrics.of(stats, terms, (~finite).astype(float))

    def chunk_description(self, runs: int, num_epochs: int) -> str:
        return (f"training {runs} run(s) of U={self.U}, E={self.E} with {self.num_envs} envs x {self.T} slots per "
                f"epoch ({num_epochs} epochs per call)")

    def memory_floor(self, states: TrainState) -> tuple[int, str]:
        """`Learner.memory_floor` plus an epoch's observations: the rollout keeps every slot's [N, U, D] observations
        (as the state's `obs` is split over the devices) for the update, `T` of them."""
        from meqc_jax.compilation import bytes_per_device

        state, basis = super().memory_floor(states)
        return state + self.T * bytes_per_device(states.obs), basis + " and an epoch's observations"

    def param_counts(self) -> dict:
        """Trainable parameters: per agent (both actor-critics), all agents, and the central critic."""
        size = lambda tree: int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))  # noqa: E731
        shapes = jax.eval_shape(self.init, jax.random.key(0))
        agents = size(shapes.params)
        per_agent = agents if self.ppo.shared_params else agents // self.U
        critic = size(shapes.critic.get("params", {}))
        return {"per_agent": per_agent, "agents": agents, "central_critic": critic, "total": agents + critic}

    def describe(self) -> dict:
        return {"learner": self.name, "torso": self.ppo.torso, "hparams": self.ppo.hparams,
                "reward": self.env.reward.kind, "reward_scale": self.scale,
                "critic": "central" if self.ppo.central_critic else "local", "gamma": self.ppo.gamma,
                "shared_params": self.ppo.shared_params,
                "env_steps_per_epoch": self.num_envs * self.T}  # slots of one instance an epoch plays

    # ------------------------------------------------------------------ acting after training
    def act(self, params, key, env_state, obs):
        """The trained agents' deterministic action (argmax server, phi = clip(mean)) for one instance."""
        _, server, x, _ = self.choose(params, obs)
        return server, jnp.clip(x, 0.0, 1.0)

    def policy(self, params, name: str = "mlp") -> Policy:
        """The trained agents acting deterministically with `params` for `evaluate` (argmax server,
        phi = clip(mean))."""
        return Policy(name, functools.partial(self.act, params))

    def sweep_policy(self, stacked_params, name: str = "mlp") -> Policy:
        """Trained agents per sweep point (parameters stacked over points), for `evaluate(env_params=...)`.
        The acting function is the same object for every call, so evaluations reuse their compile."""
        return Policy(name, None, params=stacked_params, act_with=self.act)


def observation_floor_bytes(system: SystemConfig, ppo: PPOConfig) -> int:
    """A lower bound, from the sizes alone (nothing built or traced), on the bytes one run's training chunk holds:
    the epoch's observations its rollout keeps for the update, [slots_per_episode, num_envs, U, obs_dim]."""
    item = jnp.dtype(jnp.float32 if not jax.config.jax_enable_x64 else jnp.float64).itemsize
    return (system.slots_per_episode * ppo.num_envs * system.num_users * MEQCEnv(system).obs_dim * item)


def make_train(system: SystemConfig, ppo: PPOConfig | None = None, scale: float | None = None,
               compiler_options: tuple[tuple[str, object], ...] | None = None) -> PPOLearner:
    """PureJaxRL-style entry point: `make_train(system, ppo)(key)` runs a whole training in one jit.
    Learners are cached by their (frozen) configurations, so repeated calls share compiled programs."""
    ppo = PPOConfig() if ppo is None else ppo
    return _LEARNERS.get((system, ppo, scale, compiler_options), lambda: _build(system, ppo, scale, compiler_options))


def _build(system, ppo, scale, compiler_options) -> PPOLearner:
    twin = None
    if not ppo.anneal_lr and ppo.epochs != 1:
        # A run's length enters no program unless the step size anneals over it: learners that differ only in
        # `epochs` share one set of compiled programs (the quick reproduction's 20-epoch Fig. 4 MLP and its
        # 10-epoch sweeps at the same size: the sweeps then neither trace nor compile their training again).
        twin = make_train(system, dataclasses.replace(ppo, epochs=1), scale, compiler_options)
    return PPOLearner(system, ppo, scale, compiler_options, twin)


_LEARNERS = ProgramCache("PPO learners", maxsize=16)  # by (system, ppo, scale, compiler options)


def default_hparams(system: SystemConfig) -> str:
    """The preset a training of `system` starts from: `lookahead` where state carries between slots (a discount
    > 0 is needed there), else `project`."""
    return "lookahead" if dynamics.carries_state(system) else "project"


# the registry entry (`meqc_jax.learners.LEARNERS["ppo"]`)
LEARNER = LearnerSpec("ppo", make_train, PPOConfig, PRESETS, default_hparams,
                      "hybrid multi-agent PPO of the paper (Section IV): MLP or VQC torso, decentralized execution",
                      derive=lambda given: {"epochs": PAPER_EPOCHS[given.get("torso", "mlp")]})
