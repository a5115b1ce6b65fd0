"""The value-priced drift-plus-penalty learner (`meqc_jax.learners.priced`, issue 34): it starts exactly at the
best drift-plus-penalty of its grid, learns only the prices the scenario has, is greedy where nothing carries a
price, trains through the host loop and `meqc train`, and refuses what it cannot price.

References, written from dynamics-spec section 7 and not from the learner: `baselines.lyapunov_policy` (the
drift-plus-penalty rule) and `greedy`, stepped slot by slot in Python on the env; the start's grid choice is the
argmin of those plain rollouts' costs on the learner's own training episodes.
"""

import json
import os

import jax
import numpy as np
import pytest

from meqc_jax import MEQCEnv, scenarios
from meqc_jax.baselines import lyapunov_policy, make_policy
from meqc_jax.cli import main
from meqc_jax.config import SystemConfig
from meqc_jax.learners import make_learner
from meqc_jax.learners.priced import BATTERY, CPU, LOG_V, QPU, THETA, PricedConfig
from meqc_jax.loop import fit

SMALL = PricedConfig(epochs=2, num_envs=2, population=2, v_grid=(0.3, 3.0), theta_grid=(0.5, 1.0))


def _system(scenario="MEQC-Sustainable-v0", U=3, E=2, T=12):
    return scenarios.scenario_config(scenario, num_users=U, num_servers=E, slots_per_episode=T)


def _rollout(env, policy, key, env_params=None):
    """One episode of `policy` from reset, in Python, keyed as the learner keys its episodes; (costs, actions)."""
    k_reset, k_run = jax.random.split(key)
    _, s = env.reset(k_reset, env_params)
    costs, actions = [], []
    # one jitted slot (the policy's act, then the env's step), called slot by slot from Python: op-by-op dispatch of
    # the solver made this file's start test take 270 s
    step = jax.jit(lambda k, s: (lambda a: (a, env.step(k, s, a)))(policy.act(None, s, None)))
    for k_env in jax.random.split(k_run, env.config.slots_per_episode):
        a, (_, s, _, _, info) = step(k_env, s)
        costs.append(float(info["cost"].total))
        actions.append(np.concatenate([np.asarray(x, float) for x in a]))
    return np.asarray(costs), np.stack(actions)


def test_the_start_is_the_best_grid_drift_plus_penalty_and_acts_exactly_as_it():
    system = _system()
    learner = make_learner("priced", system, SMALL)
    env = MEQCEnv(system)
    key = jax.random.key(5)
    state = learner.init(key)
    # the grid's DPP rules on the learner's own training episodes (its key's first half, as `init` draws them)
    k_grid = jax.random.split(key)[0]
    episode_keys = jax.random.split(k_grid, SMALL.num_envs)
    grid = [(v, th) for v in SMALL.v_grid for th in SMALL.theta_grid]
    means = [np.mean([_rollout(env, lyapunov_policy(system, v, th * system.battery_j), k)[0].mean()
                      for k in episode_keys]) for v, th in grid]
    v, th = grid[int(np.argmin(means))]
    assert float(state.params["v"]) == v and float(state.params["x"][THETA]) == th
    # its policy at the start is that DPP, action for action, on a fresh episode
    mine = _rollout(env, learner.policy(state.params), jax.random.key(9))
    dpp = _rollout(env, lyapunov_policy(system, v, th * system.battery_j), jax.random.key(9))
    np.testing.assert_array_equal(mine[1], dpp[1])
    np.testing.assert_array_equal(mine[0], dpp[0])


def test_training_learns_only_the_prices_the_scenario_has_and_stays_finite():
    system = _system("MEQC-Queues-v0")
    learner = make_learner("priced", system, SMALL)
    state, metrics = fit(learner, [0, 1], chunk=1)
    assert learner.compiled_chunks == 1  # two chunks, one compiled program
    x, start = np.asarray(state.centre), np.asarray(state.start)
    assert x.shape == start.shape == np.shape(state.params["x"]) == (2, 15) and learner.epochs_done(state) == SMALL.epochs
    # no battery here: its entries (and theta) never move; the search's queue prices and V do
    np.testing.assert_array_equal(x[:, BATTERY], start[:, BATTERY])
    np.testing.assert_array_equal(x[:, THETA], start[:, THETA])
    assert np.all(x[:, CPU] != start[:, CPU]) and np.all(x[:, QPU] != start[:, QPU]) and np.all(x[:, LOG_V] != 0)
    for f in ("cost", "best_candidate_cost", "start_cost"):
        v = np.asarray(getattr(metrics, f))
        assert v.shape == (2, SMALL.epochs) and np.all(np.isfinite(v)) and np.all(v > 0)
    assert np.all(np.asarray(metrics.best_candidate_cost) <= np.asarray(metrics.cost) + 1e-6)
    # elitist: at the first step the prices held are the start's, so what it plays is never worse than the start
    assert np.all(np.asarray(metrics.over_start)[:, 0] <= 1.0 + 1e-6)
    assert np.all(np.asarray(metrics.nonfinite) == 0)
    assert learner.param_counts()["total"] == 7  # V and the two queues' three prices


def test_where_nothing_carries_a_price_it_is_greedy():
    """MEQC-Drift-v0: exogenous drift only, no queue and no battery; every price is 0, nothing is learned and the
    policy places users as greedy does."""
    system = _system("MEQC-Drift-v0")
    learner = make_learner("priced", system, SMALL)
    state, _ = fit(learner, [0], chunk=2)
    np.testing.assert_array_equal(np.asarray(state.params["x"]), np.asarray(state.start))
    assert learner.param_counts()["total"] == 0
    env = MEQCEnv(system)
    mine = _rollout(env, learner.policy(learner.acting_params(state, 0)), jax.random.key(2))
    greedy = _rollout(env, make_policy("greedy", system), jax.random.key(2))
    np.testing.assert_array_equal(mine[1], greedy[1])


@pytest.mark.parametrize("system, words", [
    (SystemConfig(num_users=3, num_servers=2), "prices the state carried between slots"),
    (_system("MEQC-Contended-v0"), "prices the state carried between slots"),
    (_system("MEQC-Contended-Queues-v0"), "contention is priced by the joint planners"),
])
def test_a_model_it_cannot_price_is_one_line(system, words):
    with pytest.raises(ValueError, match=words) as e:
        make_learner("priced", system, SMALL)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("field, value", [("population", 0), ("sigma", -1.0), ("v_grid", ())])
def test_bad_settings_are_one_line(field, value):
    with pytest.raises(ValueError, match=f"PricedConfig.{field}") as e:
        PricedConfig(**{field: value})
    assert "\n" not in str(e.value)


def test_meqc_train_trains_it_and_writes_the_same_outputs(tmp_path):
    out = str(tmp_path / "run")
    assert main(["train", "--learner", "priced", "--scenario", "MEQC-Battery-v0", "--users", "3", "--servers", "2",
                 "--set", "epochs=2", "--set", "num_envs=2", "--set", "population=2", "--set", "v_grid=0.3/3",
                 "--slots-per-epoch", "8", "--eval-slots", "16", "--out", out, "--no-progress"]) == 0
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["learner"] == "priced" and summary["learner_config"]["v_grid"] == [0.3, 3.0]
    assert summary["epochs"] == 2 and np.isfinite(summary["policy_cost"]) and summary["policy_cost"] > 0
    assert summary["describe"]["env_steps_per_epoch"] == (2 * 2 + 3) * 2 * 8  # candidates x episodes x slots
    for f in ("config.json", "metrics.csv", "learning_curve.png"):
        assert os.path.exists(os.path.join(out, f))
