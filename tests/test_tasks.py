"""Ray-tracing compiler and the scenario/task samplers (spec sections 2-3)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meqc_jax import SystemConfig, compile_ray_tracing, sample_scenario, sample_tasks


def test_ray_tracing_spot_values():
    q, d = compile_ray_tracing(jnp.array([3, 9]), 6)
    np.testing.assert_array_equal(q, [20, 26])
    np.testing.assert_array_equal(d, [813, 6460])  # the paper's 6560 is a typo (spec 3)


def test_ray_tracing_all_primitives_match_formula():
    prims = np.arange(1, 40)
    q, d = compile_ray_tracing(jnp.asarray(prims), 6)
    exp_q = prims + 17
    exp_d = 3 * prims + np.array([math.floor(math.pi / 4 * math.sqrt(2**int(x))) for x in exp_q])
    np.testing.assert_array_equal(q, exp_q)
    np.testing.assert_array_equal(d, exp_d)


def test_samplers_respect_spec_ranges():
    cfg = SystemConfig(num_users=64, num_servers=48)
    keys = jax.random.split(jax.random.key(0), 64)
    sc = jax.vmap(lambda k: sample_scenario(k, cfg))(keys)
    tk = jax.vmap(lambda k, s: sample_tasks(k, cfg, s))(keys, sc)
    np.testing.assert_allclose(np.unique(sc.f_local), [1e9, 2e9, 3e9], rtol=1e-7)
    np.testing.assert_allclose(np.unique(sc.f_edge), [1e10, 1.5e10, 2e10], rtol=1e-7)
    assert set(np.unique(sc.k).tolist()) == {1, 2, 3}
    assert 1e-5 <= float(sc.p_tx.min()) and float(sc.p_tx.max()) <= 2e-4
    assert 1000 <= int(sc.phys_qubits.min()) and int(sc.phys_qubits.max()) <= 5000
    assert int(sc.phys_qubits.max()) > 4900 and int(sc.phys_qubits.min()) < 1100  # both ends reached
    np.testing.assert_allclose(sc.t1, 1e-3)
    np.testing.assert_allclose(sc.lam_d, 0.5)
    np.testing.assert_allclose(sc.lam_e, 0.5)
    frames = np.asarray(tk.s, dtype=np.float64) / 163840
    np.testing.assert_allclose(frames, np.round(frames), rtol=1e-6)
    assert 1024 <= frames.min() and frames.max() <= 10240.01
    j = np.log2(np.asarray(tk.n) / 3)
    assert set(np.round(j).astype(int).ravel().tolist()) == set(range(3, 10))
    assert set(np.asarray(tk.q).ravel().tolist()) == set(range(20, 27))
    assert 813 <= int(tk.depth.min()) and int(tk.depth.max()) <= 6460
    assert 4.0 <= float(tk.g.min()) and float(tk.g.max()) <= 8.0 and tk.g.shape == (64, 64, 48)
    ratio = np.log(np.asarray(tk.t1_slot) / 1e-3)
    assert ratio.std() == pytest.approx(0.1, rel=0.1) and abs(ratio.mean()) < 0.01


def test_jitter_off_and_presets():
    cfg = SystemConfig(num_users=3, num_servers=4, t1_jitter_sigma=0.0, preset="delay", t1_ms=2.0)
    sc = sample_scenario(jax.random.key(1), cfg)
    tk = sample_tasks(jax.random.key(2), cfg, sc)
    np.testing.assert_allclose(tk.t1_slot, 2e-3)
    np.testing.assert_allclose(sc.lam_d, 0.9)
    np.testing.assert_allclose(sc.lam_e, 0.1)
