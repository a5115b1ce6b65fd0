"""Scenario and task generation (spec sections 2-3) and the ray-tracing task compiler (paper III-E).

`Scenario` holds what is drawn once per episode (devices, servers, weights); `Tasks` what is drawn
every slot (one ray-tracing task per user, block-fading channel gains, qubit-lifetime jitter).
Both are pytrees of arrays in SI units, so they pass through `jit`, `vmap` and `lax.scan`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from meqc_jax import prng
from meqc_jax.config import SystemConfig
from meqc_jax.units import MAX_LOGICAL_QUBITS


@struct.dataclass
class Scenario:
    """Per-episode draw (spec section 2). Shapes: [U] for users, [E] for servers; SI units."""

    f_local: jnp.ndarray  # [U] device CPU speed, cycles/s
    p_tx: jnp.ndarray  # [U] transmit power, W
    f_edge: jnp.ndarray  # [E] server CPU speed per offloaded task, cycles/s
    phys_qubits: jnp.ndarray  # [E] int, physical qubits of the QPU
    k: jnp.ndarray  # [E] int, concatenation level of the 7-qubit code
    t1: jnp.ndarray  # [E] nominal qubit lifetime 1/gamma, s
    lam_d: jnp.ndarray  # [U] latency weight
    lam_e: jnp.ndarray  # [U] energy weight


@struct.dataclass
class Tasks:
    """Per-slot draw (spec section 3). Shapes: [U], `g` [U, E], `t1_slot` [E]; SI units."""

    s: jnp.ndarray  # [U] data size, bytes
    n: jnp.ndarray  # [U] CPU cycles per byte
    q: jnp.ndarray  # [U] int, logical qubits of the compiled circuit
    depth: jnp.ndarray  # [U] int, circuit depth
    g: jnp.ndarray  # [U, E] linear channel gain
    t1_slot: jnp.ndarray  # [E] this slot's qubit lifetime, s


# floor(pi/4 * sqrt(2**q)) for q = 0..MAX_LOGICAL_QUBITS, in exact float64 on the host: float32
# cannot hold these depths exactly for large q, and a table makes the compiler exact at any dtype.
_GROVER_ITERATIONS = np.array(
    [math.floor(math.pi / 4.0 * math.sqrt(2.0**q)) for q in range(MAX_LOGICAL_QUBITS + 1)], dtype=np.int64
)


def compile_ray_tracing(prims, c_b: int):
    """Quantum ray tracing (paper III-E, spec 3): primitives -> (logical qubits, circuit depth).

    q = prims + 2 c_b + 5 and depth = 3 prims + floor(pi/4 sqrt(2^q)) (the Grover search over the
    primitive register). Deviation: the paper prints 6560 as the largest depth; its formula gives 6460.
    """
    prims = jnp.asarray(prims).astype(jnp.int32)
    q = prims + (2 * c_b + 5)
    depth = 3 * prims + jnp.asarray(_GROVER_ITERATIONS, dtype=jnp.int32)[q]
    return q, depth


# Integer draws over at most this many values use one 32-bit word each (bits mod n, relative bias
# <= n / 2**32 < 3e-4); wider ranges use jax.random.randint (exact, two words).
_MOD_RANGE_LIMIT = 2**20


def _randint(key, shape, lo: int, hi: int):
    """Uniform integers in [lo, hi] inclusive (int32). Random draws dominate a step's cost, so
    narrow ranges (all of the spec's) take one word per value instead of randint's two."""
    n = hi - lo + 1
    if n <= _MOD_RANGE_LIMIT:
        bits = prng.bits(key, shape)
        return lo + (bits % jnp.uint32(n)).astype(jnp.int32)
    return jax.random.randint(key, shape, lo, hi + 1, dtype=jnp.int32)


def _choice(key, options, shape):
    """Uniform choice from a static tuple of values (one integer draw + a table lookup)."""
    return jnp.asarray(options)[_randint(key, shape, 0, len(options) - 1)]


def sample_scenario(key, config: SystemConfig) -> Scenario:
    """Draw one episode's devices, servers and weights (spec section 2)."""
    si = config.si
    U, E = config.num_users, config.num_servers
    kf, kp, ke, kq, kk = prng.split(key, 5)
    ld, le = config.weights
    return Scenario(
        f_local=_choice(kf, si.f_local_choices, (U,)).astype(float),
        p_tx=prng.uniform(kp, (U,), si.p_tx_range[0], si.p_tx_range[1]),
        f_edge=_choice(ke, si.f_edge_choices, (E,)).astype(float),
        phys_qubits=_randint(kq, (E,), *si.phys_qubits_range),
        k=_choice(kk, si.k_choices, (E,)).astype(jnp.int32),
        t1=jnp.full((E,), si.t1, dtype=float),
        lam_d=jnp.full((U,), ld, dtype=float),
        lam_e=jnp.full((U,), le, dtype=float),
    )


def sample_tasks(key, config: SystemConfig, scenario: Scenario) -> Tasks:
    """Draw one slot's tasks, channel gains and QPU lifetimes (spec section 3)."""
    si = config.si
    U, E = config.num_users, config.num_servers
    kf, kj, kp, kg, kt = prng.split(key, 5)
    frames = _randint(kf, (U,), *si.frames_range)
    j = _randint(kj, (U,), *si.cycles_exponent_range)
    prims = _randint(kp, (U,), *si.prims_range)
    q, depth = compile_ray_tracing(prims, si.c_b)
    if si.t1_jitter_sigma > 0.0:
        # "dynamically changing quantum noise": log-normal jitter of each QPU's lifetime per slot.
        t1_slot = scenario.t1 * jnp.exp(si.t1_jitter_sigma * prng.normal(kt, (E,)))
    else:
        t1_slot = scenario.t1
    return Tasks(
        s=frames.astype(float) * float(si.bytes_per_frame),
        n=si.cycles_base * jnp.exp2(j.astype(float)),
        q=q,
        depth=depth,
        # drawn flat then reshaped: XLA's vmapped threefry is ~4x faster on a 1-D shape on CPU
        g=prng.uniform(kg, (U * E,), si.gain_range[0], si.gain_range[1]).reshape(U, E),
        t1_slot=t1_slot,
    )
