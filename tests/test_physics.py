"""Quantum hardware physics (spec section 6): spot values by hand, structure, Eq. 40-42."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meqc_jax import SystemConfig, physics

SI = SystemConfig().si


def test_stage_temperatures_and_attenuation():
    T = physics.stage_temperatures(0.1, 300.0, 5)
    # evenly spaced in log T between T_qb and T_gen: ratio 3000^(1/4) = 7.4008
    np.testing.assert_allclose(T, 0.1 * 3000.0 ** (np.arange(5) / 4), rtol=1e-12)
    At = physics.cumulative_attenuation(1e4, 5)
    np.testing.assert_allclose(At, [0.0, 10.0, 100.0, 1000.0, 1e4, 1e4])  # Ã_K = Ã_{K-1}


def test_bose_einstein_spot_value():
    # hbar*omega/(k_B T) = 2.8796 at 6 GHz, 0.1 K -> n = 1/(e^2.8796 - 1) = 0.0595
    assert physics.bose_einstein(0.1, SI.omega) == pytest.approx(0.0595, abs=5e-5)


def test_physical_error_rate_spot_value():
    # gamma tau_step / 2 = 1e3 * 1e-7 / 2 = 5e-5; bracket ~ 1.14 -> 5.70e-5 (spec 6, issue)
    eps = physics.physical_error_rate(1e-3, SI)
    assert eps == pytest.approx(5.70e-5, rel=2e-3)
    # proportional to gamma = 1/t1
    assert physics.physical_error_rate(2e-3, SI) == pytest.approx(eps / 2)


def test_qubit_static_power_spot_value():
    # 10 uW + 300/70 * 50 uW + 300/4 * 10 nW = 10 + 214.2857 + 0.75 uW
    assert physics.qubit_static_power(SI) == pytest.approx(225.0357e-6, rel=1e-6)


def test_gate_powers_by_hand():
    # P_pi = hbar omega pi^2 t1 / (4 tau_1^2) at t1 = 1 ms
    hw = 1.054571817e-34 * 2 * math.pi * 6e9
    p_pi = hw * math.pi**2 * 1e-3 / (4 * (25e-9) ** 2)
    assert physics.pi_pulse_power(1e-3, SI) == pytest.approx(p_pi, rel=1e-9)
    T = 0.1 * 3000.0 ** (np.arange(5) / 4)
    dA = np.array([10.0, 90.0, 900.0, 9000.0, 0.0])
    carnot = np.sum((300.0 - T) / T * dA)
    assert physics.carnot_sum(SI) == pytest.approx(carnot, rel=1e-12)
    p2 = physics.two_qubit_gate_power(1e-3, SI)
    assert p2 == pytest.approx(p_pi * carnot, rel=1e-9)
    assert physics.one_qubit_gate_power(1e-3, SI) == pytest.approx(p2 / 4)  # tau_1 / tau_step = 1/4
    assert physics.measurement_power(1e-3, SI) == pytest.approx(p2)  # tau_M = tau_step


def test_carnot_factor_uses_t_ext():
    hot = SystemConfig(t_ext_k=350.0).si
    assert physics.carnot_sum(hot) > physics.carnot_sum(SI)


def test_code_resources_eq39_eq42():
    assert [int(physics.physical_qubits_per_logical(k)) for k in range(4)] == [1, 91, 8281, 753571]
    n1, n2, nm = physics.gates_per_logical_qubit(2)
    assert (n1, n2, nm) == pytest.approx((28 / 185 * 4096, 64 / 185 * 4096, 28 / 185 * 4096))


def test_exact_matrix_form_approaches_eq42():
    # A's Perron eigenvalue is 64; the leading behaviour of A^k v is 64^k (l.v)(2/185)(64, 28, 29, 28)
    # with left eigenvector l = (1, 1/2, 1/2, 0). One logical 1qb gate per qubit per step has l.v = 1/2,
    # which is exactly Eq. 42's normalization.
    v = jnp.array([0.0, 1.0, 0.0, 0.0])
    eq42 = np.array([64, 28, 29, 28]) / 185
    errs = []
    for k in range(1, 5):
        exact = np.asarray(physics.concatenated_gate_counts(k, v)) / 64.0**k
        errs.append(np.max(np.abs(exact / eq42 - 1)))
    assert errs[-1] < 1e-4
    assert all(b < a for a, b in zip(errs, errs[1:]))  # converges monotonically
    # vectorized over servers
    out = physics.concatenated_gate_counts(jnp.array([0, 1, 2]), v)
    assert out.shape == (3, 4)
    np.testing.assert_allclose(out[0], v)
    np.testing.assert_allclose(out[1], physics.CONCATENATION_MATRIX @ np.asarray(v), rtol=1e-6)


def test_logical_capacity_integer_exact():
    phys = jnp.array([91 * 20, 91 * 20 - 1, 8281 * 3, 8281 * 3 - 1, 5000, 0])
    k = jnp.array([1, 1, 2, 2, 2, 1])
    np.testing.assert_array_equal(physics.logical_capacity(phys, k), [20, 19, 3, 2, 0, 0])


def test_success_probability_and_feasibility_by_hand():
    eps = physics.physical_error_rate(1e-3, SI)  # 5.6994e-5
    # q=20, depth=813, k=1: M = 1 - 16260 * 2e-4 * (eps/2e-4)^2
    m = physics.success_probability(20.0, 813.0, eps, 1, SI)
    assert float(m) == pytest.approx(1 - 16260 * 2e-4 * (eps / 2e-4) ** 2, rel=1e-5)
    assert 2 / 3 < float(m) < 0.75
    assert bool(physics.feasible(20, 54, m, SI)) and not bool(physics.feasible(20, 19, m, SI))
    m26 = physics.success_probability(26.0, 6460.0, eps, 1, SI)
    assert not bool(physics.feasible(26, 54, m26, SI))
    # k = 2 squares the suppression: (eps/eps_thr)^4
    m2 = physics.success_probability(26.0, 6460.0, eps, 2, SI)
    assert float(m2) == pytest.approx(1 - 26 * 6460 * 2e-4 * (eps / 2e-4) ** 4, rel=1e-5)


def test_hopeless_qpu_stays_finite():
    m = physics.success_probability(60.0, 8.4e8, 1e6, 4, SI)
    assert np.isfinite(float(m)) and float(m) < 0


def test_qpu_profile_vectorized_and_jittable():
    prof = jax.jit(lambda p, k, t: physics.qpu_profile(SI, p, k, t))(
        jnp.array([5000, 5000, 9000]), jnp.array([1, 2, 1]), jnp.array([1e-3, 1e-3, 2e-3])
    )
    np.testing.assert_array_equal(prof.qcap, [54, 0, 98])
    assert float(prof.eps_err[2]) == pytest.approx(float(prof.eps_err[0]) / 2, rel=1e-6)
    lat1 = 20e-9 * 0 + (25e-9 * 28 + 100e-9 * 64 + 100e-9 * 28) * 64 / 185
    assert float(prof.latency_per_unit[0]) == pytest.approx(lat1, rel=1e-6)
    assert float(prof.latency_per_unit[1]) == pytest.approx(lat1 * 64, rel=1e-6)
    p2 = physics.two_qubit_gate_power(1e-3, SI)
    pw1 = (p2 / 4 * 28 + p2 * 64 + p2 * 28) * 64 / 185 + physics.qubit_static_power(SI) * 91
    assert float(prof.power_per_unit[0]) == pytest.approx(pw1, rel=1e-6)
