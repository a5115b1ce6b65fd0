"""Per-agent hybrid actor-critic networks (paper Section IV-B, Fig. 3).

Each device's agent holds two actor-critics with their own torsos:
  * discrete: a categorical policy over the E servers (Eq. 19) and its value V^D;
  * continuous: a Gaussian policy over the local fraction (Eq. 20) and its value V^C.
The torso is swappable: `torso="mlp"` (two 256-unit layers) or `torso="vqc"` (the paper's quantum
torso, `agents.vqc.VQCTorso`: 64 units -> 4-qubit circuit -> 64 units), same interface.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from flax import struct


def _scaled(gain: float):
    """Gaussian init with the variance of an orthogonal init of this gain (PPO's usual choice).

    Not `nn.initializers.orthogonal`: its QR factorization, batched over agents or seeds inside
    jit, runs LAPACK through a parallel batch map on XLA's CPU thread pool, which deadlocked this
    project's training program intermittently (gdb: threads parked in QrFactorizationKernel ->
    ParallelBatchMap -> BlockingCounter::Wait).
    """
    return nn.initializers.variance_scaling(gain**2, "fan_in", "normal")


class MLPTorso(nn.Module):
    """The paper's torso: fully connected layers of 256 units (two by default), tanh activations."""

    hidden: Sequence[int] = (256, 256)

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = nn.tanh(nn.Dense(width, kernel_init=_scaled(np.sqrt(2.0)))(x))
        return x


@struct.dataclass
class HybridOutput:
    """Network outputs for one or more agents (leading axes broadcast)."""

    logits: jnp.ndarray  # [..., E] categorical over servers (Eq. 19)
    mean: jnp.ndarray  # [...] Gaussian mean of the pre-clip local fraction (Eq. 20)
    log_std: jnp.ndarray  # [...] Gaussian log standard deviation (state-independent parameter)
    value_d: jnp.ndarray  # [...] V^D, the discrete critic
    value_c: jnp.ndarray  # [...] V^C, the continuous critic


TORSOS = ("mlp", "vqc")


def make_torso(kind: str, hidden: Sequence[int], vqc_backend: str = "jax", vqc_width: int = 64) -> nn.Module:
    """The shared-interface torso by name: `mlp` (widths `hidden`) or `vqc` (paper Section IV-C)."""
    if kind == "mlp":
        return MLPTorso(hidden=tuple(hidden))
    if kind == "vqc":
        from meqc_jax.agents.vqc import VQCTorso

        return VQCTorso(width=vqc_width, backend=vqc_backend)
    raise ValueError(f"unknown torso {kind!r}: allowed one of " + ", ".join(TORSOS))


class CentralCritic(nn.Module):
    """A centralized critic (CTDE, as in MAPPO): from all U agents' observations to every agent's
    V^D and V^C. Used for training only; each agent still acts on its own observation.

    With the shared reward r_u = -C (paper Section IV-A3; C of Eq. 12) an agent's return depends on every agent's state,
    which its own observation cannot see; the other agents' task sizes and channels then appear
    as noise in its advantage. A critic that sees the global state removes that part of the noise.
    """

    num_agents: int
    hidden: Sequence[int] = (256, 256)

    @nn.compact
    def __call__(self, obs):
        """obs [..., U, D] -> values [..., U, 2] (V^D, V^C per agent)."""
        x = obs.reshape(obs.shape[:-2] + (-1,))
        for width in self.hidden:
            x = nn.tanh(nn.Dense(width, kernel_init=_scaled(np.sqrt(2.0)))(x))
        v = nn.Dense(2 * self.num_agents, kernel_init=_scaled(1.0), name="values")(x)
        return v.reshape(v.shape[:-1] + (self.num_agents, 2))


class HybridActorCritic(nn.Module):
    """One agent's discrete and continuous actor-critics (Fig. 3). Apply per agent (vmap over agents)."""

    num_servers: int
    torso: str = "mlp"
    hidden: Sequence[int] = (256, 256)
    init_log_std: float = -0.5
    init_mean: float = 0.5
    vqc_backend: str = "jax"

    @nn.compact
    def __call__(self, obs) -> HybridOutput:
        small = _scaled(0.01)  # near-uniform initial policies
        unit = _scaled(1.0)
        z_d = make_torso(self.torso, self.hidden, self.vqc_backend)(obs)
        logits = nn.Dense(self.num_servers, kernel_init=small, name="logits")(z_d)
        value_d = nn.Dense(1, kernel_init=unit, name="value_d")(z_d)[..., 0]
        z_c = make_torso(self.torso, self.hidden, self.vqc_backend)(obs)
        mean = nn.Dense(1, kernel_init=small, bias_init=nn.initializers.constant(self.init_mean), name="mean")(z_c)[..., 0]
        value_c = nn.Dense(1, kernel_init=unit, name="value_c")(z_c)[..., 0]
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), ())
        return HybridOutput(logits=logits, mean=mean, log_std=jnp.broadcast_to(log_std, mean.shape),
                            value_d=value_d, value_c=value_c)


class JointModeLogits(nn.Module):
    """A centralized actor over joint modes (`learners.droo`): every device's observation, flattened,
    through ReLU layers to each device's logits over its 1 + 2E modes (`cost.num_modes`): [U, D] -> [U, k]."""

    num_users: int
    num_modes: int
    hidden: Sequence[int] = (256, 256)

    @nn.compact
    def __call__(self, obs):
        x = obs.reshape(obs.shape[:-2] + (-1,))
        for width in self.hidden:
            x = nn.relu(nn.Dense(width, kernel_init=_scaled(np.sqrt(2.0)))(x))
        logits = nn.Dense(self.num_users * self.num_modes, kernel_init=_scaled(0.01))(x)
        return logits.reshape(obs.shape[:-2] + (self.num_users, self.num_modes))
