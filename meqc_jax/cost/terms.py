"""The paper's per-user terms: Eqs. 1-11 (spec sections 4-7), and the action contract.

Latency and energy of the local part, the uplink, the edge CPU and the QPU for any broadcastable
shapes; the weighted per-user cost of Eq. 12's summands; QPU feasibility (Eqs. 10-11). Every other
module of `meqc_jax.cost` builds on these.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from meqc_jax import physics
from meqc_jax.units import SIParams


def sanitize_action(server, phi, num_servers: int):
    """Clip an action into range (documented contract); returns (server, phi, n_bad_server, n_bad_phi)."""
    server = jnp.asarray(server)
    if jnp.issubdtype(server.dtype, jnp.floating):
        server = jnp.where(jnp.isnan(server), 0.0, server)
        server = jnp.clip(jnp.round(server), 0, num_servers - 1).astype(jnp.int32)
    server = server.astype(jnp.int32)
    bad_server = (server < 0) | (server >= num_servers)
    phi = jnp.asarray(phi, dtype=float)
    bad_phi = jnp.isnan(phi) | (phi < 0.0) | (phi > 1.0)
    phi = jnp.clip(jnp.where(jnp.isnan(phi), 1.0, phi), 0.0, 1.0)
    return (
        jnp.clip(server, 0, num_servers - 1),
        phi,
        jnp.sum(bad_server.astype(jnp.int32)),
        jnp.sum(bad_phi.astype(jnp.int32)),
    )


def classical_terms(si: SIParams, s, n, phi, f_local, p_tx, gain, f_edge, bandwidth=None, noise=None):
    """Eqs. 1-6 (spec 5), broadcasting: returns (d_L, e_L, d_O, e_O, d_E, e_E) in s and J.
    `bandwidth` (Hz) and `noise` (W) replace the configuration's where users share an uplink
    (dynamics-spec section 8, `uplink_share`); None is the paper's link."""
    cycles = s * n
    off = 1.0 - phi
    d_local = phi * cycles / f_local  # Eq. 1
    e_local = si.chip_coeff * phi * cycles  # Eq. 1
    rate = uplink_rate(si, p_tx, gain, bandwidth, noise)
    d_tx = off * 8.0 * s / rate  # Eq. 2 (s in bytes, rate in bits/s)
    e_tx = p_tx * d_tx  # Eq. 3
    d_edge = off * cycles / f_edge  # Eq. 4
    e_edge = si.chip_coeff * off * cycles  # Eq. 5
    return d_local, e_local, d_tx, e_tx, d_edge, e_edge


def uplink_rate(si: SIParams, p_tx, gain, bandwidth=None, noise=None):
    """Eq. 2's Shannon rate in bits/s, B log2(1 + p_tx g / noise), broadcasting; `bandwidth` and `noise`
    default to the configuration's (dynamics-spec section 8 shares them: `uplink_share`). log1p keeps a
    weak link's rate exact (and > 0) in float32."""
    bandwidth = si.bandwidth if bandwidth is None else bandwidth
    noise = si.noise_power if noise is None else noise
    return bandwidth * jnp.log1p(p_tx * gain / noise) / math.log(2.0)


def quantum_terms(si: SIParams, energy_model: str, s, q, phi, latency_per_unit, power_per_unit):
    """Eqs. 7-8 (spec 7): QPU latency and energy of the offloaded part, w = s / unit work units.

    `paper`: e_Q = (1-phi) w q (P_1 N_1 + P_2 N_2 + P_M N_M + P_Q 91^k), Eq. 8 read as joules.
    `power_time`: e_Q = d_Q x (same power), i.e. power times execution time.
    """
    work = (1.0 - phi) * (s / si.quantum_unit) * jnp.asarray(q, dtype=float)
    d_q = work * latency_per_unit  # Eq. 7
    if energy_model == "paper":
        e_q = work * power_per_unit  # Eq. 8 as printed
    else:
        e_q = d_q * power_per_unit
    return d_q, e_q


def weighted_cost(latency_model: str, lam_d, lam_e, d_local, e_local, d_off, e_off):
    """Per-user cost, latency and energy (Eqs. 1, 6, 9 combined as in Eq. 12; spec 9).

    `sum`: lam_d (d_local + d_off) + lam_e (e_local + e_off) = c_L + c_E (or c_L + c_Q).
    `parallel`: the local and offloaded parts run at once, latency max(d_local, d_off).
    """
    latency = d_local + d_off if latency_model == "sum" else jnp.maximum(d_local, d_off)
    energy = e_local + e_off
    return lam_d * latency + lam_e * energy, latency, energy


def feasibility(si: SIParams, q, depth, profile: physics.QPUProfile):
    """Eqs. 10-11 for every user-server pair: (success probability [U, E], feasible [U, E])."""
    q = jnp.asarray(q, dtype=float)[:, None]
    depth = jnp.asarray(depth, dtype=float)[:, None]
    success = physics.success_probability(q, depth, profile.eps_err[None, :], profile.k[None, :], si)
    return success, physics.feasible(q, profile.qcap[None, :], success, si)
