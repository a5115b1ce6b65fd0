"""Quantum hardware physics of a fault-tolerant edge QPU (paper Appendices A-C, spec section 6).

Two kinds of function live here:

* configuration constants (stage temperatures, attenuations, the thermal bracket of Eq. 37, the
  Carnot sum of P_2, P_Q of Eq. 38) depend only on `SIParams`; they are computed on the host in
  float64 NumPy, once, and enter traced code as exact constants;
* per-server, per-slot quantities (eps_err, P_pi..P_M as functions of the slot's qubit lifetime
  t1 = 1/gamma, logical capacity, success probability, feasibility) are plain arithmetic on their
  array arguments, so they broadcast over servers, users and instances under `jit`/`vmap`.

Structure the code exploits: per server and slot the physics reduces to

    eps_err = tau_step / (2 t1) * bracket        and        P_pi, P_1, P_2, P_M  proportional to t1.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from flax import struct

from meqc_jax.units import HBAR, K_B, SIParams

# Appendix C: one concatenation level replaces a qubit by 7 data + 3 x 28 ancilla qubits (Eq. 39).
QUBITS_PER_LEVEL = 91
# Eq. 41, rows/columns ordered (2qb, 1qb, idle, measurement).
CONCATENATION_MATRIX = np.array(
    [[135, 64, 64, 0], [56, 35, 28, 0], [58, 29, 36, 0], [56, 28, 28, 7]], dtype=np.float64
) / 3.0
# Eq. 42: leading behaviour of A^k, i.e. 64^k times these fractions (per logical qubit per step).
GATE_FRACTIONS = {"two": 64.0 / 185.0, "one": 28.0 / 185.0, "idle": 29.0 / 185.0, "meas": 28.0 / 185.0}


# ---------------------------------------------------------------------------- Appendix A (noise)
def stage_temperatures(t_qb, t_gen, num_stages: int):
    """Eq. 36: T_i = T_qb (T_gen/T_qb)^((i-1)/(K-1)), i = 1..K (stages evenly spaced in log T)."""
    i = np.arange(1, num_stages + 1)
    return t_qb * (t_gen / t_qb) ** ((i - 1) / (num_stages - 1))


def cumulative_attenuation(attenuation, num_stages: int):
    """Ã_0..Ã_K with Ã_0 = 0, Ã_i = A^(i/(K-1)) for 1 <= i <= K-1 and Ã_K = Ã_(K-1) (spec 6).

    Ã_i is the attenuation between stage i and the qubits: each of the K-1 attenuators contributes
    A^(1/(K-1)) (Eq. 36). The hottest stage K has no attenuator above the last one, hence Ã_K = Ã_(K-1).
    """
    i = np.arange(1, num_stages)
    inner = attenuation ** (i / (num_stages - 1))
    return np.concatenate([[0.0], inner, inner[-1:]])


def bose_einstein(temperature, omega):
    """n(T) = 1 / (exp(hbar omega / (k_B T)) - 1), thermal photons at the qubit frequency (Eq. 37)."""
    x = HBAR * omega / (K_B * np.asarray(temperature, dtype=np.float64))
    return 1.0 / np.expm1(x)


def thermal_bracket(si: SIParams):
    """The bracket of Eq. 37: 1/2 + n(T_1) + sum_{i=1}^{K-1} (n(T_{i+1}) - n(T_i)) / Ã_i."""
    temps = stage_temperatures(si.t_qb, si.t_gen, si.num_stages)
    occ = bose_einstein(temps, si.omega)
    att = cumulative_attenuation(si.attenuation, si.num_stages)
    return float(0.5 + occ[0] + np.sum((occ[1:] - occ[:-1]) / att[1 : si.num_stages]))


def physical_error_rate(t1, si: SIParams):
    """Eq. 37: error per physical gate, eps_err = (gamma tau_step / 2) * bracket, gamma = 1/t1."""
    return (si.tau_step / (2.0 * t1)) * thermal_bracket(si)


# ---------------------------------------------------------------------------- Appendix B (energy)
def pi_pulse_power(t1, si: SIParams):
    """P_pi = hbar omega pi^2 / (4 gamma tau_1^2), gamma = 1/t1 (Appendix B)."""
    return HBAR * si.omega * math.pi**2 * t1 / (4.0 * si.tau_1**2)


def carnot_sum(si: SIParams):
    """sum_{i=1}^K ((T_ext - T_i)/T_i) (Ã_i - Ã_{i-1}): Carnot cost of the heat each attenuator dumps.

    Deviation (spec 6): the printed paper uses T_gen in the numerator; T_ext is the temperature the
    heat is rejected to. They are equal (300 K) at the defaults.
    """
    temps = stage_temperatures(si.t_qb, si.t_gen, si.num_stages)
    att = cumulative_attenuation(si.attenuation, si.num_stages)
    return float(np.sum((si.t_ext - temps) / temps * (att[1:] - att[:-1])))


def two_qubit_gate_power(t1, si: SIParams):
    """P_2 = P_pi * carnot_sum (Appendix B)."""
    return pi_pulse_power(t1, si) * carnot_sum(si)


def one_qubit_gate_power(t1, si: SIParams):
    """P_1 = (tau_1 / tau_step) P_2 (Appendix B)."""
    return (si.tau_1 / si.tau_step) * two_qubit_gate_power(t1, si)


def measurement_power(t1, si: SIParams):
    """P_M = (tau_M / tau_step) P_2 (spec 6; the paper names P_M but never defines it)."""
    return (si.tau_m / si.tau_step) * two_qubit_gate_power(t1, si)


def qubit_static_power(si: SIParams) -> float:
    """Eq. 38: P_Q = (T_ext/T_gen) q_gen + (T_ext/T_hemt) q_hemt + (T_ext/T_para) q_para, per physical qubit."""
    return si.t_ext / si.t_gen * si.q_gen + si.t_ext / si.t_hemt * si.q_hemt + si.t_ext / si.t_para * si.q_para


# ---------------------------------------------------------------------------- Appendix C (code)
def physical_qubits_per_logical(k):
    """Eq. 39: 91^k physical qubits per logical qubit (integer; k a Python int or an int array)."""
    return QUBITS_PER_LEVEL**k


def gates_per_logical_qubit(k):
    """Eq. 42: (N_1, N_2, N_M) physical 1qb, 2qb and measurement gates per logical qubit per step."""
    scale = 64.0**k
    return GATE_FRACTIONS["one"] * scale, GATE_FRACTIONS["two"] * scale, GATE_FRACTIONS["meas"] * scale


def concatenated_gate_counts(k, logical_counts):
    """Eqs. 40-41 exactly: A^k @ (N_2qb, N_1qb, N_id, N_meas)_L, for integer k in [0, 4] (any shape).

    Its leading behaviour for large k is Eq. 42 (A's Perron eigenvalue is 64 with eigenvector
    (64, 28, 29, 28)); `gates_per_logical_qubit` is what the cost model uses, as the paper does.
    """
    powers = np.stack([np.linalg.matrix_power(CONCATENATION_MATRIX, j) for j in range(5)])
    mats = jnp.asarray(powers)[jnp.asarray(k).astype(int)]
    return jnp.einsum("...ij,...j->...i", mats, jnp.asarray(logical_counts, dtype=mats.dtype))


def logical_capacity(phys_qubits, k):
    """qcap = floor(phys_qubits / 91^k) in integer arithmetic (spec 6; a float 91^k can round down)."""
    k = jnp.asarray(k).astype(jnp.int32)
    return jnp.asarray(phys_qubits).astype(jnp.int32) // physical_qubits_per_logical(k)


def success_probability(q, depth, eps_err, k, si: SIParams):
    """Eq. 10: M = 1 - q depth eps_thr (eps_err/eps_thr)^(2^k); broadcasts users against servers.

    The power is capped at 1e20 (q depth <= 5e10) so that a hopeless QPU gives a large negative M,
    never -inf or NaN, in float32.
    """
    ratio_pow = jnp.minimum(jnp.power(eps_err / si.eps_thr, 2.0 ** jnp.asarray(k)), 1e20)
    return 1.0 - q * depth * si.eps_thr * ratio_pow


def feasible(q, qcap, success, si: SIParams):
    """Eq. 11: the task fits the logical capacity and succeeds with probability >= 2/3."""
    return (q <= qcap) & (success >= si.success_threshold)


# ---------------------------------------------------------------------------- per-server summary
@struct.dataclass
class QPUProfile:
    """What the cost model needs of each server's QPU in one slot (all shape [..., E])."""

    k: jnp.ndarray  # concatenation level, int
    eps_err: jnp.ndarray  # Eq. 37, physical error per gate
    qcap: jnp.ndarray  # logical capacity, int
    latency_per_unit: jnp.ndarray  # tau_1 N_1 + tau_2 N_2 + tau_M N_M, seconds per (logical qubit x work unit), Eq. 7
    power_per_unit: jnp.ndarray  # P_1 N_1 + P_2 N_2 + P_M N_M + P_Q 91^k, per logical qubit, Eq. 8


def qpu_profile(si: SIParams, phys_qubits, k, t1_slot) -> QPUProfile:
    """Per-server QPU quantities for one slot (Eqs. 7, 8, 10, 11, 37-42), vectorized over servers."""
    k = jnp.asarray(k).astype(int)
    n1, n2, nm = gates_per_logical_qubit(k)
    power = (
        one_qubit_gate_power(t1_slot, si) * n1
        + two_qubit_gate_power(t1_slot, si) * n2
        + measurement_power(t1_slot, si) * nm
        + qubit_static_power(si) * physical_qubits_per_logical(k)
    )
    return QPUProfile(
        k=k,
        eps_err=physical_error_rate(t1_slot, si),
        qcap=logical_capacity(phys_qubits, k),
        latency_per_unit=si.tau_1 * n1 + si.tau_2 * n2 + si.tau_m * nm,
        power_per_unit=power,
    )
