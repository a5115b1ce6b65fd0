"""The clairvoyant lower bound (dynamics-spec section 7): HiGHS's horizon MIP against an independent
brute force over the same decisions on tiny instances (U, E <= 2, H <= 3), the brute force's
simulator against the env, and the bound against online policies on the same draws."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meqc_jax import MEQCEnv, SystemConfig, clairvoyant
from meqc_jax.baselines import make_policy

GRID = (0.0, 0.5)  # local fractions of an offloaded task that both the MIP and the brute force use
HANDSET = (100.0, 500.0)


def simulate_slot(config, data, t, decisions, cpu_q, qpu_q, battery):
    """One slot under the spec's rules, written from dynamics-spec sections 1-5 alone (NumPy).

    decisions[u]: ("drop",) | ("local",) | (e, mode, phi) with mode "cpu" / "qpu". Returns (cost, cpu_q',
    qpu_q', battery') or None when the decisions break Eq. 13b (without queues)."""
    queued = "queues" in config.dynamics
    U, E = data.c_cpu.shape[1:]
    cost, energy = 0.0, np.zeros(U)
    work = {"cpu": np.zeros(E), "qpu": np.zeros(E)}
    served = []  # (order, u, e, mode, phi) of the tasks that go to a server
    for u in range(U):
        dec = decisions[u]
        if not data.has_task[t, u]:
            continue
        lam = data.lam_d[u]
        if dec[0] == "drop":
            cost += lam * config.drop_penalty
            continue
        phi = 1.0 if dec[0] == "local" else dec[2]
        e_dev = phi * data.e_local[t, u] + (0.0 if dec[0] == "local" else (1 - phi) * data.e_off[t, u, dec[0]])
        if e_dev > battery[u]:  # section 3: an empty battery drops the task
            cost += lam * config.drop_penalty
            continue
        energy[u] = e_dev
        if dec[0] == "local":
            cost += data.c_local[t, u]
        else:
            served.append((data.order[t, u], u) + tuple(dec))
    if not queued:  # Eq. 13b with the planner's winners: at most one QPU task per server
        qpu_at = [e for _, _, e, md, _ in served if md == "qpu"]
        if len(set(qpu_at)) != len(qpu_at):
            return None
        for _, u, e, md, _ in served:
            if md == "cpu" and data.feasible[t, u, e] and e not in qpu_at:
                return None
    for _, u, e, md, phi in sorted(served):  # FIFO in arrival order
        c_off = data.c_qpu[t, u, e] if md == "qpu" else data.c_cpu[t, u, e]
        w_full = data.work_qpu[t, u, e] if md == "qpu" else data.work_cpu[t, u, e]
        wait = 0.0
        if queued:
            wait = (qpu_q if md == "qpu" else cpu_q)[e] + work[md][e]
            if wait > config.max_wait:  # section 2: dropped, no energy, joins no queue
                cost += data.lam_d[u] * config.drop_penalty
                energy[u] = 0.0
                continue
        cost += phi * data.c_local[t, u] + (1 - phi) * c_off + data.lam_d[u] * wait
        work[md][e] += (1 - phi) * w_full
    tau = config.slot_s
    cpu_q = np.maximum(cpu_q + work["cpu"] - tau, 0.0)
    qpu_q = np.maximum(qpu_q + work["qpu"] - tau, 0.0)
    battery = np.minimum(battery - energy + data.harvest[t], config.battery_j)
    return cost, cpu_q, qpu_q, battery


def user_options(config, data, t, u):
    queued = "queues" in config.dynamics
    E = data.c_cpu.shape[2]
    opts = [("drop",), ("local",)]
    for e in range(E):
        feas = bool(data.feasible[t, u, e])
        modes = ("qpu" if feas else "cpu",) if queued else (("cpu", "qpu") if feas else ("cpu",))
        opts += [(e, md, phi) for md in modes for phi in GRID]
    return opts


def brute_force(config, data):
    """The least total cost over every decision sequence (depth-first over slots)."""
    H, U = data.has_task.shape

    def best(t, cpu_q, qpu_q, battery):
        if t == H:
            return 0.0
        out = np.inf
        for joint in itertools.product(*[user_options(config, data, t, u) for u in range(U)]):
            r = simulate_slot(config, data, t, joint, cpu_q, qpu_q, battery)
            if r is not None:
                out = min(out, r[0] + best(t + 1, *r[1:]))
        return out

    return best(0, data.cpu_backlog0, data.qpu_backlog0, data.battery0)


def warmed(config, slots=4, seed=0):
    """An env and a state a few slots into an episode (random offloading builds backlogs)."""
    env = MEQCEnv(config)
    _, state = env.reset(jax.random.key(seed))
    step = jax.jit(env.step)
    U, E = config.num_users, config.num_servers
    for t in range(slots):
        k = jax.random.key(1000 + seed * 100 + t)
        action = (jax.random.randint(k, (U,), 0, E), jnp.zeros(U))
        _, state, *_ = step(jax.random.key(seed * 100 + t), state, action)
    return env, state


CASES = [
    # dynamics, U, E, H, overrides: short slots so that the backlogs bind; handset powers so that batteries
    # do; t1 = 5 ms at level k = 1 makes tasks QPU-feasible (QPU queues, Eq. 13b's winners), k = 3 not
    (("queues",), 2, 2, 3, dict(slot_s=2.0, p_task=0.8)),
    (("queues",), 2, 1, 3, dict(slot_s=20.0)),  # one server: both users share its queue within a slot
    (("queues",), 2, 2, 3, dict(slot_s=2.0, t1_ms=5.0, k_choices=(1,))),
    (("queues", "battery"), 2, 2, 2, dict(slot_s=2.0, p_tx_range_mw=HANDSET, battery_j=4.0, harvest_mean_j=1.0,
                                           t1_ms=5.0, k_choices=(1, 3))),
    (("battery", "drift"), 2, 2, 3, dict(p_tx_range_mw=HANDSET, battery_j=4.0, harvest_mean_j=1.0, t1_ms=5.0,
                                         k_choices=(1,))),
    (("queues", "battery", "drift"), 1, 2, 3, dict(slot_s=1.0, max_wait_s=40.0, p_tx_range_mw=HANDSET,
                                                   battery_j=3.0, t1_ms=5.0, k_choices=(1, 3))),
]


@pytest.mark.parametrize("dyn,U,E,H,overrides", CASES, ids=[f"{'+'.join(c[0])}-{i}" for i, c in enumerate(CASES)])
def test_mip_on_the_grid_equals_brute_force(dyn, U, E, H, overrides):
    cfg = SystemConfig(num_users=U, num_servers=E, slots_per_episode=50, dynamics=dyn, **overrides)
    for seed in range(2):
        env, state = warmed(cfg, seed=seed)
        data = clairvoyant.horizon_data(env, state, jax.random.split(jax.random.key(50 + seed), H))
        exact = brute_force(cfg, data)
        grid = clairvoyant.solve(cfg, data, phi_grid=GRID)
        assert grid.value == pytest.approx(exact, rel=1e-6, abs=1e-6)
        assert grid.per_slot.shape == (H,) and grid.per_slot.sum() == pytest.approx(grid.value)
        free = clairvoyant.solve(cfg, data)  # a continuous phi can only do better
        assert free.value <= grid.value * (1 + 1e-9) + 1e-9


@pytest.mark.parametrize("dyn,U,E,H,overrides", CASES[:3], ids=["+".join(c[0]) for c in CASES[:3]])
def test_the_brute_force_simulator_prices_slots_as_the_env_does(dyn, U, E, H, overrides):
    cfg = SystemConfig(num_users=U, num_servers=E, slots_per_episode=50, dynamics=dyn, **overrides)
    env, state = warmed(cfg)
    keys = jax.random.split(jax.random.key(9), H)
    data = clairvoyant.horizon_data(env, state, keys)
    step = jax.jit(env.step)
    rng = np.random.default_rng(0)
    cpu_q, qpu_q, battery = data.cpu_backlog0, data.qpu_backlog0, data.battery0
    for t in range(H):
        server, phi = rng.integers(0, E, U), rng.choice([0.0, 0.5, 1.0], U)
        decisions = [("local",) if p == 1.0 else (int(e), "qpu" if data.feasible[t, u, e] else "cpu", float(p))
                     for u, (e, p) in enumerate(zip(server, phi))]
        cost, cpu_q, qpu_q, battery = simulate_slot(cfg, data, t, decisions, cpu_q, qpu_q, battery)
        _, state, _, _, info = step(keys[t], state, (jnp.asarray(server, jnp.int32), jnp.asarray(phi)))
        assert float(info["cost"].total) == pytest.approx(cost, rel=2e-5)
        if "queues" in state.carry:
            np.testing.assert_allclose(np.asarray(state.carry["queues"]["cpu_backlog"]) / np.asarray(
                state.scenario.f_edge), cpu_q, rtol=2e-5, atol=1e-6)


def test_no_online_policy_beats_the_bound_on_the_same_draws():
    cfg = SystemConfig(num_users=3, num_servers=2, dynamics=("queues", "battery"), slot_s=10.0,
                       p_tx_range_mw=HANDSET, slots_per_episode=60)
    env, state = warmed(cfg, slots=10)
    H = 6
    keys = jax.random.split(jax.random.key(3), H)
    bound = clairvoyant.solve(cfg, clairvoyant.horizon_data(env, state, keys)).value
    step = jax.jit(env.step)
    for name in ("local", "random_offloading", "greedy", "lyapunov"):
        pol = make_policy(name, cfg)
        act = jax.jit(lambda k, s: pol.act(k, s, None))
        s, total = state, 0.0
        for t in range(H):
            _, s, _, _, info = step(keys[t], s, act(jax.random.key(t), s))
            total += float(info["cost"].total)
        assert bound <= total * (1 + 1e-5), name


def test_unsupported_inputs_fail_in_one_line():
    cfg = SystemConfig(num_users=2, num_servers=2, dynamics=("queues",), slots_per_episode=5)
    env, state = warmed(cfg, slots=2)
    with pytest.raises(ValueError, match="crosses the episode's end") as e:
        clairvoyant.horizon_data(env, state, jax.random.split(jax.random.key(0), 4))
    assert "\n" not in str(e.value)
    par = cfg.replace(latency_model="parallel")
    env, state = warmed(par, slots=1)
    with pytest.raises(ValueError, match="latency_model='parallel' is unsupported"):
        clairvoyant.horizon_data(env, state, jax.random.split(jax.random.key(0), 2))
    data = clairvoyant.horizon_data(*warmed(cfg, slots=1), jax.random.split(jax.random.key(0), 2))
    with pytest.raises(ValueError, match="phi_grid"):
        clairvoyant.solve(cfg, data, phi_grid=(1.0,))


def test_a_time_limit_keeps_a_proven_lower_bound():
    dyn, U, E, H, overrides = CASES[1]
    cfg = SystemConfig(num_users=U, num_servers=E, slots_per_episode=50, dynamics=dyn, **overrides)
    env, state = warmed(cfg)
    data = clairvoyant.horizon_data(env, state, jax.random.split(jax.random.key(50), H))
    exact = clairvoyant.solve(cfg, data)
    assert exact.optimal and exact.lower == exact.value
    rushed = clairvoyant.solve(cfg, data, time_limit=1e-4)
    assert 0 <= rushed.lower <= exact.value * (1 + 1e-9) + 1e-9 <= rushed.value * (1 + 1e-9) + 2e-9
