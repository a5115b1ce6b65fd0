"""The dynamics of docs/spec/dynamics.md sections 1-5 (arrivals, queues, battery, drift): each rule checked
by hand on small instances, the carry's bounds at the extreme corners of every new range, the
scenarios' registrations, and the paper's model untouched."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meqc_jax import MEQCEnv, SlotConditions, SystemConfig, dynamics, scenarios, slot_cost
from meqc_jax.cost import classical_terms, option_loads
from meqc_jax.dynamics.queues import backlog_bound_s, fifo_ahead
from meqc_jax.evaluate import evaluate
from meqc_jax.slot_solver import lyapunov_function, lyapunov_weights

DROP_QUEUE, DROP_BATTERY = dynamics.get("queues").drop_code, dynamics.get("battery").drop_code

U3 = dict(num_users=3, num_servers=2, slots_per_episode=20)


def _slot(config, seed=0):
    env = MEQCEnv(config)
    _, state = env.reset(jax.random.key(seed))
    return env, state


def test_fifo_ahead_sums_the_earlier_arrivals_at_the_same_server_both_ways():
    rng = np.random.default_rng(0)
    for U in (5, 80):  # the pairwise form (U <= 64) and the sorted one
        server = jnp.asarray(rng.integers(0, 4, U))
        prio = jnp.asarray(rng.random(U))
        work = jnp.asarray(rng.random(U))
        want = [sum(float(work[v]) for v in range(U) if server[v] == server[u] and prio[v] < prio[u]) for u in range(U)]
        np.testing.assert_allclose(np.asarray(fifo_ahead(server, prio, work)), want, rtol=1e-5, atol=1e-6)


def test_cpu_queue_waits_in_arrival_order_and_updates_by_the_spec():
    cfg = SystemConfig(**U3, dynamics=("queues",), arbitration="cheapest", slot_s=5.0, t1_ms=1e-6)  # no QPU
    env, state = _slot(cfg)
    backlog = jnp.array([3e10, 0.0])
    state = state.replace(carry={**state.carry, "queues": {"cpu_backlog": backlog, "qpu_backlog": jnp.zeros(2)}})
    action = (jnp.zeros(3, jnp.int32), jnp.zeros(3))  # all to server 0, whole tasks
    _, nxt, _, _, info = env.step(jax.random.key(1), state, action)
    c = info["cost"]
    sc, tk = state.scenario, state.tasks
    cycles = np.asarray(tk.s * tk.n)
    f0 = float(sc.f_edge[0])
    d_l, _, d_o, _, d_e, _ = classical_terms(cfg.si, tk.s, tk.n, jnp.zeros(3), sc.f_local, sc.p_tx, tk.g[:, 0], sc.f_edge[0])
    ahead = np.concatenate([[0.0], np.cumsum(cycles)[:-1]])  # `cheapest`: user index order
    wait = (3e10 + ahead) / f0
    admitted = wait <= cfg.max_wait
    lat = np.where(admitted, np.asarray(d_o + d_e) + wait, cfg.drop_penalty)
    np.testing.assert_allclose(np.asarray(c.latency), lat, rtol=1e-5)
    assert np.all(np.asarray(c.dropped) == ~admitted)
    served = np.where(admitted, cycles, 0.0).sum()
    want = max(3e10 + served - f0 * cfg.slot_s, 0.0)
    np.testing.assert_allclose(float(nxt.carry["queues"]["cpu_backlog"][0]), want, rtol=1e-5)
    assert float(nxt.carry["queues"]["cpu_backlog"][1]) == 0.0


def test_a_wait_beyond_max_wait_drops_that_task_and_every_later_one_at_that_queue():
    cfg = SystemConfig(**U3, dynamics=("queues",), arbitration="cheapest", t1_ms=1e-6, max_wait_s=1.0)
    env, state = _slot(cfg)
    f0 = float(state.scenario.f_edge[0])
    cycles = np.asarray(state.tasks.s * state.tasks.n)
    # user 0's work alone pushes the wait past 1 s: user 0 is served, users 1 and 2 are dropped
    backlog = jnp.array([max(0.5 * f0 - 0.0, 0.0), 0.0])
    state = state.replace(carry={**state.carry, "queues": {"cpu_backlog": backlog, "qpu_backlog": jnp.zeros(2)}})
    c = env.price(jax.random.key(1), state, (jnp.zeros(3, jnp.int32), jnp.zeros(3)))
    expect = (0.5 + np.concatenate([[0.0], np.cumsum(cycles)[:-1]]) / f0) > 1.0
    assert expect.tolist() == [False, True, True]
    assert np.asarray(c.dropped).tolist() == expect.tolist()
    assert np.all(np.asarray(c.drop_reason)[expect] == DROP_QUEUE)
    lam_d = float(state.scenario.lam_d[0])
    np.testing.assert_allclose(np.asarray(c.per_user)[expect], lam_d * cfg.drop_penalty, rtol=1e-6)
    assert np.all(np.asarray(c.energy)[expect] == 0.0) and np.all(np.asarray(c.cpu_cycles)[expect] == 0.0)


def test_every_feasible_requester_runs_on_the_qpu_queue():
    cfg = SystemConfig(**U3, dynamics=("queues",), t1_ms=5.0, k_choices=(1,), arbitration="cheapest")
    env, state = _slot(cfg, seed=2)
    c = env.price(jax.random.key(1), state, (jnp.zeros(3, jnp.int32), jnp.zeros(3)))
    assert np.asarray(c.feasible)[:, 0].all() and np.asarray(c.quantum).all()  # no one falls back to the CPUs
    paper = cfg.replace(dynamics=())
    alone = []  # the paper's latency of each user offloading alone: granted the QPU, d_O + d_Q
    for u in range(3):
        phi = jnp.ones(3).at[u].set(0.0)
        b = slot_cost(paper, state.scenario, state.tasks, jnp.zeros(3, jnp.int32), phi, None)
        assert bool(b.quantum[u])
        alone.append(float(b.latency[u]))
    d_q = np.asarray(c.qpu_seconds)
    ahead = np.concatenate([[0.0], np.cumsum(d_q)[:-1]])  # `cheapest`: the user index is the arrival order
    np.testing.assert_allclose(np.asarray(c.latency), np.asarray(alone) + ahead, rtol=1e-6)


def test_battery_drops_a_task_it_cannot_afford_and_charges_with_the_harvest():
    cfg = SystemConfig(**U3, dynamics=("battery",), p_tx_range_mw=(100.0, 500.0), battery_j=5.0, harvest_mean_j=1.0)
    env, state = _slot(cfg)
    b0 = np.asarray(state.carry["battery"]["battery"])
    assert np.all((b0 >= 2.5) & (b0 <= 5.0))
    # user 0 with an empty battery, the others full
    state = state.replace(carry={**state.carry, "battery": {"battery": jnp.array([0.0, 5.0, 5.0]),
                                                            "harvest": jnp.zeros(3)}})
    action = (jnp.zeros(3, jnp.int32), jnp.full(3, 0.5))
    _, nxt, _, _, info = env.step(jax.random.key(1), state, action)
    c = info["cost"]
    e_dev = np.asarray(c.device_energy)
    assert bool(c.dropped[0]) and int(c.drop_reason[0]) == DROP_BATTERY and e_dev[0] == 0.0
    h = np.asarray(nxt.carry["battery"]["harvest"])
    assert np.all((h >= 0) & (h <= 2.0))
    want = np.minimum(np.array([0.0, 5.0, 5.0]) - e_dev + h, 5.0)
    np.testing.assert_allclose(np.asarray(nxt.carry["battery"]["battery"]), want, rtol=1e-6)
    need = np.asarray(option_loads(cfg, state.scenario, state.tasks, jnp.full(3, 0.5)).device_energy)[:, 0]
    np.testing.assert_array_equal(np.asarray(c.dropped), need > np.array([0.0, 5.0, 5.0]))


def test_drift_follows_its_ar1_and_is_observed_one_slot_late():
    cfg = SystemConfig(num_users=2, num_servers=64, slots_per_episode=400, dynamics=("drift",), drift_rho=0.9,
                       drift_sigma=0.7)
    env = MEQCEnv(cfg)
    _, state = env.reset(jax.random.key(0))
    step = jax.jit(env.step)
    hold = (jnp.zeros(2, jnp.int32), jnp.ones(2))
    logs, prev_slot = [], None
    i_obs = [f for f in env.obs_fields if f.name == "last_t1"][0]
    for t in range(300):
        slot_t1 = np.asarray(state.tasks.t1_slot)
        obs, state, *_ = step(jax.random.key(t), state, hold)
        # the next observation shows this slot's lifetime (one slot late), log2 / scale
        seen = np.asarray(obs[0, i_obs.start:i_obs.start + i_obs.size]) * i_obs.scale
        np.testing.assert_allclose(seen, np.log2(slot_t1 / cfg.si.t1), rtol=1e-4, atol=1e-4)
        logs.append(np.log(np.asarray(state.carry["drift"]["t1"]) / cfg.si.t1))
    x = np.stack(logs[100:])  # [T, E] after the burn-in
    assert np.std(x) == pytest.approx(0.7, rel=0.15)
    r = np.mean(x[1:] * x[:-1]) / np.mean(x * x)
    assert r == pytest.approx(0.9, abs=0.05)


def test_users_without_a_task_cost_nothing_and_their_actions_are_counted():
    cfg = SystemConfig(**U3, dynamics=("queues",), p_task=0.5)
    env = MEQCEnv(cfg)
    _, states = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), 2000))
    has = np.asarray(states.carry["arrivals"]["has_task"])
    assert has.mean() == pytest.approx(0.5, abs=0.03)
    c = jax.vmap(lambda s: env.price(jax.random.key(1), s, (jnp.zeros(3, jnp.int32), jnp.zeros(3))))(states)
    assert np.all(np.asarray(c.per_user)[~has] == 0) and np.all(np.asarray(c.energy)[~has] == 0)
    np.testing.assert_array_equal(np.asarray(c.ignored), (~has).sum(axis=1))
    i = [f for f in env.obs_fields if f.name == "has_task"][0].start
    np.testing.assert_array_equal(np.asarray(jax.vmap(env.observe)(states))[..., i], has.astype(float))


def test_new_constants_fail_in_one_line_naming_the_field():
    for kw, field in ((dict(p_task=1.5), "p_task"), (dict(slot_s=0.0), "slot_s"), (dict(drift_rho=1.0), "drift_rho"),
                      (dict(max_wait_s=10.0, drop_penalty_s=5.0), "drop_penalty_s"),
                      (dict(battery_j=-1.0), "battery_j"), (dict(harvest_mean_j=math.nan), "harvest_mean_j"),
                      (dict(drift_sigma=9.0), "drift_sigma")):
        with pytest.raises(ValueError, match=f"SystemConfig.{field}=") as e:
            SystemConfig(**kw)
        assert "\n" not in str(e.value)


def test_the_paper_model_is_unchanged_by_the_dynamics_code():
    cfg = SystemConfig(**U3)
    env, state = _slot(cfg)
    a = (jnp.array([0, 1, 0], jnp.int32), jnp.array([0.0, 0.3, 1.0]))
    plain = slot_cost(cfg, state.scenario, state.tasks, *a, jax.random.key(3))
    empty = slot_cost(cfg, state.scenario, state.tasks, *a, jax.random.key(3), conditions=SlotConditions())
    for name in ("total", "per_user", "latency", "energy", "quantum"):
        np.testing.assert_array_equal(np.asarray(getattr(plain, name)), np.asarray(getattr(empty, name)))
    assert not np.asarray(plain.dropped).any() and np.asarray(plain.has_task).all() and int(plain.ignored) == 0


EXTREMES = {  # the corners of every new range (slot length, capacity, harvest, drift)
    "MEQC-Queues-v0": [dict(slot_s=1.0), dict(slot_s=1e4)],
    "MEQC-Battery-v0": [dict(battery_j=0.1, harvest_mean_j=0.0), dict(battery_j=1e6, harvest_mean_j=1e5)],
    "MEQC-Drift-v0": [dict(drift_rho=0.0, drift_sigma=5.0), dict(drift_rho=0.999, drift_sigma=0.0)],
    "MEQC-Sustainable-v0": [dict(slot_s=1.0, battery_j=0.1, harvest_mean_j=0.0, drift_sigma=5.0, drift_rho=0.0),
                            dict(slot_s=1e4, battery_j=1e6, harvest_mean_j=1e5, drift_rho=0.999)],
}


@pytest.mark.parametrize("name", list(EXTREMES))
def test_extreme_corners_stay_finite_and_bounded(name):
    """4 x 10^4 slot-instances per corner and policy (the 10^6 run is benchmarks/reliability_dynamics.py)."""
    for overrides in EXTREMES[name]:
        cfg = scenarios.scenario_config(name, num_users=4, num_servers=3, slots_per_episode=50, **overrides)
        res = evaluate(cfg, ["local", "random_offloading"], num_envs=400, num_slots=100, seed=1, chunk=100)
        for pol, per in res.per_slot.items():
            for metric, v in per.items():
                assert np.all(np.isfinite(v)), (name, overrides, pol, metric)
            if "cpu_wait_s" in per:  # backlogs stay below the admitted wait plus one slot's work
                assert per["cpu_wait_s"].max() <= backlog_bound_s(cfg) * (1 + 1e-5), (name, pol)
            if "battery_j" in per:
                assert per["battery_j"].min() >= 0 and per["battery_j"].max() <= cfg.battery_j * (1 + 1e-6)


def test_dynamic_scenarios_are_registered_with_their_dynamics():
    want = {"MEQC-Queues-v0": ("queues",), "MEQC-Battery-v0": ("battery",), "MEQC-Drift-v0": ("drift",),
            "MEQC-Sustainable-v0": ("queues", "battery", "drift")}
    for name, dyn in want.items():
        cfg = scenarios.scenario_config(name)
        assert cfg.dynamics == dyn and cfg.num_users == 10 and cfg.num_servers == 10
    assert scenarios.scenario_config("MEQC-Battery-v0").p_tx_range_mw == (100.0, 500.0)  # handset powers


def test_every_carry_resets_on_the_episode_boundary():
    cfg = scenarios.scenario_config("MEQC-Sustainable-v0", num_users=3, num_servers=2, slots_per_episode=5, slot_s=1.0)
    env = MEQCEnv(cfg)
    _, state = env.reset(jax.random.key(0))
    step = jax.jit(env.step)
    offload = (jnp.zeros(3, jnp.int32), jnp.zeros(3))
    for t in range(4):
        _, state, _, done, _ = step(jax.random.key(t), state, offload)
        assert not bool(done)
    assert float(state.carry["queues"]["cpu_backlog"].sum()) > 0  # the backlog built up
    _, fresh, _, done, _ = step(jax.random.key(99), state, offload)
    assert bool(done) and int(fresh.t) == 0
    np.testing.assert_array_equal(np.asarray(fresh.carry["queues"]["cpu_backlog"]), 0.0)
    np.testing.assert_array_equal(np.asarray(fresh.carry["queues"]["qpu_backlog"]), 0.0)
    np.testing.assert_array_equal(np.asarray(fresh.carry["drift"]["t1"]), np.asarray(fresh.scenario.t1))
    b = np.asarray(fresh.carry["battery"]["battery"])
    assert np.all((b >= 0.5 * cfg.battery_j) & (b <= cfg.battery_j)) and np.all(np.asarray(fresh.carry["battery"]["harvest"]) == 0)


def test_the_lyapunov_function_is_the_quadratic_whose_gradients_are_the_drift_plus_penalty_weights():
    cfg = scenarios.scenario_config("MEQC-Sustainable-v0", num_users=3, num_servers=2, slots_per_episode=8, slot_s=1.0)
    env = MEQCEnv(cfg)
    _, state = env.reset(jax.random.key(0))
    step = jax.jit(env.step)
    for t in range(3):  # every task to server 0 builds a backlog and spends charge
        _, state, _, _, _ = step(jax.random.key(t + 1), state, (jnp.zeros(3, jnp.int32), jnp.zeros(3)))
    q, b, f = state.carry["queues"], state.carry["battery"]["battery"], state.scenario.f_edge
    assert float(q["cpu_backlog"].sum()) > 0
    theta = 0.7 * cfg.battery_j
    want = 0.5 * (np.sum((np.asarray(q["cpu_backlog"]) / np.asarray(f)) ** 2) + np.sum(np.asarray(q["qpu_backlog"]) ** 2)
                  + np.sum((np.asarray(b) - theta) ** 2))
    np.testing.assert_allclose(float(lyapunov_function(state, theta)), want, rtol=1e-5)
    # d L / d wait and d L / d charge are the weights that drift-plus-penalty puts on added work and energy
    def with_carry(cpu_wait, qpu_wait, battery):
        carry = dict(state.carry, queues=dict(q, cpu_backlog=cpu_wait * f, qpu_backlog=qpu_wait),
                     battery=dict(state.carry["battery"], battery=battery))
        return lyapunov_function(state.replace(carry=carry), theta)

    g_cpu, g_qpu, g_bat = jax.grad(with_carry, argnums=(0, 1, 2))(q["cpu_backlog"] / f, q["qpu_backlog"], b)
    w = lyapunov_weights(cfg, state, 1.0, theta)
    for got, weight in ((g_cpu, w.cpu_queue), (g_qpu, w.qpu_queue), (g_bat, w.battery)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(weight), rtol=1e-5, atol=1e-6)
