"""SystemConfig: defaults, SI conversion, validation errors, hashability."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import pytest

from meqc_jax import SystemConfig


def test_defaults_are_the_spec_values():
    c = SystemConfig()
    assert (c.num_users, c.num_servers, c.slots_per_episode) == (10, 10, 500)
    assert (c.energy_model, c.latency_model, c.arbitration, c.preset) == ("paper", "sum", "arrival", "balanced")
    assert c.f_local_choices_ghz == (1.0, 2.0, 3.0) and c.f_edge_choices_ghz == (10.0, 15.0, 20.0)
    assert c.p_tx_range_mw == (0.01, 0.2) and c.phys_qubits_range == (1000, 5000) and c.k_choices == (1, 2, 3)
    assert c.t1_ms == 1.0 and c.frames_range == (1024, 10240) and c.prims_range == (3, 9) and c.c_b == 6
    assert c.gain_range == (4.0, 8.0) and c.t1_jitter_sigma == 0.1 and c.bandwidth_mhz == 20.0


def test_si_conversion():
    si = SystemConfig().si
    assert si.f_local_choices == (1e9, 2e9, 3e9)
    assert si.p_tx_range == pytest.approx((1e-5, 2e-4))
    assert si.noise_power == pytest.approx(1e-9)  # -60 dBm
    assert si.attenuation == pytest.approx(1e4)  # 40 dB
    assert si.bandwidth == 20e6 and si.bytes_per_frame == 163840 and si.quantum_unit == 1e6
    assert si.omega == pytest.approx(2 * math.pi * 6e9)
    assert (si.tau_1, si.tau_2, si.tau_m, si.tau_step) == pytest.approx((25e-9, 100e-9, 100e-9, 100e-9))
    assert (si.q_gen, si.q_hemt, si.q_para) == pytest.approx((10e-6, 50e-6, 10e-9))
    assert si.t1 == pytest.approx(1e-3)


@pytest.mark.parametrize("preset, weights", [("balanced", (0.5, 0.5)), ("delay", (0.9, 0.1)), ("energy", (0.1, 0.9))])
def test_presets(preset, weights):
    c = SystemConfig.from_preset(preset)
    assert c.weights == weights and c.si.lam_d == weights[0] and c.si.lam_e == weights[1]
    assert SystemConfig(preset=preset, lam_d=0.3).weights == (0.3, weights[1])


BAD = [
    ("num_users", 0), ("num_users", 2.5), ("num_servers", -1), ("slots_per_episode", 0), ("num_users", True),
    ("energy_model", "joules"), ("latency_model", "max"), ("arbitration", "fifo"), ("preset", "greedy"), ("oracle_lp_first", 1), ("oracle_lp_first", "yes"),
    ("lam_d", 1.5), ("lam_e", -0.1), ("lam_d", float("nan")),
    ("f_local_choices_ghz", ()), ("f_local_choices_ghz", (1.0, -2.0)), ("f_edge_choices_ghz", (float("nan"),)),
    ("p_tx_range_mw", (0.2, 0.01)), ("p_tx_range_mw", (0.01,)), ("p_tx_range_mw", (0.0, 0.2)),
    ("phys_qubits_range", (5000, 1000)), ("phys_qubits_range", (1.5, 10)), ("k_choices", (1, 5)),
    ("k_choices", ()), ("t1_ms", 0.0), ("t1_ms", float("inf")), ("t1_ms", float("nan")),
    ("frames_range", (0, 10)), ("frames_range", (10, 5)), ("cycles_exponent_range", (3, 41)),
    ("prims_range", (3, 100)), ("gain_range", (8.0, 4.0)), ("t1_jitter_sigma", -0.1),
    ("bandwidth_mhz", 0.0), ("noise_power_dbm", float("nan")), ("chip_coeff", 0.0), ("quantum_unit_mb", -1.0),
    ("t_gen_k", 0.05), ("attenuation_db", -3.0), ("num_stages", 1), ("tau_1_ns", 0.0), ("eps_thr", 0.0),
    ("eps_thr", 1.5), ("q_hemt_uw", -1.0), ("success_threshold", 0.0), ("success_threshold", 1.2),
]


@pytest.mark.parametrize("field, value", BAD)
def test_invalid_values_raise_one_line_error_naming_field(field, value):
    with pytest.raises(ValueError) as err:
        SystemConfig(**{field: value})
    msg = str(err.value)
    assert "\n" not in msg
    assert f"SystemConfig.{field}=" in msg and "allowed" in msg


def test_float32_headroom_is_checked():
    with pytest.raises(ValueError, match="float32-safe limit"):
        SystemConfig(num_users=65536, frames_range=(10**7, 10**7), frame_pixels=(10**4, 10**4), bytes_per_pixel=64,
                     quantum_unit_mb=1e-6, k_choices=(4,), t1_ms=1e6)
    # each of those alone is fine
    SystemConfig(k_choices=(4,), t1_ms=1e6, quantum_unit_mb=1e-6)


def test_hashable_static_jit_argument_and_roundtrip():
    a, b = SystemConfig(), SystemConfig()
    assert a == b and hash(a) == hash(b) and a != a.replace(num_users=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.num_users = 3  # type: ignore[misc]
    f = jax.jit(lambda cfg, x: x * cfg.num_users, static_argnums=0)
    assert float(f(a.replace(num_users=3), jnp.float32(2.0))) == 6.0
    assert SystemConfig.from_dict(a.to_dict()) == a
    with pytest.raises(ValueError, match="unknown field"):
        SystemConfig.from_dict({"users": 3})
