"""Hybrid discrete-continuous multi-agent PPO (paper Section IV, Eqs. 17-33), the whole loop in jit.

Built like PureJaxRL's `make_train`: `make_train(system, ppo)` returns a `Trainer` whose call
`trainer(key)` is one pure function -- init, then a `lax.scan` over epochs, each a `lax.scan` over
the epoch's slots (rollout, vmapped over environments and agents), GAE, and a `lax.scan` over
update passes and minibatches. `jax.vmap(trainer)(keys)` trains several seeds at once. For long
runs `trainer.run(state, n)` advances n epochs so the host can checkpoint between chunks
(`fit`), and a resumed run is bit-identical to an uninterrupted one.

Per agent (device) there are two actor-critics (`agents.HybridActorCritic`): the discrete one
(server, critic V^D) and the continuous one (local fraction, critic V^C). Each part has its own
clipped objective (Eqs. 27-33) with advantages from its own critic (GAE, Eq. 26, per critic);
the losses add. Agents have independent parameters, stored stacked on a leading agent axis and
applied with `vmap` (the paper: every device trains its own agent); each agent has its own Adam
state and gradient clipping. `shared_params=True` trains one network for all agents instead, with
a one-hot agent id appended to the observation. `critic="central"` replaces the agents' value heads
by one centralized critic over all agents' observations (training only; execution stays
decentralized); the default `"auto"` uses it exactly when the reward is the shared -C.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from meqc_jax import sharding
from meqc_jax.agents.distributions import deterministic_action, hybrid_entropy, hybrid_log_prob, sample_hybrid
from meqc_jax.agents.networks import TORSOS, CentralCritic, HybridActorCritic
from meqc_jax.agents.vqc import BACKENDS as VQC_BACKENDS
from meqc_jax.baselines import Policy
from meqc_jax.config import FieldChecker, SystemConfig, dataclass_to_dict
from meqc_jax.cost import slot_cost
from meqc_jax.env import EnvState, MEQCEnv

REWARDS = ("own", "shared")
# XLA options for programs whose compile time matters more than their run time (they run once, or
# briefly): skipping LLVM's optimizations cuts XLA:CPU compile time about 3x and at most doubles
# the run time of the training program (measured on this project's 2-core CPU).
FAST_COMPILE = (("xla_backend_optimization_level", 0),)
CRITICS = ("auto", "local", "central")
HPARAM_SETS = ("project", "paper")


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Learner hyperparameters (validated, hashable). See docs/learning.md for why these defaults.

    `hparams="paper"` is the paper's set (discount 0.95, the shared reward -C); the project's
    defaults (discount 0, each agent's own cost) learn much faster because slots are independent
    of past actions, so returns beyond the current slot are pure noise.
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
    critic: str = "auto"
    shared_params: bool = False
    torso: str = "mlp"
    hidden: tuple[int, ...] = (256, 256)
    vqc_backend: str = "jax"
    init_log_std: float = -0.5

    def __post_init__(self):
        c = FieldChecker(self, "PPOConfig")
        c.choice("hparams", HPARAM_SETS)
        c.choice("reward", REWARDS)
        c.choice("critic", CRITICS)
        c.choice("torso", TORSOS)
        c.choice("vqc_backend", VQC_BACKENDS)
        c.choice("shared_params", (False, True))
        c.integer("num_envs", 1, 2**20)
        c.integer("epochs", 1, 10**6)
        c.integer("update_epochs", 1, 1000)
        c.integer("num_minibatches", 1, 2**20)
        c.real("gamma", 0.0, 1.0, lo_open=False)
        c.real("gae_lambda", 0.0, 1.0, lo_open=False)
        c.real("lr", 0.0, 1.0)
        c.real("clip_eps", 0.0, 1.0)
        c.real("vf_coef", 0.0, 100.0, lo_open=False)
        c.real("ent_coef", 0.0, 10.0, lo_open=False)
        c.real("max_grad_norm", 0.0, 1e6)
        c.real("init_log_std", -10.0, 2.0, lo_open=False)
        c.values("hidden", 1, 65536, integral=True, lo_open=False)

    @classmethod
    def preset(cls, hparams: str = "project", **overrides) -> PPOConfig:
        """The named hyperparameter set, with overrides. `paper`: discount 0.95, shared reward."""
        if hparams == "paper":
            base = dict(gamma=0.95, reward="shared", critic="local")
        elif hparams == "project":
            base = {}
        else:
            raise ValueError(f"PPOConfig.hparams={hparams!r} is invalid: allowed one of " + ", ".join(HPARAM_SETS))
        return cls(hparams=hparams, **{**base, **overrides})

    @property
    def central_critic(self) -> bool:
        """Whether values come from the centralized critic. `auto`: exactly for the shared reward,
        whose return depends on every agent's state; an agent's own cost depends (QPU arbitration
        aside) only on its own observation, which its local critic already sees."""
        return self.critic == "central" or (self.critic == "auto" and self.reward == "shared")

    def to_dict(self) -> dict:
        return dataclass_to_dict(self)


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
    obs: jnp.ndarray  # [N, U, D]
    server: jnp.ndarray  # [N, U]
    x: jnp.ndarray  # [N, U] pre-clip continuous sample
    logp_d: jnp.ndarray
    logp_c: jnp.ndarray
    value_d: jnp.ndarray
    value_c: jnp.ndarray
    reward: jnp.ndarray  # [N, U] scaled
    done: jnp.ndarray  # [N]


METRIC_NAMES = ("cost", "latency", "energy", "quantum_share", "entropy_d", "entropy_c", "loss_pg_d", "loss_pg_c",
                "loss_v_d", "loss_v_c", "approx_kl_d", "approx_kl_c", "nonfinite")


@functools.lru_cache(maxsize=32)  # a constant of the configuration: MLP and VQC trainers share it
def reward_scale(system: SystemConfig, samples: int = 256, seed: int = 12345) -> float:
    """The mean per-user cost of keeping every task local, over `samples` fresh slots.

    Rewards are divided by it (own: -c_u / scale; shared: -C / (U scale)) so that they are O(1)
    whatever the preset and sizes; it is a fixed constant of the configuration, not a running
    statistic, so it cannot make the learning problem non-stationary.
    """
    env = MEQCEnv(system)

    @jax.jit
    def local_cost(key):
        k_reset, k_arb = jax.random.split(key)
        _, s = jax.vmap(env.reset)(jax.random.split(k_reset, samples))
        U = system.num_users
        # phi = 1 never requests a QPU, so the arbitration draw does not matter
        b = jax.vmap(lambda st, k: slot_cost(system, st.scenario, st.tasks, jnp.zeros(U, jnp.int32), jnp.ones(U), k))(
            s, jax.random.split(k_arb, samples))
        return jnp.mean(b.per_user)

    return float(local_cost(jax.random.key(seed)))


class Trainer:
    """`make_train`'s result: `trainer(key)` trains from scratch in one jitted function."""

    def __init__(self, system: SystemConfig, ppo: PPOConfig, scale: float | None = None,
                 compiler_options: tuple[tuple[str, object], ...] | None = None):
        """`compiler_options` (XLA options as (name, value) pairs) apply to the batched training
        program; `FAST_COMPILE` trades run time for compile time (short runs, tests)."""
        self.system, self.ppo = system, ppo
        self.env = MEQCEnv(system)
        self.U, self.E = system.num_users, system.num_servers
        self.T = system.slots_per_episode  # an epoch is one episode (paper: 500 slots)
        self.batch = self.T * ppo.num_envs
        if self.batch % ppo.num_minibatches:
            raise ValueError(f"PPOConfig.num_minibatches={ppo.num_minibatches} is invalid: allowed a divisor of "
                             f"slots_per_episode x num_envs = {self.batch}")
        self.net = HybridActorCritic(num_servers=self.E, torso=ppo.torso, hidden=ppo.hidden,
                                     init_log_std=ppo.init_log_std, vqc_backend=ppo.vqc_backend)
        self.critic_net = CentralCritic(num_agents=self.U, hidden=ppo.hidden) if ppo.central_critic else None
        self.scale = reward_scale(system) if scale is None else float(scale)
        self.obs_dim = self.env.obs_dim + (self.U if ppo.shared_params else 0)
        self.tx = optax.chain(optax.clip_by_global_norm(ppo.max_grad_norm), optax.adam(ppo.lr, eps=1e-5))
        self.run = jax.jit(self._run, static_argnums=1)
        # batched over runs (seeds, sweep points): used by `fit`, compiled once per trainer and chunk
        self.init_batched = jax.jit(jax.vmap(self.init), compiler_options=dict(FAST_COMPILE))  # runs once
        self.run_batched = jax.jit(self._run_batch, static_argnums=1,
                                   compiler_options=dict(compiler_options) if compiler_options else None)

    # ------------------------------------------------------------------ networks over agents
    def _agent_obs(self, obs):
        """Network input [..., U, D']: with shared parameters a one-hot agent id is appended."""
        if not self.ppo.shared_params:
            return obs
        ids = jnp.broadcast_to(jnp.eye(self.U), obs.shape[:-1] + (self.U,))
        return jnp.concatenate([obs, ids], axis=-1)

    def apply(self, params, obs):
        """Outputs for every agent; obs [..., U, D] with any leading axes -> fields [..., U, ...]."""
        x = self._agent_obs(obs)
        lead = x.shape[:-2]
        x = x.reshape((-1, self.U, x.shape[-1]))
        if self.ppo.shared_params:
            out = self.net.apply(params, x)
        else:
            out = jax.vmap(self.net.apply, in_axes=(0, 1), out_axes=1)(params, x)
        return jax.tree.map(lambda a: a.reshape(lead + a.shape[1:]), out)

    def init_params(self, key):
        """Network parameters: stacked over agents (independent) or one set (shared)."""
        dummy = jnp.zeros((1, self.obs_dim))
        if self.ppo.shared_params:
            return self.net.init(key, dummy)
        return jax.vmap(self.net.init, in_axes=(0, None))(jax.random.split(key, self.U), dummy)

    def _opt_init(self, params):
        return self.tx.init(params) if self.ppo.shared_params else jax.vmap(self.tx.init)(params)

    def _with_values(self, out, critic: dict, obs):
        """Replace the agents' own value heads by the centralized critic's values (when used)."""
        if not critic:
            return out
        v = self.critic_net.apply(critic["params"], self._agent_obs(obs))  # [..., U, 2]
        return out.replace(value_d=v[..., 0], value_c=v[..., 1])

    # ------------------------------------------------------------------ one epoch
    def init(self, key, env_params=None) -> TrainState:
        """Fresh parameters, Adam states and `num_envs` reset environments; epoch 0.
        `env_params` (one `EnvParams`, traced) trains on a swept configuration without recompiling."""
        k_params, k_env, k_run, k_critic = jax.random.split(key, 4)
        params = self.init_params(k_params)
        obs, env_state = jax.vmap(self.env.reset, in_axes=(0, None))(
            jax.random.split(k_env, self.ppo.num_envs), env_params)
        critic = {}
        if self.critic_net is not None:
            cp = self.critic_net.init(k_critic, jnp.zeros((1, self.U, self.obs_dim)))
            critic = {"params": cp, "opt_state": self.tx.init(cp)}
        return TrainState(params=params, opt_state=self._opt_init(params), env_state=env_state, obs=obs,
                          key=jax.random.key_data(k_run), epoch=jnp.int32(0), critic=critic)

    def _rollout(self, params, env_state, obs, key, critic: dict | None = None):
        """One epoch of slots (a `lax.scan`): sample hybrid actions (Eqs. 17-20), step all envs,
        record transitions with scaled rewards; returns the final env state, obs, trajectory and
        the mean cost, latency, energy and QPU share."""
        N = self.ppo.num_envs

        def slot(carry, k):
            env_state, obs = carry
            k_act, k_env = jax.random.split(k)
            out = self._with_values(self.apply(params, obs), critic, obs)
            server, x = sample_hybrid(k_act, out)
            logp_d, logp_c = hybrid_log_prob(out, server, x)
            obs2, env_state2, _, done, info = jax.vmap(self.env.step)(
                jax.random.split(k_env, N), env_state, (server, jnp.clip(x, 0.0, 1.0)))
            c = info["cost"]
            if self.ppo.reward == "own":
                reward = -c.per_user / self.scale
            else:
                reward = jnp.broadcast_to((-c.total / (self.U * self.scale))[:, None], (N, self.U))
            tr = Transition(obs=obs, server=server, x=x, logp_d=logp_d, logp_c=logp_c, value_d=out.value_d,
                            value_c=out.value_c, reward=reward, done=done)
            stats = jnp.stack([jnp.mean(c.total), jnp.mean(c.latency), jnp.mean(c.energy),
                               jnp.mean(c.quantum.astype(float))])
            return (env_state2, obs2), (tr, stats)

        (env_state, obs), (traj, stats) = jax.lax.scan(slot, (env_state, obs), jax.random.split(key, self.T))
        return env_state, obs, traj, jnp.mean(stats, axis=0)

    def _gae(self, values, last_value, rewards, dones):
        """Eq. 26 for one critic: values, rewards [T, N, U]; dones [T, N]; last_value [N, U]."""
        g, lam = self.ppo.gamma, self.ppo.gae_lambda

        def back(carry, step):
            adv_next, v_next = carry
            v, r, d = step
            nonterminal = 1.0 - d.astype(float)[:, None]
            delta = r + g * v_next * nonterminal - v
            adv = delta + g * lam * nonterminal * adv_next
            return (adv, v), adv

        _, adv = jax.lax.scan(back, (jnp.zeros_like(last_value), last_value), (values, rewards, dones), reverse=True)
        return adv, adv + values

    def _agent_loss(self, params, mb):
        """Eqs. 27-33 for one agent's minibatch (the shared-parameter case uses all agents' data).
        With the centralized critic the agents' own value heads are unused and get no loss."""
        ppo = self.ppo
        obs = mb["obs"]
        out = self.net.apply(params, obs)
        logp_d, logp_c = hybrid_log_prob(out, mb["server"], mb["x"])
        ent_d, ent_c = hybrid_entropy(out)

        def clipped(logp, old, adv):
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            ratio = jnp.exp(logp - old)
            obj = jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - ppo.clip_eps, 1 + ppo.clip_eps) * adv)
            return -obj.mean(), jnp.mean((ratio - 1) - (logp - old))  # loss, approx KL

        pg_d, kl_d = clipped(logp_d, mb["logp_d"], mb["adv_d"])
        pg_c, kl_c = clipped(logp_c, mb["logp_c"], mb["adv_c"])
        if ppo.central_critic:
            v_d = v_c = jnp.zeros(())
        else:
            v_d = 0.5 * jnp.mean((out.value_d - mb["target_d"]) ** 2)
            v_c = 0.5 * jnp.mean((out.value_c - mb["target_c"]) ** 2)
        loss = pg_d + pg_c + ppo.vf_coef * (v_d + v_c) - ppo.ent_coef * (ent_d.mean() + ent_c.mean())
        return loss, jnp.stack([ent_d.mean(), ent_c.mean(), pg_d, pg_c, v_d, v_c, kl_d, kl_c])

    def _critic_loss(self, critic_params, mb):
        """The centralized critic's value loss (the critics' squared-error term of the PPO
        objective, Eqs. 27-33) over a minibatch of global states [mb, U, D], per-critic GAE
        targets (Eq. 26)."""
        v = self.critic_net.apply(critic_params, mb["obs"])
        err = v - jnp.stack([mb["target_d"], mb["target_c"]], axis=-1)
        per_head = 0.5 * jnp.mean(err**2, axis=tuple(range(err.ndim - 1)))  # [2]: V^D, V^C
        return self.ppo.vf_coef * per_head.sum(), per_head

    def _update(self, params, opt_state, data, key, critic: dict | None = None):
        """`update_epochs` passes over the epoch's data in `num_minibatches` shuffled minibatches.
        Returns (params, opt_state, critic, mean loss terms)."""
        ppo = self.ppo
        B = self.batch
        flat = jax.tree.map(lambda a: a.reshape((B,) + a.shape[2:]), data)  # [B, U, ...]
        mb_size = B // ppo.num_minibatches
        grad_fn = jax.value_and_grad(self._agent_loss, has_aux=True)

        critic = critic or {}
        critic_grad = jax.value_and_grad(self._critic_loss, has_aux=True)

        def minibatch(carry, idx):
            params, opt_state, critic = carry
            mb = jax.tree.map(lambda a: a[idx], flat)  # [mb, U, ...]
            if ppo.shared_params:
                merged = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), mb)
                (_, aux), grads = grad_fn(params, merged)
                updates, opt_state = self.tx.update(grads, opt_state, params)
            else:
                per_agent = jax.tree.map(lambda a: jnp.moveaxis(a, 1, 0), mb)  # [U, mb, ...]
                (_, aux), grads = jax.vmap(grad_fn)(params, per_agent)
                aux = aux.mean(axis=0)
                updates, opt_state = jax.vmap(self.tx.update)(grads, opt_state, params)
            if critic:
                (_, v_losses), c_grads = critic_grad(critic["params"], mb)
                c_updates, c_opt = self.tx.update(c_grads, critic["opt_state"], critic["params"])
                critic = {"params": optax.apply_updates(critic["params"], c_updates), "opt_state": c_opt}
                aux = aux.at[4:6].set(v_losses)
            return (optax.apply_updates(params, updates), opt_state, critic), aux

        def one_pass(carry, k):
            perm = jax.random.permutation(k, B).reshape(ppo.num_minibatches, mb_size)
            return jax.lax.scan(minibatch, carry, perm)

        (params, opt_state, critic), aux = jax.lax.scan(one_pass, (params, opt_state, critic),
                                                        jax.random.split(key, ppo.update_epochs))
        return params, opt_state, critic, aux.reshape(-1, aux.shape[-1]).mean(axis=0)

    def _epoch(self, state: TrainState, _):
        """Rollout, per-critic GAE (Eq. 26) and the clipped updates (Eqs. 27-33) for one epoch."""
        key = jax.random.wrap_key_data(state.key)
        key, k_roll, k_upd = jax.random.split(key, 3)
        env_state, obs, traj, stats = self._rollout(state.params, state.env_state, state.obs, k_roll, state.critic)
        last = self._with_values(self.apply(state.params, obs), state.critic, obs)
        adv_d, target_d = self._gae(traj.value_d, last.value_d, traj.reward, traj.done)
        adv_c, target_c = self._gae(traj.value_c, last.value_c, traj.reward, traj.done)
        data = {"obs": self._agent_obs(traj.obs), "server": traj.server, "x": traj.x, "logp_d": traj.logp_d,
                "logp_c": traj.logp_c, "adv_d": adv_d, "adv_c": adv_c, "target_d": target_d, "target_c": target_c}
        params, opt_state, critic, aux = self._update(state.params, state.opt_state, data, k_upd, state.critic)
        finite = jnp.all(jnp.isfinite(aux)) & jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves((params, critic))]))
        metrics = jnp.concatenate([stats, aux[:6], aux[6:8], (~finite).astype(float)[None]])
        new = TrainState(params=params, opt_state=opt_state, env_state=env_state, obs=obs,
                         key=jax.random.key_data(key), epoch=state.epoch + 1, critic=critic)
        return new, metrics

    def _run_batch(self, states: TrainState, num_epochs: int):
        return jax.vmap(lambda s: self._run(s, num_epochs))(states)

    def _run(self, state: TrainState, num_epochs: int):
        """Advance `num_epochs` epochs: returns (state, metrics [num_epochs, len(METRIC_NAMES)])."""
        return jax.lax.scan(self._epoch, state, None, length=num_epochs)

    def __call__(self, key, env_params=None):
        """Train from scratch for `ppo.epochs` epochs: (final state, metrics per epoch). Pure; vmappable
        (over keys, and over `env_params` of a sweep)."""
        return self._run(self.init(key, env_params), self.ppo.epochs)

    def param_counts(self) -> dict:
        """Trainable parameters: per agent (both actor-critics), all agents, and the central critic."""
        size = lambda tree: int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))  # noqa: E731
        shapes = jax.eval_shape(self.init, jax.random.key(0))
        agents = size(shapes.params)
        per_agent = agents if self.ppo.shared_params else agents // self.U
        critic = size(shapes.critic.get("params", {}))
        return {"per_agent": per_agent, "agents": agents, "central_critic": critic, "total": agents + critic}

    # ------------------------------------------------------------------ acting after training
    def policy(self, params, name: str = "mlp") -> Policy:
        """The trained agents acting deterministically (argmax server, phi = clip(mean)), for `evaluate`."""

        def act(key, env_state, obs):
            return deterministic_action(self.apply(params, obs))

        return Policy(name, act)

    def sweep_policy(self, stacked_params, name: str = "mlp") -> Policy:
        """Trained agents per sweep point (parameters stacked over points), for `evaluate(env_params=...)`.
        The acting function is the same object for every call, so evaluations reuse their compile."""
        return Policy(name, None, params=stacked_params, act_with=self._act_with)

    def _act_with(self, params, key, env_state, obs):
        return deterministic_action(self.apply(params, obs))


def make_train(system: SystemConfig, ppo: PPOConfig | None = None, scale: float | None = None,
               compiler_options: tuple[tuple[str, object], ...] | None = None) -> Trainer:
    """PureJaxRL-style entry point: `make_train(system, ppo)(key)` runs a whole training in one jit.
    Trainers are cached by their (frozen) configurations, so repeated calls share compiled programs."""
    return _cached_trainer(system, PPOConfig() if ppo is None else ppo, scale, compiler_options)


@functools.lru_cache(maxsize=16)
def _cached_trainer(system, ppo, scale, compiler_options) -> Trainer:
    return Trainer(system, ppo, scale, compiler_options)


# ---------------------------------------------------------------------------- long runs on the host
def _ckpt_dirs(ckpt_dir: str) -> list[str]:
    """Complete checkpoints (state and metrics written) in `ckpt_dir`, oldest first."""
    if not ckpt_dir or not os.path.isdir(ckpt_dir):
        return []
    return sorted(d for d in os.listdir(ckpt_dir) if d.startswith("epoch_") and not d.endswith(".tmp")
                  and os.path.exists(os.path.join(ckpt_dir, d, "metrics.npy")))


def fit(trainer: Trainer, seeds, chunk: int = 10, ckpt_dir: str | None = None, resume: bool = True,
        progress: bool = False, on_chunk=None, env_params=None, devices=None):
    """Train one run per seed for `trainer.ppo.epochs` epochs in chunks of `chunk` epochs.

    Seeds are vmapped inside one jitted call (one compile, all seeds at once). Between
    chunks the host checks for NaN/inf (a `FloatingPointError` names the first bad epoch and seed),
    updates the progress bar and, with `ckpt_dir`, writes an orbax checkpoint of the full training
    state plus the metrics so far (`epoch_000010/`, ...). With `resume`, the newest checkpoint is
    loaded and training continues from it, bit-identically to an uninterrupted run.
    With `env_params` (EnvParams stacked over the runs, one per seed entry) each run trains on its
    own swept configuration, still in one compiled program (seeds may repeat across points).
    Devices: the runs axis and each run's environment axis are split over `devices` (default: all
    visible devices; see `meqc_jax.sharding`), one program partitioned by `jax.jit`; a single
    device runs it unchanged. Pass `devices=jax.devices()[:1]` to keep everything on one device.
    Returns (final TrainState batched over seeds, metrics [seeds, epochs, len(METRIC_NAMES)]).
    """
    import orbax.checkpoint as ocp

    epochs = trainer.ppo.epochs
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"fit: chunk={chunk!r} is invalid: allowed an integer >= 1")
    seeds = [int(s) for s in seeds]
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    if env_params is None:
        env_params = MEQCEnv.stack_params([trainer.env.default_params()] * len(seeds))
    elif int(jax.tree.leaves(env_params)[0].shape[0]) != len(seeds):
        raise ValueError(f"fit: env_params has {jax.tree.leaves(env_params)[0].shape[0]} entries, seeds {len(seeds)}")
    run_chunk = trainer.run_batched
    mesh = sharding.batch_mesh(("runs", "envs"), (len(seeds), trainer.ppo.num_envs), devices)
    keys, env_params = sharding.place((keys, env_params), mesh)
    state = sharding.place(trainer.init_batched(keys, env_params), mesh, STATE_BATCH_AXES)
    history: list[np.ndarray] = []
    done = 0
    ckpt = ocp.StandardCheckpointer() if ckpt_dir else None
    if ckpt is not None and resume and _ckpt_dirs(ckpt_dir):
        latest = os.path.join(os.path.abspath(ckpt_dir), _ckpt_dirs(ckpt_dir)[-1])
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)  # keeps each leaf's sharding
        state = ckpt.restore(os.path.join(latest, "state"), abstract)
        history = [np.load(os.path.join(latest, "metrics.npy"))]
        done = int(np.asarray(state.epoch)[0])

    from meqc_jax.evaluate import _progress

    bar = _progress(progress, epochs)
    for _ in range(done):
        bar.advance(f"epoch {done}/{epochs}")
    t0 = time.perf_counter()
    while done < epochs:
        n = min(chunk, epochs - done)
        state, m = run_chunk(state, n)
        m = sharding.to_host(m)  # [S, n, M]
        bad = m[..., METRIC_NAMES.index("nonfinite")] > 0
        if bad.any():
            s_idx, e_idx = np.argwhere(bad)[0]
            bar.close()
            raise FloatingPointError(f"training diverged at epoch {done + e_idx + 1} (seed {seeds[s_idx]}): "
                                     "NaN or inf in the losses or parameters")
        history.append(m)
        done += n
        if ckpt is not None:
            path = os.path.join(os.path.abspath(ckpt_dir), f"epoch_{done:06d}")
            ckpt.save(os.path.join(path, "state"), state, force=True)
            ckpt.wait_until_finished()
            from meqc_jax.io import atomic_write_bytes

            buf = __import__("io").BytesIO()
            np.save(buf, np.concatenate(history, axis=1))
            atomic_write_bytes(os.path.join(path, "metrics.npy"), buf.getvalue())
        for _ in range(n):
            bar.advance(f"epoch {done}/{epochs}")
        if on_chunk is not None:
            on_chunk(done, np.concatenate(history, axis=1), time.perf_counter() - t0)
    bar.close()
    return state, np.concatenate(history, axis=1)


def seed_params(state: TrainState, i: int):
    """The parameters of the i-th seed of a batched TrainState."""
    return jax.tree.map(lambda a: a[i], state.params)
