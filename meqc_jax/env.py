"""The MEQC environment: a pure, vectorizable multi-agent env (paper Section IV-A, spec sections 1-10).

Shaped after gymnax (`reset(key)`, `step(key, state, action)`, state as a pytree, automatic reset)
with JaxMARL's multi-agent conventions (per-agent leading axis U on observations and rewards).

    env = MEQCEnv(SystemConfig())
    obs, state = env.reset(key)                                    # obs [U, obs_dim]
    obs, state, reward, done, info = env.step(key, state, (server, phi))

Everything is a pure function of its inputs, so `jax.jit(jax.vmap(env.step))` runs thousands of
independent instances in one call; each call must be given a fresh key (split, never reuse).
"""

from __future__ import annotations

import dataclasses

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
class EnvState:
    """Full state of one instance: the episode's scenario, the current slot's tasks, the slot index."""

    scenario: Scenario
    tasks: Tasks
    t: jnp.ndarray  # [] int, slot index within the episode, 0..slots_per_episode-1


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

    # ------------------------------------------------------------------ reset / step
    def reset(self, key) -> tuple[jnp.ndarray, EnvState]:
        """Draw a new episode (scenario) and its first slot (tasks); returns (obs [U, D], state)."""
        k_scen, k_tasks = jax.random.split(key)
        scenario = sample_scenario(k_scen, self.config)
        state = EnvState(scenario=scenario, tasks=sample_tasks(k_tasks, self.config, scenario), t=jnp.int32(0))
        return self.observe(state), state

    def step(self, key, state: EnvState, action):
        """Price the joint action on the current slot, then move to the next slot (or a new episode).

        Returns (obs [U, D], next_state, reward [U], done [], info) where info = {"cost":
        CostBreakdown of the priced slot, "slot": its index}. A central planner (the oracle) may
        pass a third action element, `preferred` bool [U]: its choice of each server's QPU winner
        (see `cost.arbitrate`); agents pass `(server, phi)` and the configured rule decides.
        """
        server, phi = action[0], action[1]
        preferred = action[2] if len(action) > 2 else None
        k_arb, k_tasks, k_scen = jax.random.split(key, 3)
        breakdown: CostBreakdown = slot_cost(
            self.config, state.scenario, state.tasks, server, phi, k_arb, preferred
        )
        done = state.t + 1 >= self.config.slots_per_episode
        # Automatic reset: a new scenario is drawn every step and kept only at an episode's end
        # (under vmap a lax.cond would evaluate both branches anyway).
        scenario = jax.tree.map(
            lambda new, old: jnp.where(done, new, old), sample_scenario(k_scen, self.config), state.scenario
        )
        next_state = EnvState(
            scenario=scenario,
            tasks=sample_tasks(k_tasks, self.config, scenario),
            t=jnp.where(done, 0, state.t + 1).astype(jnp.int32),
        )
        reward = jnp.full((self.config.num_users,), -breakdown.total)
        info = {"cost": breakdown, "slot": state.t}
        return self.observe(next_state), next_state, reward, done, info

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
