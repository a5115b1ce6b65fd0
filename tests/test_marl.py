"""MEQCMultiAgentEnv: JaxMARL's dict interface over MEQCEnv, checked against the native env step by step."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meqc_jax import MEQCEnv, SystemConfig, marl
from meqc_jax.marl import MEQCMultiAgentEnv

U, E, T = 3, 2, 4
CFG = SystemConfig(num_users=U, num_servers=E, slots_per_episode=T)
ENV = MEQCMultiAgentEnv(CFG)
NATIVE = MEQCEnv(CFG)  # a separate instance: the wrapper must agree with the env, not with itself
STEPS = 2 * T + 2  # crosses two episode boundaries
AGENTS = [f"agent_{i}" for i in range(U)]


def _random_joint(key):
    """A joint action with some entries out of range, so that the clip counts are compared too."""
    ks, kp = jax.random.split(key)
    return jax.random.randint(ks, (U,), -1, E + 1), jax.random.uniform(kp, (U,), minval=-0.25, maxval=1.25)


@jax.jit
def _rollouts(key):
    """Same keys and actions through the wrapper (tuple and dict actions) and the native env; one compile."""
    k_reset, k_steps = jax.random.split(key)
    obs_w, state_w = ENV.reset(k_reset)
    obs_n, state_n = NATIVE.reset(k_reset)

    def body(carry, k):
        s_tuple, s_dict, s_native = carry
        k_act, k_env = jax.random.split(k)
        server, phi = _random_joint(k_act)
        as_tuples = {a: (server[i], phi[i]) for i, a in enumerate(AGENTS)}
        as_dicts = {a: {"server": server[i], "phi": phi[i]} for i, a in enumerate(AGENTS)}
        *out_tuple, s_tuple = _reorder(ENV.step(k_env, s_tuple, as_tuples))
        *out_dict, s_dict = _reorder(ENV.step(k_env, s_dict, as_dicts))
        o, s_native, r, d, info = NATIVE.step(k_env, s_native, (server, phi))
        return (s_tuple, s_dict, s_native), (out_tuple, out_dict, (o, r, d, info["cost"], s_native.t))

    keys = jax.random.split(k_steps, STEPS)
    _, (out_tuple, out_dict, out_native) = jax.lax.scan(body, (state_w, state_w, state_n), keys)
    return (obs_w, obs_n), out_tuple, out_dict, out_native


def _reorder(step_out):
    obs, state, rewards, dones, infos = step_out
    return obs, rewards, dones, infos, state.t, state


def test_agents_and_sizes():
    assert ENV.num_agents == U and ENV.agents == AGENTS
    assert ENV.num_servers == E and ENV.obs_dim == NATIVE.obs_dim == 6 + 4 * E
    assert ENV.agent_classes == {"device": AGENTS}
    assert set(ENV.observation_spaces) == set(ENV.action_spaces) == set(AGENTS)


def test_rollout_matches_native_env():
    (obs_w, obs_n), out_tuple, out_dict, (obs, reward, done, cost, t) = _rollouts(jax.random.key(0))
    assert set(obs_w) == set(AGENTS)  # (jit returns dicts with sorted keys, so compare sets)
    for i, a in enumerate(AGENTS):
        np.testing.assert_array_equal(obs_w[a], obs_n[i])
    done = np.asarray(done)
    # the rollout really crosses episode boundaries, and really clips some actions
    np.testing.assert_array_equal(done, (np.arange(STEPS) + 1) % T == 0)
    assert int(cost.clipped_server.sum()) > 0 and int(cost.clipped_phi.sum()) > 0
    for w_obs, w_rew, w_done, w_info, w_t in (out_tuple, out_dict):
        assert set(w_obs) == set(w_rew) == set(AGENTS) and set(w_done) == set(AGENTS) | {"__all__"}
        np.testing.assert_array_equal(w_done["__all__"], done)
        np.testing.assert_array_equal(w_t, t)
        for i, a in enumerate(AGENTS):
            np.testing.assert_array_equal(w_obs[a], obs[:, i])
            np.testing.assert_array_equal(w_rew[a], reward[:, i])
            np.testing.assert_array_equal(w_done[a], done)
            np.testing.assert_array_equal(w_info["total_cost"][:, i], cost.total)
            np.testing.assert_array_equal(w_info["clipped_server"][:, i], cost.clipped_server)
            np.testing.assert_array_equal(w_info["clipped_phi"][:, i], cost.clipped_phi)
        np.testing.assert_array_equal(w_info["cost"], cost.per_user)
        np.testing.assert_array_equal(w_info["server"], cost.server)
        np.testing.assert_array_equal(w_info["phi"], cost.phi)
        np.testing.assert_array_equal(-w_rew["agent_0"], w_info["total_cost"][:, 0])
        assert all(v.shape[:2] == (STEPS, U) for v in w_info.values())  # JaxMARL: info leaves per agent


@jax.jit
def _vmapped(keys):
    def one(key):
        k_reset, k_act, k_step = jax.random.split(key, 3)
        obs, state = ENV.reset(k_reset)
        actions = {a: ENV.action_space(a).sample(k) for a, k in zip(AGENTS, jax.random.split(k_act, U))}
        step_w = ENV.step(k_step, state, actions)
        _, state_n = NATIVE.reset(k_reset)
        step_n = NATIVE.step(k_step, state_n, ENV.joint_action(actions))
        return obs, actions, step_w, step_n

    return jax.vmap(one)(keys)


def test_vmap_over_instances_and_sampled_actions():
    n = 5
    obs, actions, (obs_w, _, rew_w, done_w, info_w), (obs_n, _, rew_n, done_n, info_n) = _vmapped(
        jax.random.split(jax.random.key(1), n))
    assert obs["agent_0"].shape == (n, ENV.obs_dim) and done_w["__all__"].shape == (n,)
    for i, a in enumerate(AGENTS):
        server, phi = actions[a]
        assert server.dtype == jnp.int32 and server.shape == phi.shape == (n,)
        assert np.all(jax.vmap(ENV.action_space(a).contains)(actions[a]))
        assert np.all(jax.vmap(ENV.observation_space(a).contains)(obs[a]))
        np.testing.assert_array_equal(obs_w[a], obs_n[:, i])
        np.testing.assert_array_equal(rew_w[a], rew_n[:, i])
    np.testing.assert_array_equal(done_w["__all__"], done_n)
    np.testing.assert_array_equal(info_w["total_cost"][:, 0], info_n["cost"].total)
    # sampled actions are in range: nothing clipped, and the instances differ
    assert int(info_n["cost"].clipped_server.sum()) == 0 and int(info_n["cost"].clipped_phi.sum()) == 0
    assert len(np.unique(np.asarray(info_n["cost"].total))) == n


def test_spaces():
    a = AGENTS[0]
    obs_space, act_space = ENV.observation_space(a), ENV.action_space(a)
    assert obs_space.shape == (ENV.obs_dim,) and obs_space.dtype == jnp.float32
    assert isinstance(act_space, marl.Tuple) and act_space.num_spaces == 2
    discrete, box = act_space.spaces
    assert isinstance(discrete, marl.Discrete) and discrete.n == E and isinstance(box, marl.Box) and box.shape == ()
    assert bool(act_space.contains((jnp.int32(E - 1), jnp.float32(1.0))))
    assert not bool(act_space.contains((jnp.int32(E), jnp.float32(0.5))))
    assert not bool(act_space.contains((jnp.int32(0), jnp.float32(1.5))))
    avail = ENV.get_avail_actions(None)
    assert set(avail) == set(AGENTS) and avail[a].shape == (E,) and bool(avail[a].all())


def test_local_spaces_sample_members():
    """The stand-in spaces, whichever backend is active."""
    space = marl.LocalDict({"server": marl.LocalDiscrete(E), "phi": marl.LocalBox(0.0, 1.0, ())})
    sample = space.sample(jax.random.key(2))
    assert set(sample) == {"server", "phi"} and bool(space.contains(sample))
    assert not bool(space.contains({"server": -1, "phi": 0.5}))
    pair = marl.LocalTuple([marl.LocalDiscrete(E), marl.LocalBox(0.0, 1.0, (3,))])
    server, phi = pair.sample(jax.random.key(3))
    assert phi.shape == (3,) and bool(pair.contains((server, phi))) and not bool(pair.contains((server, phi + 2)))


def test_reset_state_replaces_the_automatic_reset():
    k0, k1, k2 = jax.random.split(jax.random.key(4), 3)
    _, last = ENV.reset(k0)
    last = last.replace(t=jnp.int32(T - 1))
    obs_fixed, fixed = ENV.reset(k1)
    actions = ENV.agent_actions(jnp.zeros(U, jnp.int32), jnp.full(U, 0.5))
    obs, state, _, dones, _ = ENV.step(k2, last, actions, fixed)
    assert bool(dones["__all__"])
    jax.tree.map(np.testing.assert_array_equal, state, fixed)
    # observed inside another jit than `reset`'s: XLA may fuse the scaling differently (1 ulp)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), obs, obs_fixed)


def test_is_a_jaxmarl_multi_agent_env():
    # jaxmarl is in the `test` extra: where it is installed, the wrapper must be built on it
    multi_agent_env = pytest.importorskip("jaxmarl.environments.multi_agent_env")
    if os.environ.get("MEQC_USE_JAXMARL") == "0":  # the documented opt-out
        assert not marl.JAXMARL_AVAILABLE and not isinstance(ENV, multi_agent_env.MultiAgentEnv)
        return
    assert marl.JAXMARL_AVAILABLE, marl.JAXMARL_IMPORT_ERROR
    assert isinstance(ENV, multi_agent_env.MultiAgentEnv)
    from jaxmarl.wrappers.baselines import LogWrapper

    env = LogWrapper(ENV)
    key = jax.random.key(5)
    _, state = env.reset(key)
    for k in jax.random.split(key, T):
        _, state, _, dones, infos = env.step(k, state, ENV.agent_actions(jnp.zeros(U, jnp.int32), jnp.ones(U)))
    assert bool(dones["__all__"]) and infos["returned_episode"].shape == (U,)
    np.testing.assert_allclose(infos["returned_episode_lengths"], T)
