"""The cost model (spec sections 5-9): reference agreement, hand-worked values, properties."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from conftest import as_numpy, random_instance, rel_close
from meqc_jax import Scenario, SystemConfig, Tasks, option_costs, physics, sample_scenario, sample_tasks, slot_cost
from reference_numpy import slot_cost_reference
from conftest import stable_seed

OPTIONS = [
    dict(energy_model=em, latency_model=lm, arbitration=ar)
    for em in ("paper", "power_time") for lm in ("sum", "parallel") for ar in ("arrival", "cheapest")
]


@functools.lru_cache(maxsize=None)
def batched_slot_cost(cfg):
    return jax.jit(jax.vmap(lambda sc, tk, a, p, k: slot_cost(cfg, sc, tk, a, p, k)))


def stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def random_actions(rng, U, E, n):
    server = rng.integers(0, E, size=(n, U))
    phi = rng.uniform(0, 1, size=(n, U))
    # exact end points matter: phi = 1 (pure local, never requests) and phi = 0 (full offload)
    phi[rng.uniform(size=(n, U)) < 0.2] = 1.0
    phi[rng.uniform(size=(n, U)) < 0.2] = 0.0
    return server, phi


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(o.values()))
@pytest.mark.parametrize("U, E", [(1, 1), (4, 2), (7, 5)])
def test_matches_independent_reference(opts, U, E):
    cfg = SystemConfig(**opts)
    rng = np.random.default_rng(stable_seed(U, E, *opts.values()))
    n = 24
    insts = [random_instance(rng, U, E, quantum_friendly=(i % 3 != 0)) for i in range(n)]
    server, phi = random_actions(rng, U, E, n)
    sc, tk = stack([i[0] for i in insts]), stack([i[1] for i in insts])
    keys = jax.random.split(jax.random.key(U * 100 + E), n)
    out = batched_slot_cost(cfg)(sc, tk, jnp.asarray(server), jnp.asarray(phi, dtype=jnp.float32), keys)
    n_granted = 0
    for i in range(n):
        b = unstack(out, i)
        grants = np.asarray(b.quantum) if cfg.arbitration == "arrival" else None
        ref = slot_cost_reference(cfg, as_numpy(insts[i][0]), as_numpy(insts[i][1]), server[i],
                                  np.asarray(phi[i], dtype=np.float32), granted=grants)
        np.testing.assert_array_equal(b.feasible, ref["feasible"])
        np.testing.assert_array_equal(b.requested, ref["requested"])
        np.testing.assert_array_equal(b.quantum, ref["granted"])
        assert rel_close(b.total, ref["total"]), (float(b.total), ref["total"])
        assert rel_close(b.per_user, ref["per_user"])
        assert rel_close(b.latency, ref["latency"]) and rel_close(b.energy, ref["energy"])
        n_granted += int(np.sum(ref["granted"]))
    assert n_granted > 0  # the instances exercise the QPU path


def _one_user_instance(phi_server_k=1, t1=1e-3):
    """1 user, 1 server with round numbers: SNR p g / sigma^2 = 1023 -> rate = 20 MHz * 10 = 2e8 bit/s."""
    sc = Scenario(
        f_local=jnp.array([1e9]), p_tx=jnp.array([1023e-9 / 4.0]), f_edge=jnp.array([1e10]),
        phys_qubits=jnp.array([5000]), k=jnp.array([phi_server_k]), t1=jnp.array([t1]),
        lam_d=jnp.array([0.5]), lam_e=jnp.array([0.5]),
    )
    tk = Tasks(s=jnp.array([1e6]), n=jnp.array([100.0]), q=jnp.array([20]), depth=jnp.array([813]),
               g=jnp.array([[4.0]]), t1_slot=jnp.array([t1]))
    return sc, tk


def test_hand_worked_classical_offload():
    # t1 = 1 us makes the QPU infeasible (eps_err = 0.057 >> threshold), so phi = 0 runs on the CPUs.
    sc, tk = _one_user_instance(t1=1e-6)
    cfg = SystemConfig()
    b = slot_cost(cfg, sc, tk, jnp.array([0]), jnp.array([0.0]), jax.random.key(0))
    # cycles = 1e8; d_O = 8e6 bit / 2e8 = 0.04 s; e_O = p * 0.04 = 1.023e-8 J
    # d_E = 1e8 / 1e10 = 0.01 s; e_E = 1e-11 * 1e8 = 1e-3 J
    assert not bool(b.quantum[0]) and not bool(b.feasible[0, 0])
    assert float(b.latency[0]) == pytest.approx(0.05, rel=1e-5)
    assert float(b.energy[0]) == pytest.approx(1e-3 + 1.023e-8, rel=1e-5)
    assert float(b.total) == pytest.approx(0.5 * 0.05 + 0.5 * (1e-3 + 1.023e-8), rel=1e-5)


def test_hand_worked_local_and_split():
    sc, tk = _one_user_instance(t1=1e-6)
    # phi = 1: d_L = 1e8/1e9 = 0.1 s, e_L = 1e-3 J
    b = slot_cost(SystemConfig(), sc, tk, jnp.array([0]), jnp.array([1.0]), jax.random.key(0))
    assert float(b.total) == pytest.approx(0.5 * 0.1 + 0.5 * 1e-3, rel=1e-6)
    # phi = 0.5 under `sum`: 0.05 + (0.02 + 0.005) s; under `parallel`: max(0.05, 0.025) s
    for model, lat in (("sum", 0.075), ("parallel", 0.05)):
        b = slot_cost(SystemConfig(latency_model=model), sc, tk, jnp.array([0]), jnp.array([0.5]), jax.random.key(0))
        assert float(b.latency[0]) == pytest.approx(lat, rel=1e-5)
        assert float(b.energy[0]) == pytest.approx(0.5e-3 + 0.5e-3 + 0.5 * 1.023e-8, rel=1e-5)


@pytest.mark.parametrize("energy_model", ["paper", "power_time"])
def test_hand_worked_quantum(energy_model):
    sc, tk = _one_user_instance(t1=1e-3)
    cfg = SystemConfig(energy_model=energy_model)
    b = slot_cost(cfg, sc, tk, jnp.array([0]), jnp.array([0.0]), jax.random.key(0))
    assert bool(b.feasible[0, 0]) and bool(b.quantum[0])  # q=20 <= 5000//91 = 54, M = 0.736 >= 2/3
    # w = 1e6 / 1e6 = 1 unit, q = 20; per logical qubit and step at k = 1 (Eq. 42, 64/185 scale):
    lat_unit = (25e-9 * 28 + 100e-9 * 64 + 100e-9 * 28) * 64 / 185  # = 3.4249e-6 s
    d_q = 20 * lat_unit
    p2 = physics.two_qubit_gate_power(1e-3, cfg.si)  # 2.7056e-6 W
    power = (p2 / 4 * 28 + p2 * 64 + p2 * 28) * 64 / 185 + 225.0357e-6 * 91
    e_q = 20 * power if energy_model == "paper" else d_q * power
    assert float(b.latency[0]) == pytest.approx(0.04 + d_q, rel=1e-5)
    assert float(b.energy[0]) == pytest.approx(1.023e-8 + e_q, rel=1e-5)
    assert float(b.total) == pytest.approx(0.5 * (0.04 + d_q) + 0.5 * (1.023e-8 + e_q), rel=1e-5)


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(o.values()))
def test_phi_one_is_pure_local_cost(opts):
    rng = np.random.default_rng(1)
    sc, tk = random_instance(rng, 6, 3, quantum_friendly=True)
    b = slot_cost(SystemConfig(**opts), sc, tk, jnp.asarray(rng.integers(0, 3, 6)), jnp.ones(6), jax.random.key(3))
    cycles = np.asarray(tk.s, np.float64) * np.asarray(tk.n, np.float64)
    local = np.asarray(sc.lam_d) * cycles / np.asarray(sc.f_local) + np.asarray(sc.lam_e) * 1e-11 * cycles
    assert rel_close(b.per_user, local, rtol=1e-5)
    assert not np.any(b.quantum) and not np.any(b.requested)


def test_cost_is_linear_in_phi_under_sum():
    rng = np.random.default_rng(2)
    cfg = SystemConfig(latency_model="sum", arbitration="cheapest")
    for _ in range(5):
        sc, tk = random_instance(rng, 5, 4, quantum_friendly=True)
        c0, c1 = option_costs(cfg, sc, tk, jnp.zeros(5)), option_costs(cfg, sc, tk, jnp.ones(5))
        for phi in (0.25, 0.6, 0.9):
            cp = option_costs(cfg, sc, tk, jnp.full(5, phi))
            for f in ("classical", "quantum"):
                lin = (1 - phi) * np.asarray(getattr(c0, f), np.float64) + phi * np.asarray(getattr(c1, f), np.float64)
                assert rel_close(getattr(cp, f), lin, rtol=1e-5)
        # slot_cost too, wherever the grants are the same for every phi < 1
        server = jnp.asarray(rng.integers(0, 4, 5))
        b0 = slot_cost(cfg, sc, tk, server, jnp.zeros(5), jax.random.key(0))
        b1 = slot_cost(cfg, sc, tk, server, jnp.full(5, 0.999999), jax.random.key(0))
        bh = slot_cost(cfg, sc, tk, server, jnp.full(5, 0.5), jax.random.key(0))
        if np.array_equal(b0.quantum, bh.quantum) and np.array_equal(b0.quantum, b1.quantum):
            assert rel_close(bh.total, 0.5 * (float(b0.total) + float(b1.total)), rtol=1e-4)


def test_parallel_is_never_costlier_than_sum():
    rng = np.random.default_rng(3)
    for _ in range(5):
        sc, tk = random_instance(rng, 5, 4, quantum_friendly=True)
        phi = jnp.asarray(rng.uniform(size=5))
        s = option_costs(SystemConfig(latency_model="sum"), sc, tk, phi)
        p = option_costs(SystemConfig(latency_model="parallel"), sc, tk, phi)
        assert np.all(np.asarray(p.classical) <= np.asarray(s.classical) * (1 + 1e-6))
        assert np.all(np.asarray(p.quantum) <= np.asarray(s.quantum) * (1 + 1e-6))


def test_option_costs_agree_with_slot_cost_for_single_users():
    rng = np.random.default_rng(4)
    cfg = SystemConfig(arbitration="cheapest")
    for _ in range(4):
        sc, tk = random_instance(rng, 1, 5, quantum_friendly=True)
        phi = jnp.asarray(rng.uniform(size=1))
        oc = option_costs(cfg, sc, tk, phi)
        for e in range(5):
            b = slot_cost(cfg, sc, tk, jnp.array([e]), phi, jax.random.key(0))
            expect = oc.quantum[0, e] if bool(oc.feasible[0, e]) else oc.classical[0, e]
            assert rel_close(b.total, expect, rtol=1e-6)


@pytest.mark.parametrize("rule", ["arrival", "cheapest"])
def test_one_grant_per_server_exactly_when_requested(rule):
    cfg = SystemConfig(arbitration=rule)
    rng = np.random.default_rng(5)
    n, U, E = 64, 12, 3
    insts = [random_instance(rng, U, E, quantum_friendly=True) for _ in range(n)]
    server, phi = random_actions(rng, U, E, n)
    out = batched_slot_cost(cfg)(stack([i[0] for i in insts]), stack([i[1] for i in insts]), jnp.asarray(server),
                                 jnp.asarray(phi, dtype=jnp.float32), jax.random.split(jax.random.key(7), n))
    onehot = np.asarray(server)[..., None] == np.arange(E)  # [n, U, E]
    grants = np.sum(onehot & np.asarray(out.quantum)[..., None], axis=1)
    requesters = np.sum(onehot & np.asarray(out.requested)[..., None], axis=1)
    np.testing.assert_array_equal(grants, (requesters > 0).astype(int))
    assert np.all(~np.asarray(out.quantum) | np.asarray(out.requested))  # only requesters are granted
    assert np.sum(requesters > 1) > 10  # contention actually happened


def test_cheapest_picks_the_cheapest_requester():
    cfg = SystemConfig(arbitration="cheapest")
    rng = np.random.default_rng(6)
    contested = 0
    for _ in range(20):
        sc, tk = random_instance(rng, 8, 2, quantum_friendly=True)
        server, phi = jnp.asarray(rng.integers(0, 2, 8)), jnp.asarray(rng.uniform(0, 0.9, 8))
        b = slot_cost(cfg, sc, tk, server, phi, jax.random.key(0))
        cost_q = np.asarray(option_costs(cfg, sc, tk, phi).quantum)[np.arange(8), np.asarray(server)]
        for e in range(2):
            req = np.flatnonzero(np.asarray(b.requested) & (np.asarray(server) == e))
            if len(req):
                winner = np.flatnonzero(np.asarray(b.quantum) & (np.asarray(server) == e))
                assert winner.tolist() == [req[np.argmin(cost_q[req])]]
                contested += len(req) > 1
    assert contested > 5


def test_cheapest_ties_go_to_lowest_index_and_ignore_key():
    rng = np.random.default_rng(7)
    sc, tk = random_instance(rng, 1, 1, quantum_friendly=True)
    # three identical users on one server
    sc3 = jax.tree.map(lambda x: jnp.concatenate([x] * 3) if x.shape[0] == 1 and x is not sc.f_edge else x, sc)
    sc3 = sc3.replace(f_edge=sc.f_edge, phys_qubits=jnp.array([10**6]), k=jnp.array([1]), t1=sc.t1)
    tk3 = Tasks(s=jnp.repeat(tk.s, 3), n=jnp.repeat(tk.n, 3), q=jnp.full(3, 20), depth=jnp.full(3, 813),
                g=jnp.repeat(tk.g, 3, axis=0), t1_slot=jnp.array([5e-3]))
    cfg = SystemConfig(arbitration="cheapest")
    for k in range(3):
        b = slot_cost(cfg, sc3, tk3, jnp.zeros(3, int), jnp.zeros(3), jax.random.key(k))
        np.testing.assert_array_equal(b.quantum, [True, False, False])


def test_arrival_is_a_fair_random_order_and_deterministic_per_key():
    rng = np.random.default_rng(8)
    sc, tk = random_instance(rng, 3, 1, quantum_friendly=True)
    tk = tk.replace(q=jnp.full(3, 20), depth=jnp.full(3, 813), t1_slot=jnp.array([5e-3]))
    sc = sc.replace(phys_qubits=jnp.array([10**6]), k=jnp.array([1]))
    cfg = SystemConfig(arbitration="arrival")
    f = jax.jit(jax.vmap(lambda k: slot_cost(cfg, sc, tk, jnp.zeros(3, int), jnp.zeros(3), k).quantum))
    wins = np.asarray(f(jax.random.split(jax.random.key(0), 6000)))
    assert np.all(wins.sum(axis=1) == 1)
    np.testing.assert_allclose(wins.mean(axis=0), 1 / 3, atol=0.03)
    k = jax.random.key(42)
    a = slot_cost(cfg, sc, tk, jnp.zeros(3, int), jnp.zeros(3), k)
    b = slot_cost(cfg, sc, tk, jnp.zeros(3, int), jnp.zeros(3), k)
    assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.all(x == y)), a, b))


def test_out_of_range_actions_are_clipped_and_counted():
    rng = np.random.default_rng(9)
    sc, tk = random_instance(rng, 4, 3)
    cfg = SystemConfig()
    b = slot_cost(cfg, sc, tk, jnp.array([-1, 3, 7, 1]), jnp.array([-0.5, jnp.nan, 1.5, 0.3]), jax.random.key(0))
    assert int(b.clipped_server) == 3 and int(b.clipped_phi) == 3
    np.testing.assert_array_equal(b.server, [0, 2, 2, 1])
    np.testing.assert_allclose(b.phi, [0.0, 1.0, 1.0, 0.3], rtol=1e-6)
    clean = slot_cost(cfg, sc, tk, b.server, b.phi, jax.random.key(0))
    assert float(clean.total) == float(b.total) and np.isfinite(float(b.total))
    assert int(clean.clipped_server) == 0 and int(clean.clipped_phi) == 0


# --------------------------------------------------------------------------- property tests
def _corner(lo, default, hi):
    return st.sampled_from([lo, default, hi])


@st.composite
def corner_configs(draw):
    kw = dict(
        energy_model=draw(st.sampled_from(["paper", "power_time"])),
        latency_model=draw(st.sampled_from(["sum", "parallel"])),
        arbitration=draw(st.sampled_from(["arrival", "cheapest"])),
        preset=draw(st.sampled_from(["balanced", "delay", "energy"])),
        f_local_choices_ghz=(draw(_corner(1e-3, 1.0, 1e3)), draw(_corner(1e-3, 3.0, 1e3))),
        p_tx_range_mw=tuple(sorted((draw(_corner(1e-6, 0.01, 1e4)), draw(_corner(1e-6, 0.2, 1e4))))),
        f_edge_choices_ghz=(draw(_corner(1e-3, 10.0, 1e4)),),
        phys_qubits_range=tuple(sorted((draw(_corner(0, 1000, 2**31 - 2)), draw(_corner(0, 5000, 2**31 - 2))))),
        k_choices=tuple(sorted(set(draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))))),
        t1_ms=draw(_corner(1e-9, 1.0, 1e6)),
        frames_range=tuple(sorted((draw(_corner(1, 1024, 10**7)), draw(_corner(1, 10240, 10**7))))),
        cycles_exponent_range=tuple(sorted((draw(_corner(0, 3, 40)), draw(_corner(0, 9, 40))))),
        prims_range=tuple(sorted((draw(_corner(1, 3, 43)), draw(_corner(1, 9, 43))))),
        gain_range=tuple(sorted((draw(_corner(1e-6, 4.0, 1e6)), draw(_corner(1e-6, 8.0, 1e6))))),
        t1_jitter_sigma=draw(_corner(0.0, 0.1, 2.0)),
        bandwidth_mhz=draw(_corner(1e-6, 20.0, 1e6)),
        noise_power_dbm=draw(_corner(-200.0, -60.0, 100.0)),
        chip_coeff=draw(_corner(1e-30, 1e-11, 1.0)),
        attenuation_db=draw(_corner(0.0, 40.0, 100.0)),
        num_users=draw(st.sampled_from([1, 3])),
        num_servers=draw(st.sampled_from([1, 4])),
    )
    try:
        return SystemConfig(**kw)
    except ValueError as e:
        assume("float32-safe" not in str(e))
        raise


@settings(max_examples=120)
@given(cfg=corner_configs(), seed=st.integers(0, 2**31 - 1))
def test_costs_finite_and_nonnegative_at_range_corners(cfg, seed):
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    k1, k2, k3 = jax.random.split(key, 3)
    sc = sample_scenario(k1, cfg)
    tk = sample_tasks(k2, cfg, sc)
    U, E = cfg.num_users, cfg.num_servers
    phi = jnp.asarray(rng.choice([0.0, 1.0, 0.5, rng.uniform()], size=U), dtype=jnp.float32)
    b = slot_cost(cfg, sc, tk, jnp.asarray(rng.integers(0, E, U)), phi, k3)
    for name in ("total", "per_user", "latency", "energy"):
        x = np.asarray(getattr(b, name))
        assert np.all(np.isfinite(x)) and np.all(x >= 0), (name, x)
    oc = option_costs(cfg, sc, tk, phi)
    assert np.all(np.isfinite(np.asarray(oc.classical))) and np.all(np.isfinite(np.asarray(oc.quantum)))
