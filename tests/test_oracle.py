"""The exact oracle: agreement with brute-force enumeration, lower bound, replay."""

import itertools

import numpy as np
import pytest

from conftest import as_numpy, random_instance
from meqc_jax import SystemConfig
from meqc_jax.baselines import oracle_cost
from meqc_jax.cost import option_table
from meqc_jax.oracle import QUANTUM, solve_slot
from reference_numpy import constants, user_option
from conftest import stable_seed

OPTIONS = [dict(energy_model=em, latency_model=lm) for em in ("paper", "power_time") for lm in ("sum", "parallel")]


def _best_over_phi(f, allow_one=True):
    """min over phi in [0, 1] of a convex piecewise-linear f: ternary search plus both end points.
    (For the quantum option phi = 1 is the limit phi -> 1, i.e. holding the QPU.)"""
    lo, hi = 0.0, 1.0
    for _ in range(80):  # (2/3)^80 < 1e-14
        m1, m2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        if f(m1) <= f(m2):
            hi = m2
        else:
            lo = m1
    return min(f(0.0), f(1.0), f((lo + hi) / 2))


def brute_force(cfg, sc, tk):
    """Enumerate every assignment of users to {local, classical at e, quantum at e} with each
    option's split found numerically from the reference cost functions; keep valid ones."""
    c = constants(cfg)
    U, E = len(sc["f_local"]), len(sc["f_edge"])
    local = [user_option(cfg, c, sc, tk, u, 0, 1.0)[0][2] for u in range(U)]
    feas = [[user_option(cfg, c, sc, tk, u, e, 0.0)[2] for e in range(E)] for u in range(U)]
    cls = [[_best_over_phi(lambda p: user_option(cfg, c, sc, tk, u, e, p)[0][2]) for e in range(E)] for u in range(U)]
    qua = [[_best_over_phi(lambda p: user_option(cfg, c, sc, tk, u, e, p)[1][2]) for e in range(E)] for u in range(U)]
    choices = [("L", None)] + [("C", e) for e in range(E)] + [("Q", e) for e in range(E)]
    best = np.inf
    for assign in itertools.product(choices, repeat=U):
        holders = [e for m, e in assign if m == "Q"]
        if len(set(holders)) != len(holders):
            continue
        if any(m == "Q" and not feas[u][e] for u, (m, e) in enumerate(assign)):
            continue
        if any(m == "C" and feas[u][e] and e not in holders for u, (m, e) in enumerate(assign)):
            continue
        total = sum(local[u] if m == "L" else (cls[u][e] if m == "C" else qua[u][e]) for u, (m, e) in enumerate(assign))
        best = min(best, total)
    return best


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(o.values()))
def test_oracle_equals_brute_force(opts):
    cfg = SystemConfig(**opts)
    rng = np.random.default_rng(stable_seed(*opts.values()))
    disagreements, contested = [], 0
    # four shapes (each compiles its own programs, the suite's cost) that still cover one user, one server,
    # more users than servers and the reverse
    shapes = [(1, 3), (2, 2), (3, 3), (4, 2)]
    for i in range(30):
        U, E = shapes[int(rng.integers(len(shapes)))]
        sc, tk = random_instance(rng, U, E, quantum_friendly=True)
        value = oracle_cost(cfg, sc, tk)
        bf = brute_force(cfg, as_numpy(sc), as_numpy(tk))
        if abs(value - bf) > 1e-4 * abs(bf):
            disagreements.append((i, U, E, value, bf))
        t = option_table(cfg, sc, tk)
        _, mode, _ = solve_slot(t.local, t.classical, t.quantum, t.feasible)
        contested += int(np.sum(mode == QUANTUM) > 0)
    assert not disagreements, disagreements
    assert contested > 5  # the QPU path is exercised


def test_solve_batch_equals_a_loop_of_solve_slot():
    """The batched check (only colliding slots go to HiGHS) gives every slot's solve_slot answer."""
    from meqc_jax.oracle import solve_batch

    rng = np.random.default_rng(7)
    cfg = SystemConfig()
    U, E = 5, 2
    tables = [option_table(cfg, *random_instance(rng, U, E, quantum_friendly=i % 4 != 0)) for i in range(24)]
    stack = [np.stack([np.asarray(getattr(t, f)) for t in tables]).reshape((4, 6) + np.shape(getattr(tables[0], f)))
             for f in ("local", "classical", "quantum", "feasible")]
    values, modes, servers = solve_batch(*stack)
    assert values.shape == (4, 6) and modes.shape == servers.shape == (4, 6, U)
    solved = 0
    for i, t in enumerate(tables):
        v, m, s = solve_slot(t.local, t.classical, t.quantum, t.feasible)
        j = np.unravel_index(i, (4, 6))
        assert values[j] == pytest.approx(v, rel=1e-12) and np.array_equal(modes[j], m)
        assert np.array_equal(servers[j][m != 0], s[m != 0])
        best = np.argmin(np.concatenate([np.asarray(t.local)[:, None], np.asarray(t.classical),
                                         np.where(t.feasible, t.quantum, np.inf)], axis=1), axis=1)
        solved += int(np.any(np.bincount(best[best > E] - E - 1, minlength=E) > 1))  # two want one QPU
    assert solved > 0  # the MIP path is exercised


def test_lp_relaxation_first_finds_the_mip_optimum():
    """solve_mip tries the LP relaxation first and keeps it only when it is integral and valid; on
    colliding slots its assignment costs exactly what the MIP's does, and both paths are exercised."""
    from meqc_jax import oracle

    rng = np.random.default_rng(11)
    cfg = SystemConfig()
    calls = {"lp": 0, "mip": 0}
    run = oracle.highspy.Highs.run

    def counting_run(h):
        calls["mip" if h.getLp().integrality_ else "lp"] += 1
        return run(h)

    compared = 0
    try:
        oracle.highspy.Highs.run = counting_run
        for i in range(60):
            U, E = (5, 2) if i % 2 else (2, 2)  # two shapes (one option_table compile each); 2 x 2 LPs are often fractional
            t = option_table(cfg, *random_instance(rng, U, E, quantum_friendly=True))
            args = [np.asarray(x, np.float64) for x in (t.local, t.classical, t.quantum)] + [np.asarray(t.feasible)]
            fast = oracle.solve_mip(*args, relax_first=True)
            exact = oracle.solve_mip(*args)  # the default: straight to the MIP
            for mode, server in (fast, exact):
                assert oracle.check_assignment(mode, server, args[3])
            assert oracle.assignment_value(*args[:3], *fast) == pytest.approx(
                oracle.assignment_value(*args[:3], *exact), rel=1e-9, abs=1e-9)
            compared += 1
    finally:
        oracle.highspy.Highs.run = run
    # every slot tried the LP; 60 MIPs came from relax_first=False, the rest are fractional LPs falling back
    assert compared == 60 and calls["lp"] == 60 and calls["mip"] > 60


def test_block_lp_relaxations_give_every_slots_mip_optimum(monkeypatch):
    """With relax_first, solve_batch solves the colliding slots' relaxations as block-diagonal LPs
    (LP_BLOCK slots each) and sends only fractional ones to the MIP: every slot's value equals the
    MIP-only path's, every assignment is valid, and both the block LP and the fallback are exercised."""
    from meqc_jax import oracle

    rng = np.random.default_rng(5)
    cfg = SystemConfig()
    for U, E in ((2, 2), (5, 2)):  # 2 x 2 relaxations are often fractional
        tables = [option_table(cfg, *random_instance(rng, U, E, quantum_friendly=True)) for _ in range(20)]
        args = [np.stack([np.asarray(getattr(t, f), np.float64 if f != "feasible" else bool) for t in tables])
                for f in ("local", "classical", "quantum", "feasible")]
        calls = {"lp": 0, "mip": 0}
        run = oracle.highspy.Highs.run

        def counting_run(h):
            calls["mip" if h.getLp().integrality_ else "lp"] += 1
            return run(h)

        monkeypatch.setattr(oracle, "LP_BLOCK", 8)
        monkeypatch.setattr(oracle.highspy.Highs, "run", counting_run)
        fast, modes, servers = oracle.solve_batch(*args, relax_first=True)
        monkeypatch.undo()
        exact, _, _ = oracle.solve_batch(*args)
        np.testing.assert_allclose(fast, exact, rtol=1e-9, atol=1e-9)
        for b in range(20):
            assert oracle.check_assignment(modes[b], servers[b], args[3][b])
        assert 1 <= calls["lp"] <= 3  # at most ceil(20 / 8) block LPs, not one per slot
        if (U, E) == (2, 2):
            assert calls["mip"] >= 1  # a fractional relaxation fell back to its MIP


def test_batched_validity_equals_check_assignment():
    """valid_batch (the batched constraint check of solve_batch and the block LPs) agrees with
    check_assignment on random assignments, valid and not."""
    from meqc_jax import oracle

    rng = np.random.default_rng(2)
    B, U, E = 500, 4, 3
    mode = rng.integers(0, 3, (B, U)).astype(np.int32)
    server = rng.integers(0, E, (B, U)).astype(np.int32)
    feasible = rng.random((B, U, E)) < 0.5
    got = oracle.valid_batch(mode, server, feasible)
    want = np.array([oracle.check_assignment(mode[b], server[b], feasible[b]) for b in range(B)])
    np.testing.assert_array_equal(got, want)
    assert 0 < want.sum() < B  # both kinds occur
