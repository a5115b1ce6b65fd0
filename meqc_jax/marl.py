"""The MEQC env behind JaxMARL's `MultiAgentEnv` interface, for code written against JaxMARL.

JaxMARL (https://github.com/FLAIROx/JaxMARL) addresses agents by name: observations, actions,
rewards and dones are dicts keyed `"agent_0" .. "agent_{U-1}"`, `dones` carries an extra `"__all__"`,
and each agent has an `observation_space(agent)` and an `action_space(agent)` with `sample(key)` and
`contains(x)`. `MEQCMultiAgentEnv` translates between those dicts and the native `MEQCEnv`'s stacked
arrays ([U, ...] on the leading axis); it adds no dynamics, so its costs equal the native env's.

    env = MEQCMultiAgentEnv(SystemConfig(num_users=3, num_servers=2))
    obs, state = env.reset(key)                                  # obs["agent_0"]: [obs_dim]
    actions = {a: env.action_space(a).sample(k) for a, k in zip(env.agents, keys)}  # (server, phi)
    obs, state, rewards, dones, infos = env.step(key, state, actions)

Backend. The real `jaxmarl` package (0.2.0 imports cleanly with jax 0.10) is optional: when it
imports, `MEQCMultiAgentEnv` subclasses `jaxmarl.environments.multi_agent_env.MultiAgentEnv` and its
spaces are `jaxmarl.environments.spaces` objects, so `isinstance` checks and JaxMARL's wrappers
(e.g. `LogWrapper`) accept it. meqc_jax does not depend on jaxmarl (it pulls in gymnax, gymnasium,
pandas and seaborn, and imports all of its bundled environments, ~3 s; its wrappers also need `six`, which
gymnax 1.0.1 imports without declaring it), so when it is not installed
(or `MEQC_USE_JAXMARL=0`) a local stand-in with the same method names, signatures and semantics is used:
`LocalMultiAgentEnv` and the spaces `LocalDiscrete`, `LocalBox`, `LocalTuple`, `LocalDict`. The public
names `MultiAgentEnv`, `Space`, `Discrete`, `Box`, `Tuple`, `Dict` are whichever backend is active;
`JAXMARL_AVAILABLE` says which, and `JAXMARL_IMPORT_ERROR` why the real package was not used.
"""

from __future__ import annotations

import abc
import io
import os
import sys
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from meqc_jax.config import SystemConfig
from meqc_jax.env import QCAP_OBS_CLIP, EnvParams, EnvState, MEQCEnv


# ---------------------------------------------------------------------------- local stand-in for jaxmarl
class LocalSpace(abc.ABC):
    """A jittable space: `sample(key)` draws a member, `contains(x)` is a traced bool."""

    @abc.abstractmethod
    def sample(self, rng): ...

    @abc.abstractmethod
    def contains(self, x): ...


class LocalDiscrete(LocalSpace):
    """The integers 0..num_categories-1, as a scalar of `dtype`."""

    def __init__(self, num_categories: int, dtype=jnp.int32):
        if num_categories < 0:
            raise ValueError(f"Discrete: num_categories={num_categories} must be >= 0")
        self.n = num_categories
        self.shape = ()
        self.dtype = dtype

    def sample(self, rng):
        return jax.random.randint(rng, self.shape, 0, self.n).astype(self.dtype)

    def contains(self, x):
        return (x >= 0) & (x < self.n)


class LocalBox(LocalSpace):
    """Arrays of `shape` with every entry in [low, high]; sampled uniformly."""

    def __init__(self, low, high, shape: tuple[int, ...], dtype=jnp.float32):
        self.low, self.high, self.shape, self.dtype = low, high, shape, dtype

    def sample(self, rng):
        return jax.random.uniform(rng, self.shape, minval=self.low, maxval=self.high).astype(self.dtype)

    def contains(self, x):
        return jnp.all(x >= self.low) & jnp.all(x <= self.high)


class LocalTuple(LocalSpace):
    """The product of `spaces`; members are tuples, one entry per subspace, sampled with split keys."""

    def __init__(self, spaces: Sequence[LocalSpace]):
        self.spaces = spaces
        self.num_spaces = len(spaces)

    def sample(self, rng):
        keys = jax.random.split(rng, self.num_spaces)
        return tuple(space.sample(k) for space, k in zip(self.spaces, keys))

    def contains(self, x):
        inside = jnp.bool_(True)
        for i, space in enumerate(self.spaces):
            inside = inside & space.contains(x[i])
        return inside


class LocalDict(LocalSpace):
    """The product of named `spaces`; members are dicts with the same keys, sampled with split keys."""

    def __init__(self, spaces: Mapping[str, LocalSpace]):
        self.spaces = spaces
        self.num_spaces = len(spaces)

    def sample(self, rng):
        keys = jax.random.split(rng, self.num_spaces)
        return OrderedDict((name, space.sample(k)) for (name, space), k in zip(self.spaces.items(), keys))

    def contains(self, x):
        inside = jnp.bool_(True)
        for name, space in self.spaces.items():
            inside = inside & space.contains(x[name])
        return inside


class LocalMultiAgentEnv(abc.ABC):
    """The `MultiAgentEnv` interface of JaxMARL, for when the package is absent.

    Same attributes (`num_agents`, `agents`, `observation_spaces`, `action_spaces`) and methods
    (`reset`, `step`, `step_env`, `get_obs`, `get_avail_actions`, `observation_space`, `action_space`,
    `name`, `agent_classes`); subclasses implement all but the space look-ups and `name`.
    """

    def __init__(self, num_agents: int):
        self.num_agents = num_agents
        self.agents = [f"agent_{i}" for i in range(num_agents)]
        self.observation_spaces: dict[str, LocalSpace] = {}
        self.action_spaces: dict[str, LocalSpace] = {}

    @abc.abstractmethod
    def reset(self, key): ...

    @abc.abstractmethod
    def step(self, key, state, actions, reset_state=None): ...

    @abc.abstractmethod
    def step_env(self, key, state, actions): ...

    @abc.abstractmethod
    def get_obs(self, state): ...

    @abc.abstractmethod
    def get_avail_actions(self, state): ...

    def observation_space(self, agent: str) -> LocalSpace:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> LocalSpace:
        return self.action_spaces[agent]

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    @abc.abstractmethod
    def agent_classes(self) -> dict: ...


# ---------------------------------------------------------------------------- backend selection
def _import_jaxmarl():
    """(MultiAgentEnv, spaces module) of the real jaxmarl, or raise ImportError saying why not."""
    if os.environ.get("MEQC_USE_JAXMARL", "1") == "0":
        raise ImportError("disabled by MEQC_USE_JAXMARL=0")
    # Importing jaxmarl 0.2.0 prints two lines about its optional submoduled environments, and its
    # MABrax module (imported even without brax) sets sys.stdout/sys.stderr back to sys.__stdout__/
    # sys.__stderr__, which would silently undo pytest's or a notebook's output capture. Point the
    # __std*__ streams at where the import should write (stdout: nowhere) and restore all four after.
    saved = sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__
    try:
        sys.stdout = sys.__stdout__ = io.StringIO()
        sys.__stderr__ = sys.stderr
        from jaxmarl.environments import spaces as jaxmarl_spaces
        from jaxmarl.environments.multi_agent_env import MultiAgentEnv as JaxMARLMultiAgentEnv
    finally:
        sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__ = saved
    return JaxMARLMultiAgentEnv, jaxmarl_spaces


try:
    _JaxMARLBase, _jaxmarl_spaces = _import_jaxmarl()
except Exception as err:  # noqa: BLE001 -- any failure (missing, or broken by a jax change) means "use the stand-in"
    JAXMARL_AVAILABLE = False
    JAXMARL_IMPORT_ERROR: str | None = f"{type(err).__name__}: {err}"
    MultiAgentEnv: type = LocalMultiAgentEnv
    Space, Discrete, Box, Tuple, Dict = LocalSpace, LocalDiscrete, LocalBox, LocalTuple, LocalDict
else:
    JAXMARL_AVAILABLE = True
    JAXMARL_IMPORT_ERROR = None
    MultiAgentEnv = _JaxMARLBase
    Space, Discrete, Box = _jaxmarl_spaces.Space, _jaxmarl_spaces.Discrete, _jaxmarl_spaces.Box
    Tuple, Dict = _jaxmarl_spaces.Tuple, _jaxmarl_spaces.Dict


# ---------------------------------------------------------------------------- the wrapper
class MEQCMultiAgentEnv(MultiAgentEnv):
    """`MEQCEnv` with JaxMARL's per-agent dict interface; agents `"agent_0" .. "agent_{U-1}"` are the U devices.

    Action of one agent: the pair `(server, phi)`, server an int in [0, E) and phi a float in [0, 1]
    (the fraction of the task kept local). `action_space(agent)` is `Tuple([Discrete(E), Box(0, 1, ())])`,
    the hybrid discrete-continuous product JaxMARL's spaces can express, in the native env's order, so a
    sample from it is a valid action as is. A dict `{"server": ..., "phi": ...}` is accepted too.
    Out-of-range actions are clipped and counted exactly as in the native env (`infos["clipped_*"]`).

    Observation of one agent: its row of the native observation, `[obs_dim]` float32 in
    `[0, QCAP_OBS_CLIP]` (every field is scaled by its upper bound; capacity is clipped).

    Reward: every agent gets the shared `-C` (Eq. 12). `dones[agent] == dones["__all__"]`: all episodes
    end together, after `slots_per_episode` slots, and the env then resets itself.

    `infos` is a flat dict whose every leaf has the leading axis `num_agents` (JaxMARL's `LogWrapper`
    and its IPPO/MAPPO baselines reshape info leaves to `num_envs * num_agents`); shared scalars are
    repeated per agent: `total_cost`, `clipped_server`, `clipped_phi`, `slot`, and per agent
    `cost`, `latency`, `energy`, `quantum`, `requested`, `server`, `phi` (the used, clipped action).
    The [U, E] feasibility matrix is left out for that reason: `self.env.price(key, state, joint)`
    returns the whole `CostBreakdown` of the slot `step(key, state, ...)` prices.
    """

    def __init__(self, config: SystemConfig | None = None):
        self.env = MEQCEnv(config)
        self.config = self.env.config
        super().__init__(num_agents=self.env.num_agents)  # sets num_agents and agents = ["agent_0", ...]
        self.num_servers = self.env.num_servers
        self.obs_dim = self.env.obs_dim
        self.observation_spaces = {
            a: Box(0.0, QCAP_OBS_CLIP, (self.obs_dim,), jnp.float32) for a in self.agents
        }
        self.action_spaces = {
            a: Tuple([Discrete(self.num_servers), Box(0.0, 1.0, (), jnp.float32)]) for a in self.agents
        }

    def __repr__(self):
        backend = "jaxmarl" if JAXMARL_AVAILABLE else "local"
        return f"MEQCMultiAgentEnv({self.env!r}, backend={backend})"

    # ------------------------------------------------------------------ dict <-> stacked arrays
    def agent_dict(self, stacked) -> dict[str, jnp.ndarray]:
        """Split an array with leading axis num_agents into `{agent: row}` (trace-time dict building)."""
        return {a: stacked[i] for i, a in enumerate(self.agents)}

    def joint_action(self, actions: Mapping[str, Any]) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Per-agent actions -> the native joint action `(server [U], phi [U])`.

        Each `actions[agent]` is a `(server, phi)` tuple/list or a `{"server", "phi"}` mapping.
        """
        def parts(action):
            if isinstance(action, Mapping):
                return action["server"], action["phi"]
            return action[0], action[1]

        server, phi = zip(*(parts(actions[a]) for a in self.agents))
        return jnp.stack([jnp.asarray(s) for s in server]), jnp.stack([jnp.asarray(p) for p in phi])

    def agent_actions(self, server, phi) -> dict[str, tuple[jnp.ndarray, jnp.ndarray]]:
        """The native joint action `(server [U], phi [U])` -> `{agent: (server, phi)}`."""
        return {a: (server[i], phi[i]) for i, a in enumerate(self.agents)}

    # ------------------------------------------------------------------ JaxMARL interface
    @partial(jax.jit, static_argnums=(0,))
    def reset(self, key, params: EnvParams | None = None) -> tuple[dict[str, jnp.ndarray], EnvState]:
        """A new episode: `({agent: obs [obs_dim]}, state)`, exactly `MEQCEnv.reset(key, params)`.
        `params` (optional, an extension of JaxMARL's `reset(key)`) are the native sweep parameters."""
        obs, state = self.env.reset(key, params)
        return self.agent_dict(obs), state

    @partial(jax.jit, static_argnums=(0,))
    def step(self, key, state: EnvState, actions: Mapping[str, Any], reset_state: EnvState | None = None):
        """One slot: `(obs, state, rewards, dones, infos)`, dicts keyed by agent (`dones` also `"__all__"`).

        JaxMARL's base `step` splits `key` into a transition key and a reset key and selects between
        `step_env` and `reset` itself. The native env already resets inside `step` (a new scenario is
        drawn from its own split of `key`), so this overrides `step` and passes `key` through unsplit:
        the result equals `MEQCEnv.step(key, state, joint_action(actions))` exactly, which keeps the
        wrapper and the native env on common random numbers. `reset_state` (JaxMARL's option) replaces
        the automatically drawn episode when the slot ends one.
        """
        obs, next_state, reward, done, info = self.env.step(key, state, self.joint_action(actions))
        if reset_state is not None:
            next_state = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset_state, next_state)
            obs = jnp.where(done, self.env.observe(reset_state), obs)
        dones = {a: done for a in self.agents}
        dones["__all__"] = done
        return self.agent_dict(obs), next_state, self.agent_dict(reward), dones, self._infos(info)

    def step_env(self, key, state: EnvState, actions: Mapping[str, Any]):
        """JaxMARL's reset-free transition. The native env has no terminal state to stop at (the slot
        after an episode's last is the next episode's first), so this is `step` without `reset_state`."""
        return self.step(key, state, actions)

    def get_obs(self, state: EnvState) -> dict[str, jnp.ndarray]:
        """`{agent: obs [obs_dim]}` of a state."""
        return self.agent_dict(self.env.observe(state))

    def get_avail_actions(self, state: EnvState) -> dict[str, jnp.ndarray]:
        """Mask of the discrete part (server) per agent, bool [E]: every server can always be chosen
        (an infeasible QPU just means the offloaded part runs on that server's CPUs)."""
        return {a: jnp.ones((self.num_servers,), dtype=bool) for a in self.agents}

    @property
    def agent_classes(self) -> dict[str, list[str]]:
        """One class: all agents are interchangeable devices."""
        return {"device": list(self.agents)}

    # ------------------------------------------------------------------ helpers
    def _infos(self, info) -> dict[str, jnp.ndarray]:
        cost = info["cost"]
        per_agent = (self.num_agents,)
        return {
            "total_cost": jnp.broadcast_to(cost.total, per_agent),
            "clipped_server": jnp.broadcast_to(cost.clipped_server, per_agent),
            "clipped_phi": jnp.broadcast_to(cost.clipped_phi, per_agent),
            "slot": jnp.broadcast_to(info["slot"], per_agent),
            "cost": cost.per_user,
            "latency": cost.latency,
            "energy": cost.energy,
            "quantum": cost.quantum,
            "requested": cost.requested,
            "server": cost.server,
            "phi": cost.phi,
        }


__all__ = [
    "JAXMARL_AVAILABLE",
    "JAXMARL_IMPORT_ERROR",
    "Box",
    "Dict",
    "Discrete",
    "LocalBox",
    "LocalDict",
    "LocalDiscrete",
    "LocalMultiAgentEnv",
    "LocalSpace",
    "LocalTuple",
    "MEQCMultiAgentEnv",
    "MultiAgentEnv",
    "Space",
    "Tuple",
]
