"""The MEQC environment: a pure, vectorizable multi-agent env (paper Section IV-A, spec sections 1-10).

Shaped after gymnax (`reset(key)`, `step(key, state, action)`, state as a pytree, automatic reset)
with JaxMARL's multi-agent conventions (per-agent leading axis U on observations and rewards).

    env = MEQCEnv(SystemConfig())
    obs, state = env.reset(key)                                    # obs [U, obs_dim]
    obs, state, reward, done, info = env.step(key, state, (server, phi))

Everything is a pure function of its inputs, so `jax.jit(jax.vmap(env.step))` runs thousands of
independent instances in one call; each call must be given a fresh key (split, never reuse).

Sweeps without recompiling: `env.params_for(other_config)` turns a configuration that differs from
the env's only in a server speed, a QPU size, the qubit lifetime or the cost weights into traced
`EnvParams`; `env.reset(key, params)` stores them in the state, so every scenario drawn afterwards
(including automatic resets) uses them, and one compiled program serves all sweep values (vmap).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import struct

from meqc_jax import physics
from meqc_jax.config import SystemConfig
from meqc_jax.cost import CostBreakdown, slot_cost
from meqc_jax.tasks import Scenario, Tasks, compile_ray_tracing, sample_scenario, sample_tasks

# Upper bound at which a server's logical capacity stops mattering in the observation: a QPU with
# more than QCAP_OBS_CLIP times the largest task's qubits is "plenty" for every task.
QCAP_OBS_CLIP = 4.0

# Observation layout (spec 10): per-user scalars, the user's gains to every server, per-server vectors.
_USER_FIELDS = ("f_local", "s", "n", "q", "depth", "p_tx")
_SERVER_FIELDS = ("f_edge", "qcap", "k")


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
    and the instance's scenario parameters (all NaN unless a sweep set them)."""

    scenario: Scenario
    tasks: Tasks
    t: jnp.ndarray  # [] int, slot index within the episode, 0..slots_per_episode-1
    params: EnvParams


@dataclasses.dataclass(frozen=True)
class ObsField:
    """One block of the observation vector: `obs[..., start:start+size] = transform(raw) / scale`."""

    name: str
    start: int
    size: int
    scale: float
    transform: str  # "linear", "log2" (log2(raw / base)), or "linear_clipped"
    doc: str


class MEQCEnv:
    """Vectorized MEQC offloading environment for U agents (devices) and E edge servers.

    Action per agent: `(server, phi)` with server in {0..E-1} (discrete) and phi in [0, 1] the
    fraction kept local (continuous); joint action = `(server [U] int, phi [U] float)`.
    Out-of-range actions are clipped and counted in `info["cost"].clipped_*` (see `cost`).
    Reward: the shared `-C` of Eq. 12 for every agent (paper IV-A3), shape [U], unscaled.
    `done` is True on the last slot of an episode; the returned state and obs are then those of
    a fresh episode (automatic reset), while `info` describes the slot just priced.
    """

    def __init__(self, config: SystemConfig | None = None):
        self.config = config if config is not None else SystemConfig()
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
        return 6 + 4 * self.config.num_servers

    def __repr__(self):
        c = self.config
        return f"MEQCEnv(U={c.num_users}, E={c.num_servers}, T={c.slots_per_episode}, preset={c.preset})"

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
        """Draw a new episode (scenario) and its first slot (tasks); returns (obs [U, D], state).
        `params` (default: none) override parts of every scenario this instance draws."""
        params = self.default_params() if params is None else params
        k_scen, k_tasks = jax.random.split(key)
        scenario = params.apply(sample_scenario(k_scen, self.config))
        state = EnvState(scenario=scenario, tasks=sample_tasks(k_tasks, self.config, scenario), t=jnp.int32(0),
                         params=params)
        return self.observe(state), state

    def step(self, key, state: EnvState, action):
        """Price the joint action on the current slot, then move to the next slot (or a new episode).

        Returns (obs [U, D], next_state, reward [U], done [], info) where info = {"cost":
        CostBreakdown of the priced slot, "slot": its index}. A central planner (the oracle) may
        pass a third action element, `preferred` bool [U]: its choice of each server's QPU winner
        (see `cost.arbitrate`); agents pass `(server, phi)` and the configured rule decides.
        """
        k_arb, k_tasks, k_scen = jax.random.split(key, 3)
        breakdown = self._price(k_arb, state, action)
        done = state.t + 1 >= self.config.slots_per_episode
        # Automatic reset: a new scenario is drawn every step and kept only at an episode's end
        # (under vmap a lax.cond would evaluate both branches anyway).
        scenario = jax.tree.map(
            lambda new, old: jnp.where(done, new, old),
            state.params.apply(sample_scenario(k_scen, self.config)), state.scenario,
        )
        next_state = EnvState(
            scenario=scenario,
            tasks=sample_tasks(k_tasks, self.config, scenario),
            t=jnp.where(done, 0, state.t + 1).astype(jnp.int32),
            params=state.params,
        )
        reward = jnp.full((self.config.num_users,), -breakdown.total)
        info = {"cost": breakdown, "slot": state.t}
        return self.observe(next_state), next_state, reward, done, info

    def price(self, key, state: EnvState, action) -> CostBreakdown:
        """The slot cost (Eq. 12, with its parts) of `action` on the current slot exactly as
        `step(key, state, action)` prices it (same key use), without moving on: lets several
        policies be priced on one slot."""
        return self._price(jax.random.split(key, 3)[0], state, action)

    def _price(self, k_arb, state: EnvState, action) -> CostBreakdown:
        server, phi = action[0], action[1]
        preferred = action[2] if len(action) > 2 else None
        return slot_cost(self.config, state.scenario, state.tasks, server, phi, k_arb, preferred)

    # ------------------------------------------------------------------ observation (spec 10)
    def _make_obs_fields(self) -> tuple[ObsField, ...]:
        si = self.config.si
        E = self.config.num_servers
        q_max = float(si.prims_range[1] + 2 * si.c_b + 5)
        _, depth_max = compile_ray_tracing(si.prims_range[1], si.c_b)
        specs = [
            ("f_local", 1, max(si.f_local_choices), "linear", "device CPU speed / largest choice"),
            ("s", 1, float(si.frames_range[1] * si.bytes_per_frame), "linear", "task bytes / largest task"),
            ("n", 1, float(max(si.cycles_exponent_range[1], 1)), "log2",
             "log2(n / cycles_base) / largest exponent (n spans powers of two)"),
            ("q", 1, q_max, "linear", "logical qubits / largest task's qubits"),
            ("depth", 1, float(depth_max), "linear", "circuit depth / largest depth"),
            ("p_tx", 1, si.p_tx_range[1], "linear", "transmit power / upper bound"),
            ("g", E, si.gain_range[1], "linear", "channel gain to each server / upper bound"),
            ("f_edge", E, max(si.f_edge_choices), "linear", "each server's CPU speed / largest choice"),
            ("qcap", E, q_max, "linear_clipped",
             f"each server's logical capacity / largest task's qubits, clipped at {QCAP_OBS_CLIP}"),
            ("k", E, float(max(max(si.k_choices), 1)), "linear", "each server's concatenation level / largest"),
        ]
        assert tuple(x[0] for x in specs) == _USER_FIELDS + ("g",) + _SERVER_FIELDS  # order used by observe()
        fields, start = [], 0
        for name, size, scale, transform, doc in specs:
            fields.append(ObsField(name, start, size, float(scale), transform, doc))
            start += size
        return tuple(fields)

    def _raw_fields(self, state: EnvState) -> dict[str, jnp.ndarray]:
        """Unscaled field values at their natural shapes: [U] per user, [U, E] gains, [E] per server."""
        sc, tk = state.scenario, state.tasks
        return {
            "f_local": sc.f_local, "s": tk.s, "n": tk.n, "q": tk.q, "depth": tk.depth, "p_tx": sc.p_tx,
            "g": tk.g, "f_edge": sc.f_edge, "qcap": physics.logical_capacity(sc.phys_qubits, sc.k), "k": sc.k,
        }

    def raw_observation(self, state: EnvState) -> dict[str, jnp.ndarray]:
        """The unscaled values behind each observation field (SI units), per user: [U] or [U, size]."""
        U = self.config.num_users
        raw = self._raw_fields(state)
        return {name: (jnp.broadcast_to(x, (U,) + x.shape) if name in _SERVER_FIELDS else x) for name, x in raw.items()}

    def observe(self, state: EnvState) -> jnp.ndarray:
        """Per-user observation (Eq. 16 as fixed by spec 10), shape [U, obs_dim], scaled to O(1).

        Layout (`obs_fields`): 6 per-user scalars, the user's E channel gains, then the E-vectors of
        every server's f_edge, qcap and k, which are the same for all users (computed once and
        broadcast: the broadcast write is most of this function's cost at large U and E).
        """
        raw = self._raw_fields(state)
        si = self.config.si
        scaled = {}
        for f in self.obs_fields:
            x = jnp.asarray(raw[f.name], dtype=float)
            if f.transform == "log2":
                x = jnp.log2(x / si.cycles_base)
            x = x / f.scale
            if f.transform == "linear_clipped":
                x = jnp.minimum(x, QCAP_OBS_CLIP)
            scaled[f.name] = x
        user = jnp.stack([scaled[n] for n in _USER_FIELDS], axis=-1)  # [U, 6]
        server = jnp.concatenate([scaled[n] for n in _SERVER_FIELDS])  # [3E]
        U = self.config.num_users
        return jnp.concatenate([user, scaled["g"], jnp.broadcast_to(server, (U, server.shape[0]))], axis=-1)
