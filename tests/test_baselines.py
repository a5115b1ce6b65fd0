"""Baseline policies, the policy interface and the paired evaluation harness (spec section 11)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import random_instance
from meqc_jax import MEQCEnv, SystemConfig, option_costs, slot_cost
from meqc_jax.baselines import POLICY_NAMES, greedy_action, make_policy, parse_policy_names
from meqc_jax.cost import HOLD_PHI, option_table
from meqc_jax.env import EnvState
from meqc_jax.evaluate import evaluate, paired_comparison
from meqc_jax.oracle import decisions_to_action, solve_slot

U, E = 5, 3


def _states(cfg, n, seed=0):
    env = MEQCEnv(cfg)
    return jax.vmap(env.reset)(jax.random.split(jax.random.key(seed), n))


@pytest.mark.parametrize("name", ["local", "random_offloading", "random_partitioning", "greedy"])
def test_policies_are_pure_jittable_and_vmappable(name):
    cfg = SystemConfig(num_users=U, num_servers=E)
    obs, states = _states(cfg, 8)
    pol = make_policy(name, cfg)
    act = jax.jit(jax.vmap(pol.act))
    keys = jax.random.split(jax.random.key(1), 8)
    server, phi = act(keys, states, obs)
    assert server.shape == (8, U) and phi.shape == (8, U)
    assert np.all((np.asarray(server) >= 0) & (np.asarray(server) < E))
    assert np.all((np.asarray(phi) >= 0) & (np.asarray(phi) <= 1))
    s2, p2 = act(keys, states, obs)
    np.testing.assert_array_equal(server, s2) and np.testing.assert_array_equal(phi, p2)


def test_local_costs_the_sum_of_pure_local_costs():
    cfg = SystemConfig(num_users=U, num_servers=E)
    obs, states = _states(cfg, 16)
    server, phi = jax.vmap(make_policy("local", cfg).act)(jax.random.split(jax.random.key(0), 16), states, obs)
    b = jax.vmap(lambda s, a, p: slot_cost(cfg, s.scenario, s.tasks, a, p, jax.random.key(0)))(states, server, phi)
    sc, tk = states.scenario, states.tasks
    cycles = np.asarray(tk.s, np.float64) * np.asarray(tk.n, np.float64)
    expect = (0.5 * cycles / np.asarray(sc.f_local) + 0.5 * 1e-11 * cycles).sum(axis=1)
    np.testing.assert_allclose(np.asarray(b.total), expect, rtol=1e-5)
    assert not np.any(b.quantum)


def test_random_offloading_never_keeps_anything_local_and_covers_servers():
    cfg = SystemConfig(num_users=U, num_servers=E)
    obs, states = _states(cfg, 64)
    server, phi = jax.vmap(make_policy("random_offloading", cfg).act)(
        jax.random.split(jax.random.key(0), 64), states, obs)
    assert np.all(np.asarray(phi) == 0.0)
    assert set(np.unique(server).tolist()) == set(range(E))


def test_random_partitioning_uses_best_channel_and_uniform_split():
    cfg = SystemConfig(num_users=U, num_servers=E)
    obs, states = _states(cfg, 64)
    server, phi = jax.vmap(make_policy("random_partitioning", cfg).act)(
        jax.random.split(jax.random.key(0), 64), states, obs)
    np.testing.assert_array_equal(server, np.argmax(np.asarray(states.tasks.g), axis=-1))
    assert 0.45 < float(np.mean(phi)) < 0.55 and float(np.min(phi)) < 0.02 and float(np.max(phi)) > 0.98


@pytest.mark.parametrize("latency_model", ["sum", "parallel"])
def test_greedy_never_worse_than_local_per_slot_under_cheapest(latency_model):
    cfg = SystemConfig(num_users=8, num_servers=3, arbitration="cheapest", latency_model=latency_model)
    rng = np.random.default_rng(0)
    for _ in range(15):
        sc, tk = random_instance(rng, 8, 3, quantum_friendly=True)
        state = EnvState(scenario=sc, tasks=tk, t=jnp.int32(0), params=MEQCEnv(cfg).default_params())
        server, phi = greedy_action(cfg, state)
        g = slot_cost(cfg, sc, tk, server, phi, None)
        loc = slot_cost(cfg, sc, tk, jnp.zeros(8, int), jnp.ones(8), None)
        assert float(g.total) <= float(loc.total) * (1 + 1e-6)


def test_greedy_single_user_picks_best_grid_option():
    cfg = SystemConfig(num_users=1, num_servers=4, arbitration="cheapest", latency_model="parallel")
    rng = np.random.default_rng(1)
    for _ in range(10):
        sc, tk = random_instance(rng, 1, 4, quantum_friendly=True)
        server, phi = greedy_action(cfg, EnvState(scenario=sc, tasks=tk, t=jnp.int32(0), params=MEQCEnv(cfg).default_params()))
        got = float(slot_cost(cfg, sc, tk, server, phi, None).total)
        grid = [float(slot_cost(cfg, sc, tk, jnp.array([e]), jnp.array([p]), None).total)
                for e in range(4) for p in np.linspace(0, 1, 11)]
        assert got == pytest.approx(min(grid), rel=1e-6)


def test_greedy_beats_local_on_average_under_arrival():
    cfg = SystemConfig(num_users=8, num_servers=3, arbitration="arrival")
    res = evaluate(cfg, ["local", "greedy"], num_envs=16, num_slots=10, seed=3)
    assert res.summary["greedy"]["mean_cost"] < res.summary["local"]["mean_cost"]


@pytest.mark.parametrize("opts", [dict(arbitration="arrival"), dict(arbitration="cheapest", latency_model="parallel"),
                                  dict(energy_model="power_time", t1_ms=5.0, k_choices=(1,), phys_qubits_range=(2500, 5000))],
                         ids=["arrival", "cheapest-parallel", "power_time-quantum"])
def test_oracle_lower_bounds_every_policy_on_every_slot(opts):
    cfg = SystemConfig(num_users=6, num_servers=3, **opts)
    res = evaluate(cfg, list(POLICY_NAMES), num_envs=8, num_slots=8, seed=1)
    opt = res.per_slot["oracle"]["cost"]
    for name in POLICY_NAMES:
        assert np.all(opt <= res.per_slot[name]["cost"] * (1 + 1e-5) + 1e-9), name
        # paired slots: the environment side is identical for every policy
        np.testing.assert_array_equal(res.per_slot[name]["feasible_share"], res.per_slot["local"]["feasible_share"])
    assert res.summary["oracle"]["ratio_to_oracle"] == 1.0
    assert res.summary["greedy"]["ratio_to_oracle"] >= 1.0 - 1e-6


def test_oracle_decisions_replay_to_its_value():
    rng = np.random.default_rng(2)
    for opts in (dict(), dict(latency_model="parallel", energy_model="power_time")):
        cfg = SystemConfig(arbitration="arrival", **opts)
        for _ in range(10):
            sc, tk = random_instance(rng, 6, 3, quantum_friendly=True)
            t = option_table(cfg, sc, tk)
            value, mode, server = solve_slot(t.local, t.classical, t.quantum, t.feasible)
            srv, phi, preferred = decisions_to_action(t, jnp.asarray(mode), jnp.asarray(server))
            b = slot_cost(cfg, sc, tk, srv, phi, jax.random.key(0), preferred)
            # holders (phi -> 1) are replayed at HOLD_PHI: at most 2^-23 (c_Q(0) - c_L) above the limit each
            at0 = option_costs(cfg, sc, tk, jnp.zeros(6)).quantum[np.arange(6), server]
            slack = np.sum(np.where(np.asarray(phi) == HOLD_PHI, 2.0**-23 * np.asarray(at0), 0.0))
            assert value * (1 - 1e-6) <= float(b.total) <= value * (1 + 1e-6) + slack
            np.testing.assert_array_equal(np.asarray(b.quantum), mode == 2)


def test_option_table_closed_form_matches_fine_grid():
    rng = np.random.default_rng(3)
    for model in ("sum", "parallel"):
        cfg = SystemConfig(latency_model=model)
        sc, tk = random_instance(rng, 4, 3, quantum_friendly=True)
        t = option_table(cfg, sc, tk)
        grid = jnp.linspace(0.0, 1.0, 2001)
        costs = jax.vmap(lambda p: option_costs(cfg, sc, tk, jnp.full((4,), p)))(grid)
        np.testing.assert_array_less(np.asarray(t.classical), np.asarray(costs.classical.min(0)) * (1 + 1e-5))
        np.testing.assert_array_less(np.asarray(t.quantum), np.asarray(costs.quantum.min(0)) * (1 + 1e-5))
        np.testing.assert_allclose(np.asarray(t.classical), np.asarray(costs.classical.min(0)), rtol=2e-3)


def test_policy_names_parsing():
    assert parse_policy_names("all") == POLICY_NAMES
    assert parse_policy_names("greedy, local,greedy") == ("greedy", "local")
    for bad in ("", "greedy,foo", ","):
        with pytest.raises(ValueError) as e:
            parse_policy_names(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("dqn", SystemConfig())


def test_evaluate_rejects_bad_sizes():
    with pytest.raises(ValueError, match="num_envs"):
        evaluate(SystemConfig(), ["local"], num_envs=0, num_slots=5)


def test_cli_evaluate_round_trip(tmp_path, capsys):
    from meqc_jax.cli import main

    out = tmp_path / "ev"
    rc = main(["evaluate", "--users", "3", "--servers", "2", "--slots", "24", "--envs", "4", "--policies",
               "local,greedy,oracle", "--out", str(out), "--no-progress"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policies"] == ["local", "greedy", "oracle"] and summary["num_envs"] == 4
    assert summary["summary"]["oracle"]["ratio_to_oracle"] == 1.0
    assert summary["config"]["num_users"] == 3
    lines = (out / "per_slot.csv").read_text().strip().splitlines()
    assert lines[0].startswith("policy,slot,env,cost") and len(lines) == 1 + 3 * 24
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]
    assert "greedy" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--policies", "greedy,foo"], ["--slots", "0"], ["--users", "x"]])
def test_cli_evaluate_bad_arguments(args, capsys):
    from meqc_jax.cli import main

    try:
        rc = main(["evaluate", *args])
    except SystemExit as e:  # argparse
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "error" in err[-1]


def test_swept_evaluation_equals_evaluating_each_configuration():
    from meqc_jax.evaluate import evaluate

    base = SystemConfig(num_users=3, num_servers=2, slots_per_episode=4)
    swept = [base.replace(t1_ms=100.0), base.replace(f_edge_choices_ghz=(30.0,))]
    env = MEQCEnv(base)
    names = ["local", "random_offloading", "greedy"]
    res = evaluate(base, names, num_envs=3, num_slots=6, seed=5,
                   env_params=MEQCEnv.stack_params([env.params_for(c) for c in swept]))
    assert len(res.points) == 2
    for point, cfg in zip(res.points, swept):
        direct = evaluate(cfg, names, num_envs=3, num_slots=6, seed=5).summary
        for name in names:
            assert point[name]["mean_cost"] == pytest.approx(direct[name]["mean_cost"], rel=1e-5)
    with pytest.raises(ValueError, match="env_params"):
        from meqc_jax.learners.ppo import PPOConfig, PPOLearner

        tr = PPOLearner(base, PPOConfig(num_envs=2, num_minibatches=2, hidden=(8,)), scale=1.0)
        p = MEQCEnv.stack_params([env.default_params()] * 3)
        evaluate(base, [tr.sweep_policy(jax.tree.map(lambda a: a[None], tr.init_params(jax.random.key(0))))],
                 num_envs=2, num_slots=2, env_params=p)


def test_paired_comparison_takes_its_interval_over_instances_not_slots():
    # two instances x three slots; b costs 10 and 20 per slot, a 10 % and 30 % more: per-instance
    # differences 1 and 6 over b's mean 15, so the excess is 3.5 / 15 and the interval spans 5 / 15
    b = np.array([[10.0, 20.0]] * 3)
    a = b * np.array([1.1, 1.3])
    c = paired_comparison({"a": {"cost": a}, "b": {"cost": b}}, "a", "b")
    assert c["excess"] == pytest.approx(3.5 / 15)
    assert c["ratio"] == pytest.approx((11 + 26) / 30)
    assert c["ci95"] == pytest.approx(1.96 * np.std([1 / 15, 6 / 15], ddof=1) / np.sqrt(2))
    same = paired_comparison({"a": {"cost": b}, "b": {"cost": b}}, "a", "b")
    assert same == {"excess": 0.0, "ratio": 1.0, "ci95": 0.0}
    one = paired_comparison({"a": {"cost": a[:, :1]}, "b": {"cost": b[:, :1]}}, "a", "b")
    assert one["excess"] == pytest.approx(0.1) and np.isnan(one["ci95"])  # one instance: no interval


def test_more_instances_widens_one_policy_in_the_same_program_and_changes_no_other_number():
    base = SystemConfig(num_users=4, num_servers=3)
    env = MEQCEnv(base)
    params = MEQCEnv.stack_params([env.default_params(), env.params_for(base.replace(t1_ms=1000.0))])
    names = ["local", "random_offloading", "greedy", "oracle"]
    more = {"random_offloading": 3, "local": 2}
    plain, wide = {}, {}
    for slots in (1, 2):  # one slot: the program prices without the env transition after it
        plain[slots] = evaluate(base, names, num_envs=8, num_slots=slots, seed=4, env_params=params)
        wide[slots] = evaluate(base, names, num_envs=8, num_slots=slots, seed=4, env_params=params, more_instances=more)
        for name in names:  # [T, P, N]: the shared instances lead, so each policy's first 8 are the plain run's
            for m, v in plain[slots].per_slot[name].items():
                np.testing.assert_array_equal(wide[slots].per_slot[name][m][:, :, :8], v, err_msg=f"{slots}: {name} {m}")
            assert wide[slots].per_slot[name]["cost"].shape[-1] == 8 * more.get(name, 1)
        for name in ("random_offloading", "local"):  # paired with the oracle: on the shared instances
            for key in ("ratio_to_oracle", "share_at_optimum"):
                assert wide[slots].summary[name][key] == plain[slots].summary[name][key], (name, key)
                assert wide[slots].points[1][name][key] == plain[slots].points[1][name][key], (name, key)
        assert wide[slots].points[0]["greedy"] == plain[slots].points[0]["greedy"]
    # a widened policy's instances are those of an evaluation of that many (here at one slot)
    big = evaluate(base, names, num_envs=24, num_slots=1, seed=4, env_params=params)
    np.testing.assert_array_equal(wide[1].per_slot["random_offloading"]["cost"], big.per_slot["random_offloading"]["cost"])
    np.testing.assert_array_equal(wide[1].per_slot["local"]["cost"], big.per_slot["local"]["cost"][:, :, :16])
    ro = wide[1].points[1]["random_offloading"]
    assert ro["mean_cost"] == big.points[1]["random_offloading"]["mean_cost"] and ro["slots"] == 24
    # the one-slot program (no transition) prices the first slot as the two-slot one does
    np.testing.assert_array_equal(plain[1].per_slot["oracle"]["cost"], plain[2].per_slot["oracle"]["cost"][:1])
    for bad, match in (({"greedy2": 2}, "more_instances names 'greedy2'"),
                       ({"local": 0}, r"more_instances\['local'\]=0 is invalid"),
                       ([("local", 2)], r"more_instances=\[\('local', 2\)\] is invalid: allowed a dict")):
        with pytest.raises(ValueError, match=match):
            evaluate(base, names, num_envs=2, num_slots=1, more_instances=bad)
    with pytest.raises(ValueError, match="more_instances is invalid with per-policy trajectories"):
        evaluate(base, names, num_envs=2, num_slots=1, transitions="per_policy", more_instances={"local": 2})
