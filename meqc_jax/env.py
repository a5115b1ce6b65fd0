"""The MEQC environment: a pure, vectorizable multi-agent env (paper Section IV-A, spec sections 1-10).

Shaped after gymnax (`reset(key)`, `step(key, state, action)`, state as a pytree, automatic reset)
with JaxMARL's multi-agent conventions (per-agent leading axis U on observations and rewards).

    env = MEQCEnv(SystemConfig())
    obs, state = env.reset(key)                                    # obs [U, obs_dim]
    obs, state, reward, done, info = env.step(key, state, (server, phi))

Everything is a pure function of its inputs, so `jax.jit(jax.vmap(env.step))` runs thousands of
independent instances in one call; each call must be given a fresh key (split, never reuse).

One step: draw the slot (tasks), price the joint action under what the carried state imposes
(`dynamics.conditions` -> `cost.SlotConditions`, each dynamic's pricing stage), update the carry (`dynamics.update`), observe.
In the paper's model (`config.dynamics == ()`) the carry is empty and none of that changes a number.
The reward is `Reward` (own or shared, with its scale), defined here once for every user of the env.

Sweeps without recompiling: `env.params_for(other_config)` turns a configuration that differs from
the env's only in a server speed, a QPU size, the qubit lifetime or the cost weights into traced
`EnvParams`; `env.reset(key, params)` stores them in the state, so every scenario drawn afterwards
(including automatic resets) uses them, and one compiled program serves all sweep values (vmap).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from flax import struct

from meqc_jax import dynamics, physics, prng
from meqc_jax.config import SystemConfig
from meqc_jax.cost import CostBreakdown, slot_cost
from meqc_jax.dynamics import ObsSpec
from meqc_jax.tasks import Scenario, Tasks, compile_ray_tracing, sample_scenario, sample_tasks

# Upper bound at which a server's logical capacity stops mattering in the observation: a QPU with
# more than QCAP_OBS_CLIP times the largest task's qubits is "plenty" for every task.
QCAP_OBS_CLIP = 4.0

REWARDS = ("own", "shared", "mixed")


@dataclasses.dataclass(frozen=True)
class Reward:
    """The reward the env returns per agent: the one definition used by the env, the learners and
    the reports.

    `shared` (the paper, IV-A3): every agent gets -C / scale, C the system cost of Eq. 12.
    `own`: agent u gets -c_u / scale, its own share of C (the project's default for learning:
    the shared reward's other terms are noise to one agent).
    `mixed`: -(c_u + others (C - c_u)) / scale, its own cost plus a share `others` of everyone else's:
    with carried state an agent's action delays the others (a queue), which `own` ignores and
    `shared` drowns in their noise. `Reward.normalized` picks the scale that makes each O(1); the
    env's default is the paper's unscaled -C.
    A NaN `scale` is not refused: it makes every reward NaN, which the training loop's NaN stop reports.
    """

    kind: str = "shared"
    scale: float = 1.0
    others: float = 0.0  # `mixed` only: the weight of the other agents' costs

    def __post_init__(self):
        if self.kind not in REWARDS:
            raise ValueError(f"Reward.kind={self.kind!r} is invalid: allowed one of {', '.join(REWARDS)}")
        if not isinstance(self.scale, (int, float)) or isinstance(self.scale, bool) or self.scale <= 0:
            raise ValueError(f"Reward.scale={self.scale!r} is invalid: allowed a number > 0")
        if not isinstance(self.others, (int, float)) or isinstance(self.others, bool) or not 0 <= self.others <= 1:
            raise ValueError(f"Reward.others={self.others!r} is invalid: allowed a number in [0, 1]")

    @classmethod
    def normalized(cls, kind: str, config: SystemConfig, scale: float | None = None, others: float = 0.0) -> Reward:
        """`kind`'s reward divided so that it is O(1): by the per-user cost of keeping every task local
        (`local_cost_scale`, or `scale` when given) for `own`, by U times it for `shared`, by
        1 + others (U - 1) times it for `mixed`."""
        s = local_cost_scale(config) if scale is None else float(scale)
        weight = {"own": 1.0, "shared": config.num_users, "mixed": 1.0 + others * (config.num_users - 1)}[kind]
        return cls(kind, weight * s, others if kind == "mixed" else 0.0)

    def __call__(self, breakdown: CostBreakdown) -> jnp.ndarray:
        """Per-agent rewards [U] of one priced slot."""
        if self.kind == "own":
            return -breakdown.per_user / self.scale
        if self.kind == "mixed":
            own = breakdown.per_user
            return -(own + self.others * (breakdown.total - own)) / self.scale
        return jnp.full(breakdown.per_user.shape, -breakdown.total / self.scale)


@struct.dataclass
class EnvParams:
    """Per-instance scenario parameters that override the static configuration (gymnax-style).

    Scalars in SI units; NaN means "as the configuration samples it". Build them with
    `MEQCEnv.params_for(config)` (validated on the host), never by hand inside jit.
    """

    f_edge: jnp.ndarray  # [] Hz, every server's CPU speed
    phys_qubits: jnp.ndarray  # [] physical qubits of every QPU (integral)
    t1: jnp.ndarray  # [] s, nominal qubit lifetime
    lam_d: jnp.ndarray  # [] latency weight
    lam_e: jnp.ndarray  # [] energy weight

    def apply(self, scenario: Scenario) -> Scenario:
        """The scenario with every set (non-NaN) parameter replacing its sampled values."""
        def pick(value, sampled):
            unset = jnp.isnan(value)
            return jnp.where(unset, sampled, jnp.where(unset, 0.0, value).astype(sampled.dtype))

        return scenario.replace(
            f_edge=pick(self.f_edge, scenario.f_edge),
            phys_qubits=pick(self.phys_qubits, scenario.phys_qubits),
            t1=pick(self.t1, scenario.t1),
            lam_d=pick(self.lam_d, scenario.lam_d),
            lam_e=pick(self.lam_e, scenario.lam_e),
        )


# SystemConfig fields an EnvParams can carry, and (for the error message) what each must look like.
SWEEPABLE_FIELDS = ("f_edge_choices_ghz", "phys_qubits_range", "t1_ms", "preset", "lam_d", "lam_e")


@struct.dataclass
class EnvState:
    """Full state of one instance: the episode's scenario, the current slot's tasks, the slot index,
    the instance's scenario parameters (all NaN unless a sweep set them), and the carry of the
    active dynamics (`meqc_jax.dynamics`; `{}` in the paper's model, where no slot affects the next)."""

    scenario: Scenario
    tasks: Tasks
    t: jnp.ndarray  # [] int, slot index within the episode, 0..slots_per_episode-1
    params: EnvParams
    carry: dict = struct.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ObsField:
    """One block of the observation vector: `obs[..., start:start+size] = transform(raw) / scale`."""

    name: str
    start: int
    size: int
    scale: float
    transform: str  # "linear", "log2" (log2(raw / base)), or "linear_clipped"
    doc: str
    kind: str = "user"  # "user" [U], "user_server" [U, E] or "server" [E] (broadcast to every user)
    base: float = 1.0  # log2 transform: log2(raw / base)
    clip: float | None = None  # linear_clipped: min(raw / scale, clip)


def paper_obs_specs(config: SystemConfig) -> tuple[ObsSpec, ...]:
    """The paper's observation (Eq. 16 as fixed by spec 10): 6 per-user scalars, the user's gains to
    every server, then every server's f_edge, qcap and k."""
    si = config.si
    q_max = float(si.prims_range[1] + 2 * si.c_b + 5)
    _, depth_max = compile_ray_tracing(si.prims_range[1], si.c_b)
    return (
        ObsSpec("f_local", "user", max(si.f_local_choices), "device CPU speed / largest choice"),
        ObsSpec("s", "user", float(si.frames_range[1] * si.bytes_per_frame), "task bytes / largest task"),
        ObsSpec("n", "user", float(max(si.cycles_exponent_range[1], 1)),
                "log2(n / cycles_base) / largest exponent (n spans powers of two)", "log2", base=si.cycles_base),
        ObsSpec("q", "user", q_max, "logical qubits / largest task's qubits"),
        ObsSpec("depth", "user", float(depth_max), "circuit depth / largest depth"),
        ObsSpec("p_tx", "user", si.p_tx_range[1], "transmit power / upper bound"),
        ObsSpec("g", "user_server", si.gain_range[1], "channel gain to each server / upper bound"),
        ObsSpec("f_edge", "server", max(si.f_edge_choices), "each server's CPU speed / largest choice"),
        ObsSpec("qcap", "server", q_max,
                f"each server's logical capacity / largest task's qubits, clipped at {QCAP_OBS_CLIP}",
                "linear_clipped", clip=QCAP_OBS_CLIP),
        ObsSpec("k", "server", float(max(max(si.k_choices), 1)), "each server's concatenation level / largest"),
    )


class MEQCEnv:
    """Vectorized MEQC offloading environment for U agents (devices) and E edge servers.

    Action per agent: `(server, phi)` with server in {0..E-1} (discrete) and phi in [0, 1] the
    fraction kept local (continuous); joint action = `(server [U] int, phi [U] float)`.
    Out-of-range actions are clipped and counted in `info["cost"].clipped_*` (see `cost`).
    Reward: `reward` (a `Reward`; default the paper's shared, unscaled `-C` of Eq. 12), shape [U].
    `done` is True on the last slot of an episode; the returned state and obs are then those of
    a fresh episode (automatic reset, carry included), while `info` describes the slot just priced.
    With dynamics (`config.dynamics`) the state's carry is priced in and updated every slot.
    """

    def __init__(self, config: SystemConfig | None = None, reward: Reward | None = None):
        self.config = config if config is not None else SystemConfig()
        self.reward = Reward() if reward is None else reward
        self.dynamics = dynamics.active(self.config)  # validates config.dynamics before anything is traced
        self.obs_fields = self._make_obs_fields()

    # ------------------------------------------------------------------ sizes
    @property
    def num_agents(self) -> int:
        return self.config.num_users

    @property
    def num_servers(self) -> int:
        return self.config.num_servers

    @property
    def obs_dim(self) -> int:
        last = self.obs_fields[-1]
        return last.start + last.size

    @property
    def memoryless(self) -> bool:
        """True when actions never affect later slots (no dynamics): policies may then share one
        transition (`evaluate`'s fast path) and per-slot optima are optima of the whole episode."""
        return not self.dynamics

    def __repr__(self):
        c = self.config
        dyn = f", dynamics={c.dynamics}" if c.dynamics else ""
        return f"MEQCEnv(U={c.num_users}, E={c.num_servers}, T={c.slots_per_episode}, preset={c.preset}{dyn})"

    # ------------------------------------------------------------------ sweep parameters
    def default_params(self) -> EnvParams:
        """Parameters that change nothing: the configuration's own sampling."""
        nan = jnp.asarray(math.nan, dtype=float)
        return EnvParams(f_edge=nan, phys_qubits=nan, t1=nan, lam_d=nan, lam_e=nan)

    def params_for(self, config: SystemConfig) -> EnvParams:
        """EnvParams that make this env behave as `config` (host-side, validated).

        `config` may differ from the env's configuration only in: one fixed server speed
        (`f_edge_choices_ghz` of length 1), one fixed QPU size (`phys_qubits_range` with low = high),
        `t1_ms`, and the weights (`preset`, `lam_d`, `lam_e`). Anything else changes shapes or
        sampling and needs its own env (ValueError naming the field).
        """
        base = self.config
        for f in dataclasses.fields(SystemConfig):
            if f.name not in SWEEPABLE_FIELDS and getattr(config, f.name) != getattr(base, f.name):
                raise ValueError(f"params_for: SystemConfig.{f.name} differs from the env's "
                                 f"({getattr(config, f.name)!r} vs {getattr(base, f.name)!r}); "
                                 f"allowed to differ: {', '.join(SWEEPABLE_FIELDS)}")
        nan = math.nan
        f_edge = phys = t1 = nan
        if config.f_edge_choices_ghz != base.f_edge_choices_ghz:
            if len(config.f_edge_choices_ghz) != 1:
                raise ValueError(f"params_for: SystemConfig.f_edge_choices_ghz={config.f_edge_choices_ghz!r} is "
                                 "invalid for a sweep: allowed a single speed, e.g. (25.0,)")
            f_edge = config.si.f_edge_choices[0]
        if config.phys_qubits_range != base.phys_qubits_range:
            lo, hi = config.phys_qubits_range
            if lo != hi:
                raise ValueError(f"params_for: SystemConfig.phys_qubits_range={config.phys_qubits_range!r} is "
                                 "invalid for a sweep: allowed a fixed size (n, n)")
            phys = float(lo)
        if config.t1_ms != base.t1_ms:
            t1 = config.si.t1
        ld, le = config.weights
        bd, be = base.weights
        lam_d, lam_e = (nan if ld == bd else ld), (nan if le == be else le)
        return EnvParams(*(jnp.asarray(v, dtype=float) for v in (f_edge, phys, t1, lam_d, lam_e)))

    @staticmethod
    def stack_params(params: list[EnvParams]) -> EnvParams:
        """Stack EnvParams on a new leading axis (one entry per sweep point) for `vmap`."""
        return jax.tree.map(lambda *xs: jnp.stack(xs), *params)

    # ------------------------------------------------------------------ reset / step
    def reset(self, key, params: EnvParams | None = None) -> tuple[jnp.ndarray, EnvState]:
        """Draw a new episode (scenario), its carry and its first slot (tasks); returns (obs [U, D], state).
        `params` (default: none) override parts of every scenario this instance draws."""
        params = self.default_params() if params is None else params
        if self.memoryless:  # the paper's key use, unchanged
            k_scen, k_tasks = prng.split(key)
            k_carry = None
        else:
            k_scen, k_tasks, k_carry = prng.split(key, 3)
        scenario = params.apply(sample_scenario(k_scen, self.config))
        carry = {} if k_carry is None else dynamics.init(k_carry, self.config, scenario)
        state = EnvState(scenario=scenario, tasks=self._draw_tasks(k_tasks, scenario, carry), t=jnp.int32(0),
                         params=params, carry=carry)
        return self.observe(state), state

    def step(self, key, state: EnvState, action, batch_axis=None):
        """Price the joint action on the current slot, update the carry, then move to the next slot (or
        a new episode).

        Returns (obs [U, D], next_state, reward [U], done [], info) where info = {"cost":
        CostBreakdown of the priced slot, "slot": its index}. A central planner (the oracle) may
        pass a third action element, `preferred` bool [U]: its choice of each server's QPU winner
        (see `cost.arbitrate`); agents pass `(server, phi)` and the configured rule decides.
        Common random numbers: given the key, the tasks, gains, arrival order (and every dynamic's
        draws) are the same whatever the action, so policies stepped with one key stream are compared
        on the same randomness.

        `batch_axis`: the name (or tuple of names) of the `vmap` axes this step runs under, when the
        caller names them (`MEQCEnv.batch_step` does). The automatic reset's new scenario is then drawn
        only in slots where some instance of the batch ends its episode (a real branch on a value
        reduced over the batch) instead of in every slot; the numbers are identical either way.
        """
        if self.memoryless:
            k_arb, k_tasks, k_scen = prng.split(key, 3)
            k_dyn = None
        else:
            k_arb, k_tasks, k_scen, k_dyn = prng.split(key, 4)
        breakdown = self._price(k_arb, state, action)
        done = state.t + 1 >= self.config.slots_per_episode
        carried = state.carry
        if k_dyn is not None:
            k_update, k_init = prng.split(k_dyn)
            carried = dynamics.update(state.carry, breakdown, k_update, self.config, state.scenario, state.tasks)

        def next_episode(_):
            """The scenario (and carry) of the next slot: a fresh episode's where `done`, else the current."""
            scenario = jax.tree.map(lambda new, old: jnp.where(done, new, old),
                                    state.params.apply(sample_scenario(k_scen, self.config)), state.scenario)
            if k_dyn is None:
                return scenario, carried
            fresh = dynamics.init(k_init, self.config, scenario)  # the carry of the new episode
            return scenario, jax.tree.map(lambda new, old: jnp.where(done, new, old), fresh, carried)

        if batch_axis is None:
            # Under a plain vmap a lax.cond on the batched `done` would evaluate both branches anyway,
            # so the new episode is drawn every slot and kept only where an episode ends.
            scenario, carry = next_episode(None)
        else:
            # 499 of 500 slots end no episode anywhere in the batch: skip the draw there.
            any_done = jax.lax.psum(done.astype(jnp.int32), batch_axis) > 0
            scenario, carry = jax.lax.cond(any_done, next_episode, lambda _: (state.scenario, carried), None)
        next_state = EnvState(
            scenario=scenario,
            tasks=self._draw_tasks(k_tasks, scenario, carry),
            t=jnp.where(done, 0, state.t + 1).astype(jnp.int32),
            params=state.params,
            carry=carry,
        )
        info = {"cost": breakdown, "slot": state.t}
        return self.observe(next_state), next_state, self.reward(breakdown), done, info

    def batch_step(self, keys, states: EnvState, actions, depth: int = 1):
        """`env.step` vmapped over `depth` leading batch axes ([N] or e.g. [P, N] keys, states and
        actions), with the axes named so that the automatic reset is drawn only in slots that end an
        episode somewhere in the batch (`step`'s `batch_axis`; the automatic reset of spec section 2's
        per-episode draw); the same numbers as `jax.vmap(env.step)`, bit for bit."""
        if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= 8:
            raise ValueError(f"batch_step: depth={depth!r} is invalid: allowed an integer in [1, 8] (batch axes)")
        names = tuple(f"meqc_batch_{i}" for i in range(depth))
        fn = functools.partial(self.step, batch_axis=names)
        for name in reversed(names):
            fn = jax.vmap(fn, axis_name=name)
        return fn(keys, states, actions)

    def price(self, key, state: EnvState, action) -> CostBreakdown:
        """The slot cost (Eq. 12, with its parts) of `action` on the current slot exactly as
        `step(key, state, action)` prices it (same key use), without moving on: lets several
        policies be priced on one slot."""
        return self._price(prng.split(key, 3 if self.memoryless else 4)[0], state, action)

    def conditions(self, state: EnvState):
        """What the state's carry imposes on pricing its slot (`cost.SlotConditions`; None without dynamics)."""
        return dynamics.conditions(state.carry, self.config, state.scenario, state.tasks)

    def _price(self, k_arb, state: EnvState, action) -> CostBreakdown:
        server, phi = action[0], action[1]
        preferred = action[2] if len(action) > 2 else None
        return slot_cost(self.config, state.scenario, state.tasks, server, phi, k_arb, preferred,
                         self.conditions(state))

    def _draw_tasks(self, key, scenario: Scenario, carry: dict) -> Tasks:
        tasks = sample_tasks(key, self.config, scenario)
        return tasks if self.memoryless else dynamics.tasks(carry, self.config, scenario, tasks)

    # ------------------------------------------------------------------ observation (spec 10)
    def _make_obs_fields(self) -> tuple[ObsField, ...]:
        """The observation layout: the paper's fields, then each active dynamic's (`dynamics.obs_specs`)."""
        E = self.config.num_servers
        fields, start = [], 0
        for spec in paper_obs_specs(self.config) + dynamics.obs_specs(self.config):
            size = 1 if spec.kind == "user" else E
            fields.append(ObsField(spec.name, start, size, float(spec.scale), spec.transform, spec.doc, spec.kind,
                                   spec.base, spec.clip))
            start += size
        return tuple(fields)

    def _raw_fields(self, state: EnvState) -> dict[str, jnp.ndarray]:
        """Unscaled field values at their natural shapes: [U] per user, [U, E] gains, [E] per server."""
        sc, tk = state.scenario, state.tasks
        raw = {
            "f_local": sc.f_local, "s": tk.s, "n": tk.n, "q": tk.q, "depth": tk.depth, "p_tx": sc.p_tx,
            "g": tk.g, "f_edge": sc.f_edge, "qcap": physics.logical_capacity(sc.phys_qubits, sc.k), "k": sc.k,
        }
        if not self.memoryless:
            raw.update(dynamics.observe(state.carry, self.config, sc, tk))
        return raw

    def raw_observation(self, state: EnvState) -> dict[str, jnp.ndarray]:
        """The unscaled values behind each observation field (SI units), per user: [U] or [U, size]."""
        U = self.config.num_users
        raw = self._raw_fields(state)
        kinds = {f.name: f.kind for f in self.obs_fields}
        return {name: (jnp.broadcast_to(x, (U,) + x.shape) if kinds[name] == "server" else x)
                for name, x in raw.items()}

    def observe(self, state: EnvState) -> jnp.ndarray:
        """Per-user observation (Eq. 16 as fixed by spec 10), shape [U, obs_dim], scaled to O(1).

        Layout (`obs_fields`): blocks in field order; consecutive per-user scalars are stacked, and
        consecutive server fields (the same for all users) are computed once and broadcast together
        (the broadcast write is most of this function's cost at large U and E).
        """
        raw = self._raw_fields(state)
        U = self.config.num_users
        blocks, run_kind, run = [], None, []

        def flush():
            if run_kind == "user":
                blocks.append(jnp.stack(run, axis=-1))  # [U, n]
            elif run_kind == "server":
                server = jnp.concatenate(run)  # [n E]
                blocks.append(jnp.broadcast_to(server, (U, server.shape[0])))
            else:
                blocks.extend(run)  # [U, E] each

        for f in self.obs_fields:
            x = jnp.asarray(raw[f.name], dtype=float)
            if f.transform == "log2":
                x = jnp.log2(x / f.base)
            x = x / f.scale
            if f.transform == "linear_clipped":
                x = jnp.minimum(x, f.clip)
            if f.kind != run_kind and run:
                flush()
                run = []
            run_kind = f.kind
            run.append(x)
        flush()
        return jnp.concatenate(blocks, axis=-1)


@functools.lru_cache(maxsize=32)  # a constant of the configuration: every learner on it shares it
def local_cost_scale(config: SystemConfig, samples: int = 256, seed: int = 12345) -> float:
    """The mean per-user cost of keeping every task local (phi = 1), over `samples` fresh slots.

    `Reward.normalized` divides rewards by it so that they are O(1) whatever the preset and sizes;
    it is a fixed constant of the configuration, not a running statistic, so it cannot make the
    learning problem non-stationary.
    """
    env = MEQCEnv(config)
    U = config.num_users
    keep_local = (jnp.zeros(U, jnp.int32), jnp.ones(U))

    @jax.jit
    def local_cost(key):
        k_reset, k_price = prng.split(key)
        _, states = jax.vmap(env.reset)(jax.random.split(k_reset, samples))
        # phi = 1 never requests a QPU, so the arbitration draw does not matter
        b = jax.vmap(lambda st, k: env.price(k, st, keep_local))(states, jax.random.split(k_price, samples))
        return jnp.mean(b.per_user)

    return float(local_cost(jax.random.key(seed)))
