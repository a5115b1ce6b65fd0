"""The DROO learner over joint modes (`meqc_jax.learners.droo`, issue 14): its search, its contract
with the environment, its training through the host loop, and its refusals.

References: the env's own pricing (`MEQCEnv.price`, i.e. `slot_cost`) of the action the search
returns; the exact optimum (`joint.dp_optimum`), which no policy may beat; the argmax joint mode,
which the search may never lose to.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meqc_jax import MEQCEnv, joint, scenarios
from meqc_jax.cost import num_modes
from meqc_jax.evaluate import evaluate
from meqc_jax.learners import make_learner
from meqc_jax.learners.droo import DROOConfig
from meqc_jax.loop import fit


def _system(U=3, E=2, T=6):
    return scenarios.scenario_config("MEQC-Contended-v0", num_users=U, num_servers=E, slots_per_episode=T)


@pytest.mark.parametrize("swaps", [False, True])
def test_candidates_are_the_argmax_samples_and_one_device_changes(swaps):
    learner = make_learner("droo", _system(U=4, E=2), DROOConfig(candidates=5, swaps=swaps))
    k = num_modes(2)
    logits = jax.random.normal(jax.random.key(0), (4, k))
    c = np.asarray(learner.candidates(logits, jax.random.key(1)))
    assert c.shape == (5 + (4 * k if swaps else 0), 4)
    assert c.min() >= 0 and c.max() < k
    np.testing.assert_array_equal(c[0], np.argmax(np.asarray(logits), -1))
    if swaps:
        one = c[5:].reshape(4, k, 4)
        for u in range(4):
            np.testing.assert_array_equal(one[u, :, u], np.arange(k))
            others = np.delete(one[u], u, axis=1)
            np.testing.assert_array_equal(others, np.broadcast_to(np.delete(c[0], u), others.shape))


def test_search_is_priced_as_the_env_prices_its_action_and_never_loses_to_its_argmax():
    system = _system(U=4, E=2)
    learner = make_learner("droo", system, DROOConfig(candidates=16, swaps=True))
    env = MEQCEnv(system)
    keys = jax.random.split(jax.random.key(3), 32)
    obs, states = jax.vmap(env.reset)(keys)
    params = learner.init(jax.random.key(4)).params
    _, out, played, top = jax.vmap(lambda k, s, o: learner.search(params, k, s, o))(keys, states, obs)
    replay = jax.vmap(lambda k, s, a: env.price(k, s, a).total)(keys, states, (out.server, out.phi, out.quantum))
    np.testing.assert_allclose(np.asarray(replay), np.asarray(played), rtol=2e-6, atol=1e-5)
    assert np.all(np.asarray(played) <= np.asarray(top) + 1e-5)
    best = jax.vmap(lambda s: joint.dp_optimum(system, s).value)(states)
    assert np.all(np.asarray(played) >= np.asarray(best) - 1e-4 * np.abs(np.asarray(best)))


def test_training_through_the_host_loop_learns_and_evaluates():
    system = _system(U=3, E=2, T=16)
    learner = make_learner("droo", system, DROOConfig(epochs=4, num_envs=32, candidates=4))
    state, metrics = fit(learner, [0, 1], chunk=2)
    assert learner.epochs_done(state) == 4
    for name in ("cost", "argmax_cost", "loss", "nonfinite"):
        v = np.asarray(getattr(metrics, name))
        assert v.shape == (2, 4) and np.all(np.isfinite(v)), name
    assert np.all(np.asarray(metrics.nonfinite) == 0)
    assert np.all(np.asarray(metrics.cost) <= np.asarray(metrics.argmax_cost) + 1e-4)
    # the argmax joint mode has learned: on the same 64 slots it costs less than the untrained one's
    env = MEQCEnv(system)
    keys = jax.random.split(jax.random.key(11), 64)
    obs, states = jax.vmap(env.reset)(keys)

    @jax.jit  # one program for the three parameter sets below
    def mean_argmax_cost(params):
        return jnp.mean(jax.vmap(lambda k, s, o: learner.search(params, k, s, o)[3])(keys, states, obs))

    def argmax_cost(params):
        return float(mean_argmax_cost(params))

    untrained = argmax_cost(learner.init(jax.random.key(0)).params)
    for run in (0, 1):
        assert argmax_cost(learner.acting_params(state, run)) < 0.97 * untrained
    res = evaluate(system, [learner.policy(learner.acting_params(state, 0)), "greedy", "joint_optimum"],
                   num_envs=16, num_slots=2, seed=9)
    s = res.summary
    assert s["droo"]["mean_cost"] >= s["joint_optimum"]["mean_cost"] * (1 - 1e-5)
    sweep = learner.sweep_policy(learner.acting_params(state), "droo")
    two = evaluate(system, [sweep], num_envs=16, num_slots=2, seed=9,
                   env_params=MEQCEnv.stack_params([MEQCEnv(system).default_params()] * 2))
    assert np.isclose(two.points[0]["droo"]["mean_cost"], s["droo"]["mean_cost"], rtol=1e-5)


def test_a_chunk_traces_once_per_shape():
    system = _system(U=2, E=2, T=3)
    learner = make_learner("droo", system, DROOConfig(epochs=2, num_envs=4, candidates=2, hidden=(8,)))
    state = learner.init(jax.random.key(0))
    program = jax.jit(chex.assert_max_traces(learner.train_chunk, n=1), static_argnums=1)
    state, _ = program(state, 1)
    state, m = program(state, 1)
    assert int(state.epoch) == 2 and np.isfinite(float(m.cost[0]))


@pytest.mark.parametrize("field,value", [("candidates", 0), ("epochs", 0), ("lr", -1.0), ("hidden", (0,)),
                                         ("swaps", "yes")])
def test_bad_settings_fail_in_one_line_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"DROOConfig\.{field}=") as e:
        DROOConfig(**{field: value})
    assert "\n" not in str(e.value)


def test_refuses_models_where_joint_modes_do_not_price_a_slot():
    paper = scenarios.scenario_config("MEQC-Paper-v0", num_users=3, num_servers=2)
    with pytest.raises(ValueError, match="DROO: SystemConfig.dynamics=") as e:
        make_learner("droo", paper, DROOConfig())
    assert "\n" not in str(e.value)
    queued = scenarios.scenario_config("MEQC-Contended-Queues-v0", num_users=3, num_servers=2)
    with pytest.raises(ValueError, match="DROO: SystemConfig.dynamics="):
        make_learner("droo", queued, DROOConfig())
