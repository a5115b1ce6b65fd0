"""MEQCEnv: shapes, observation scaling, step semantics, auto-reset, purity, vectorization."""

import functools
import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np

from meqc_jax import MEQCEnv, SystemConfig, slot_cost
from meqc_jax.env import QCAP_OBS_CLIP

U, E = 4, 3
CFG = SystemConfig(num_users=U, num_servers=E, slots_per_episode=3, arbitration="cheapest")
ENV = MEQCEnv(CFG)


def _action(key):
    ks, kp = jax.random.split(key)
    return jax.random.randint(ks, (U,), 0, E), jax.random.uniform(kp, (U,))


def test_reset_shapes_and_dtypes():
    obs, state = ENV.reset(jax.random.key(0))
    assert obs.shape == (U, ENV.obs_dim) == (U, 6 + 4 * E) and obs.dtype == jnp.float32
    assert state.tasks.g.shape == (U, E) and state.scenario.k.shape == (E,) and int(state.t) == 0
    assert ENV.num_agents == U and ENV.num_servers == E


def test_observation_fields_are_scaled_raw_values():
    cfg = SystemConfig(num_users=16, num_servers=8)
    env = MEQCEnv(cfg)
    obs, state = jax.vmap(env.reset)(jax.random.split(jax.random.key(1), 64))
    assert np.all(np.isfinite(obs)) and obs.min() >= 0.0 and obs.max() <= QCAP_OBS_CLIP
    raw = jax.vmap(env.raw_observation)(state)
    covered = np.zeros(env.obs_dim, bool)
    for f in env.obs_fields:
        block = np.asarray(obs[..., f.start : f.start + f.size], np.float64)
        r = np.asarray(raw[f.name], np.float64).reshape(block.shape)
        if f.transform == "log2":
            r = np.log2(r / cfg.cycles_base)
        expect = r / f.scale
        if f.transform == "linear_clipped":
            expect = np.minimum(expect, QCAP_OBS_CLIP)
        np.testing.assert_allclose(block, expect, rtol=1e-5, atol=1e-7, err_msg=f.name)
        assert block.max() <= QCAP_OBS_CLIP and block.max() > 0.05, f.name  # O(1), not degenerate
        covered[f.start : f.start + f.size] = True
    assert covered.all()
    # per-server blocks are shared by all users; user blocks differ across users
    g = env.obs_fields[[f.name for f in env.obs_fields].index("f_edge")]
    blk = obs[..., g.start : g.start + g.size]
    assert np.all(blk == blk[:, :1, :])


def test_step_prices_the_current_slot_and_advances():
    obs, state = ENV.reset(jax.random.key(0))
    a = _action(jax.random.key(1))
    obs2, state2, reward, done, info = ENV.step(jax.random.key(2), state, a)
    expected = slot_cost(CFG, state.scenario, state.tasks, a[0], a[1], jax.random.key(9))  # cheapest: key-free
    assert reward.shape == (U,) and np.allclose(reward, -float(expected.total))
    assert float(info["cost"].total) == float(expected.total) and int(info["slot"]) == 0
    assert not bool(done) and int(state2.t) == 1
    assert not np.array_equal(state2.tasks.g, state.tasks.g)  # tasks and channels redrawn every slot
    np.testing.assert_array_equal(state2.scenario.k, state.scenario.k)  # scenario kept within an episode


def test_done_and_auto_reset():
    _, state = ENV.reset(jax.random.key(0))
    step = jax.jit(ENV.step)
    key = jax.random.key(5)
    ts, dones, ks = [], [], []
    for _ in range(7):
        key, ka, kstep = jax.random.split(key, 3)
        _, state_next, _, done, info = step(kstep, state, _action(ka))
        ts.append(int(info["slot"]))
        dones.append(bool(done))
        ks.append(np.asarray(state.scenario.p_tx))
        state = state_next
    assert ts == [0, 1, 2, 0, 1, 2, 0] and dones == [False, False, True, False, False, True, False]
    assert np.array_equal(ks[0], ks[2]) and not np.array_equal(ks[2], ks[3])  # new episode, new scenario


def test_equal_keys_are_deterministic():
    env = MEQCEnv(SystemConfig(num_users=U, num_servers=E))  # arrival: the key matters
    _, s = env.reset(jax.random.key(3))
    a = _action(jax.random.key(4))
    out1 = env.step(jax.random.key(6), s, a)
    out2 = env.step(jax.random.key(6), s, a)
    chex.assert_trees_all_equal(out1, out2)


def test_vmap_step_equals_loop_of_single_steps():
    env = MEQCEnv(SystemConfig(num_users=U, num_servers=E))
    n = 5
    keys = jax.random.split(jax.random.key(0), n)
    _, states = jax.vmap(env.reset)(keys)
    acts = jax.vmap(_action)(jax.random.split(jax.random.key(1), n))
    skeys = jax.random.split(jax.random.key(2), n)
    batched = jax.jit(jax.vmap(env.step))(skeys, states, acts)
    single = jax.jit(env.step)
    for i in range(n):
        pick = lambda x: x[i]  # noqa: E731
        one = single(skeys[i], jax.tree.map(pick, states), jax.tree.map(pick, acts))
        chex.assert_trees_all_close(jax.tree.map(pick, batched), one, rtol=1e-6)


def test_batch_step_equals_vmapped_step_bit_for_bit():
    """batch_step draws the reset only where some instance ends its episode; the numbers are the plain
    vmap's in every slot: with and without a carry, with instances ending their episodes at different
    slots, and over two named axes."""
    for dyn in ((), ("queues", "battery", "drift")):
        env = MEQCEnv(SystemConfig(num_users=3, num_servers=2, slots_per_episode=4, dynamics=dyn))
        n = 4
        _, s_plain = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), n))
        s_plain = s_plain.replace(t=jnp.array([0, 0, 1, 1], jnp.int32))  # two end their episodes in slot 2, two in 3
        s_batch = s_plain
        plain, batch = jax.jit(jax.vmap(env.step)), jax.jit(env.batch_step)
        ends = 0
        for i in range(7):  # slots where none, some and all instances end an episode
            keys = jax.random.split(jax.random.key(10 + i), n)
            acts = jax.vmap(lambda k: (jax.random.randint(k, (3,), 0, 2), jax.random.uniform(k, (3,))))(keys)
            out_p = plain(keys, s_plain, acts)
            out_b = batch(keys, s_batch, acts)
            for a, b in zip(jax.tree.leaves(out_p), jax.tree.leaves(out_b)):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            s_plain, s_batch = out_p[1], out_b[1]
            ends += int(np.any(np.asarray(out_p[3])))
        assert 0 < ends < 7
        stack = lambda x: jnp.stack([x, x[::-1]])  # noqa: E731  [P=2, N] over two named axes
        keys = stack(jax.random.split(jax.random.key(99), n))
        acts = (jnp.zeros((2, n, 3), jnp.int32), jnp.full((2, n, 3), 0.5))
        two = jax.tree.map(stack, s_plain)
        nested = jax.jit(jax.vmap(jax.vmap(env.step)))(keys, two, acts)
        for a, b in zip(jax.tree.leaves(nested),
                        jax.tree.leaves(jax.jit(functools.partial(env.batch_step, depth=2))(keys, two, acts))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_batch_step_refuses_a_bad_depth_before_tracing():
    import pytest

    for depth in (0, 9, 1.5, True):
        with pytest.raises(ValueError, match=r"^batch_step: depth=.* allowed an integer in \[1, 8\]"):
            ENV.batch_step(None, None, None, depth=depth)


def test_no_retrace_and_large_batch():
    env = MEQCEnv(SystemConfig(num_users=10, num_servers=10))
    n = 10_000

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(keys, states, acts):
        return jax.vmap(env.step)(keys, states, acts)

    _, states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), n))
    key = jax.random.key(1)
    for _ in range(4):
        key, ka, ks = jax.random.split(key, 3)
        acts = (jax.random.randint(ka, (n, 10), 0, 10), jax.random.uniform(ka, (n, 10)))
        obs, states, reward, done, info = run(jax.random.split(ks, n), states, acts)
    assert obs.shape == (n, 10, 46) and reward.shape == (n, 10)
    assert np.all(np.isfinite(obs)) and np.all(np.isfinite(reward)) and np.all(np.asarray(reward) < 0)


def test_no_key_reuse():
    env = MEQCEnv(SystemConfig(num_users=U, num_servers=E, slots_per_episode=2))
    with jax.debug_key_reuse(True):
        step = jax.jit(env.step)
        key = jax.random.key(0)
        key, k0 = jax.random.split(key)
        _, s = env.reset(k0)
        for _ in range(3):
            key, ka, ks = jax.random.split(key, 3)
            _, s, _, _, _ = step(ks, s, _action(ka))


def test_scan_rollout():
    env = MEQCEnv(SystemConfig(num_users=U, num_servers=E, slots_per_episode=4))

    def body(carry, key):
        state = carry
        ka, ks = jax.random.split(key)
        _, state, reward, done, _ = env.step(ks, state, _action(ka))
        return state, (reward[0], done)

    _, s = env.reset(jax.random.key(0))
    _, (rewards, dones) = jax.jit(lambda s, k: jax.lax.scan(body, s, jax.random.split(k, 10)))(s, jax.random.key(1))
    assert rewards.shape == (10,) and int(dones.sum()) == 2


def test_float64_mode_in_subprocess():
    script = textwrap.dedent("""
        import sys, jax, jax.numpy as jnp, numpy as np
        sys.path.insert(0, "tests")
        from conftest import random_instance, as_numpy
        from reference_numpy import slot_cost_reference
        from meqc_jax import MEQCEnv, SystemConfig, slot_cost
        assert jax.config.jax_enable_x64
        env = MEQCEnv(SystemConfig(num_users=4, num_servers=3))
        obs, s = env.reset(jax.random.key(0))
        assert obs.dtype == jnp.float64 and s.tasks.s.dtype == jnp.float64, (obs.dtype, s.tasks.s.dtype)
        obs, s, r, d, info = jax.jit(env.step)(jax.random.key(1), s, (jnp.zeros(4, int), jnp.full(4, 0.3)))
        assert r.dtype == jnp.float64
        rng = np.random.default_rng(0)
        for opts in [dict(), dict(latency_model="parallel", energy_model="power_time", arbitration="cheapest")]:
            cfg = SystemConfig(arbitration="cheapest", **{k: v for k, v in opts.items() if k != "arbitration"})
            for _ in range(5):
                sc, tk = random_instance(rng, 5, 3, quantum_friendly=True)
                server, phi = rng.integers(0, 3, 5), rng.uniform(size=5)
                b = slot_cost(cfg, sc, tk, jnp.asarray(server), jnp.asarray(phi), jax.random.key(0))
                ref = slot_cost_reference(cfg, as_numpy(sc), as_numpy(tk), server, phi)
                assert b.per_user.dtype == jnp.float64
                np.testing.assert_allclose(np.asarray(b.per_user), ref["per_user"], rtol=1e-9)
                np.testing.assert_array_equal(np.asarray(b.quantum), ref["granted"])
        print("x64 ok")
    """)
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "x64 ok" in res.stdout


def test_env_params_reproduce_the_swept_configuration_exactly():
    import pytest

    base = SystemConfig(num_users=3, num_servers=4, slots_per_episode=3)
    env = MEQCEnv(base)
    assert all(bool(jnp.isnan(x)) for x in jax.tree.leaves(env.params_for(base)))
    sweeps = [base.replace(f_edge_choices_ghz=(25.0,)), base.replace(phys_qubits_range=(12000, 12000)),
              base.replace(t1_ms=100.0), base.replace(preset="delay")]
    stacked = MEQCEnv.stack_params([env.params_for(c) for c in sweeps])
    key = jax.random.key(3)
    run = jax.jit(jax.vmap(lambda p: _rollout_costs(env, key, p)))
    swept = np.asarray(run(stacked))  # [points, slots]: one compile for every sweep value
    for i, cfg in enumerate(sweeps):  # an env built for that configuration, same keys: identical costs
        env_cfg = MEQCEnv(cfg)
        direct = np.asarray(jax.jit(lambda: _rollout_costs(env_cfg, key, None))())
        np.testing.assert_allclose(swept[i], direct, rtol=1e-6)
    assert not np.allclose(swept[0], swept[3])
    # the parameters survive automatic resets (slots_per_episode = 3 < 7 slots rolled out)
    _, st = env.reset(key, env.params_for(sweeps[2]))
    for k in jax.random.split(key, 7):
        _, st, _, _, _ = env.step(k, st, (jnp.zeros(3, int), jnp.zeros(3)))
        np.testing.assert_allclose(np.asarray(st.scenario.t1), 0.1)
    with pytest.raises(ValueError, match="SystemConfig.num_users"):
        env.params_for(base.replace(num_users=4))
    with pytest.raises(ValueError, match="f_edge_choices_ghz"):
        env.params_for(base.replace(f_edge_choices_ghz=(5.0, 30.0)))


def _rollout_costs(env, key, params):
    """Total cost of 7 slots of a fixed action from reset(key, params)."""
    k0, k1 = jax.random.split(key)
    _, state = env.reset(k0, params)
    U = env.num_agents

    def slot(st, k):
        _, st, _, _, info = env.step(k, st, (jnp.arange(U) % env.num_servers, jnp.full(U, 0.3)))
        return st, info["cost"].total

    return jax.lax.scan(slot, state, jax.random.split(k1, 7))[1]


def test_price_equals_the_cost_that_step_reports():
    env = MEQCEnv(SystemConfig(num_users=4, num_servers=3, slots_per_episode=5))
    _, state = env.reset(jax.random.key(0))
    action = (jnp.array([0, 1, 2, 1]), jnp.array([0.0, 0.3, 1.0, 0.5]))
    key = jax.random.key(1)
    priced = env.price(key, state, action)
    _, _, _, _, info = env.step(key, state, action)
    for a, b in zip(jax.tree.leaves(priced), jax.tree.leaves(info["cost"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
