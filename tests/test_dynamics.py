"""The dynamics seam: a carry that lives in EnvState, enters the cost, is updated every slot, extends
the observation and resets with the episode; evaluation on per-policy trajectories.

The dynamic used here is a test-only toy (a CPU backlog drained at a fixed rate), registered under
a name no scenario uses: it exercises every hook without being one of docs/spec/dynamics.md's.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax import struct

from meqc_jax import MEQCEnv, SlotConditions, SystemConfig, dynamics, slot_cost
from meqc_jax.cost import Stage
from meqc_jax.dynamics import Dynamic, ObsSpec
from meqc_jax.evaluate import evaluate

DRAIN_S = 0.05  # seconds of each server's CPU time that the toy backlog loses per slot


@struct.dataclass
class WaitStage(Stage):
    """A toy pricing stage: a wait ahead of each server's CPU (and QPU) service, nothing else."""

    cpu: jnp.ndarray | None = None  # [E] s
    qpu: jnp.ndarray | None = None  # [E] s

    def admit(self, slot, config, scenario, tasks):
        pick = lambda w: None if w is None else slot.at_server(w)  # noqa: E731
        return slot.wait(pick(self.cpu), pick(self.qpu))


class ToyBacklog(Dynamic):
    name = "test_toy_backlog"
    description = "test only: cycles offloaded to a server's CPU queue up and drain DRAIN_S seconds per slot"

    def init(self, key, config, scenario):
        return {"cycles": jnp.zeros(config.num_servers)}

    def stage(self, carry, config, scenario, tasks):
        return WaitStage(cpu=carry["cycles"] / scenario.f_edge)

    def update(self, carry, outcome, key, config, scenario, tasks):
        arrived = jnp.zeros(config.num_servers).at[outcome.server].add(outcome.cpu_cycles)
        return {"cycles": jnp.maximum(carry["cycles"] + arrived - scenario.f_edge * DRAIN_S, 0.0)}

    def obs_specs(self, config):
        return (ObsSpec("cpu_wait", "server", 1.0, "seconds of backlog ahead at each server's CPU"),)

    def observe(self, carry, config, scenario, tasks):
        return {"cpu_wait": carry["cycles"] / scenario.f_edge}

    def metrics(self, carry, config, scenario, outcome):
        return {"toy_backlog_s": jnp.sum(carry["cycles"] / scenario.f_edge)}

    def drift_terms(self, carry, scenario, theta):
        return {"cpu_queue": carry["cycles"] / scenario.f_edge}


if ToyBacklog.name not in dynamics.names():
    dynamics.register(ToyBacklog())

PAPER = SystemConfig(num_users=3, num_servers=2, slots_per_episode=4)
TOY = PAPER.replace(dynamics=(ToyBacklog.name,))
OFFLOAD_ALL = (jnp.zeros(3, jnp.int32), jnp.zeros(3))  # everyone sends everything to server 0


def test_paper_model_has_an_empty_carry_and_no_conditions():
    env = MEQCEnv(PAPER)
    assert env.memoryless and env.dynamics == () and not dynamics.active(PAPER)
    _, state = env.reset(jax.random.key(0))
    assert state.carry == {} and env.conditions(state) is None


def test_unknown_dynamics_and_taken_names_fail_in_one_line():
    with pytest.raises(ValueError, match=r"SystemConfig.dynamics=\('queuez',\) is invalid: unknown queuez") as e:
        MEQCEnv(PAPER.replace(dynamics=("queuez",)))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="SystemConfig.dynamics="):
        SystemConfig(dynamics=("a", "a"))
    with pytest.raises(ValueError, match="is taken"):
        dynamics.register(ToyBacklog())


def test_conditions_add_the_wait_to_cpu_offloaded_users_only():
    env = MEQCEnv(PAPER)
    _, state = env.reset(jax.random.key(3))
    server, phi = jnp.array([0, 1, 0]), jnp.array([0.0, 0.5, 1.0])  # user 2 stays local
    key = jax.random.key(4)
    plain = slot_cost(PAPER, state.scenario, state.tasks, server, phi, key)
    same = slot_cost(PAPER, state.scenario, state.tasks, server, phi, key, conditions=SlotConditions())
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(same)):
        np.testing.assert_array_equal(a, b)  # no conditions = the paper's pricing, bit for bit
    wait = jnp.array([2.0, 5.0])
    waited = slot_cost(PAPER, state.scenario, state.tasks, server, phi, key, conditions=SlotConditions(stages=(WaitStage(cpu=wait),)))
    on_cpu = ~np.asarray(plain.quantum) & (np.asarray(phi) < 1)
    expect = np.where(on_cpu, np.asarray(wait)[np.asarray(server)], 0.0)
    np.testing.assert_allclose(np.asarray(waited.latency - plain.latency), expect, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(waited.per_user - plain.per_user), np.asarray(state.scenario.lam_d) * expect,
                               rtol=1e-4)
    # what the update needs: cycles on the CPUs, QPU seconds, device energy (e_L + e_O)
    np.testing.assert_allclose(np.asarray(plain.cpu_cycles),
                               np.where(on_cpu, (1 - np.asarray(phi)) * np.asarray(state.tasks.s * state.tasks.n), 0),
                               rtol=1e-6)
    assert np.all(np.asarray(plain.device_energy) <= np.asarray(plain.energy) + 1e-6)


def test_carry_is_priced_updated_observed_and_reset_with_the_episode():
    env = MEQCEnv(TOY)
    # + has_task (dynamics-spec section 1, on with any dynamic) + one wait per server
    assert not env.memoryless and env.obs_dim == MEQCEnv(PAPER).obs_dim + 1 + 2
    assert [f.name for f in env.obs_fields[-2:]] == ["has_task", "cpu_wait"]
    assert env.obs_fields[-1].name == "cpu_wait" and env.obs_fields[-1].kind == "server"
    obs, state = env.reset(jax.random.key(0))
    np.testing.assert_array_equal(state.carry[ToyBacklog.name]["cycles"], 0.0)
    step = jax.jit(env.step)
    obs, state1, _, done, info = step(jax.random.key(1), state, OFFLOAD_ALL)
    c = info["cost"]
    cycles = np.asarray(state1.carry[ToyBacklog.name]["cycles"])
    sent = float(np.sum(np.asarray(c.cpu_cycles)))
    f0 = float(state.scenario.f_edge[0])
    assert cycles[1] == 0.0 and cycles[0] == pytest.approx(max(sent - f0 * DRAIN_S, 0.0), rel=1e-5)
    np.testing.assert_allclose(np.asarray(obs[:, -2]), cycles[0] / f0, rtol=1e-5)  # every user sees server 0's wait
    # the next slot prices the backlog in: the same action costs more than without it
    with_wait = env.price(jax.random.key(2), state1, OFFLOAD_ALL)
    no_wait = env.price(jax.random.key(2), state1.replace(carry=env.reset(jax.random.key(0))[1].carry), OFFLOAD_ALL)
    assert float(with_wait.total) > float(no_wait.total)
    # at the episode's end the carry is that of a fresh episode
    s = state1
    for t in range(2, TOY.slots_per_episode + 1):
        _, s, _, done, _ = step(jax.random.key(10 + t), s, OFFLOAD_ALL)
    assert bool(done) and int(s.t) == 0
    np.testing.assert_array_equal(s.carry[ToyBacklog.name]["cycles"], 0.0)


def test_vmapped_step_with_a_carry_compiles_once_and_stays_finite():
    import chex

    env = MEQCEnv(TOY)
    N = 64
    chex.clear_trace_counter()
    reset, step = jax.jit(jax.vmap(env.reset)), jax.jit(jax.vmap(chex.assert_max_traces(env.step, n=1)))
    obs, state = reset(jax.random.split(jax.random.key(0), N))
    for t in range(6):
        k_a, k_s = jax.random.split(jax.random.key(100 + t))
        action = (jax.random.randint(k_a, (N, 3), 0, 2), jax.random.uniform(k_s, (N, 3)))
        obs, state, reward, _, _ = step(jax.random.split(jax.random.key(t), N), state, action)
        assert np.all(np.isfinite(np.asarray(obs))) and np.all(np.isfinite(np.asarray(reward)))
        assert np.all(np.asarray(state.carry[ToyBacklog.name]["cycles"]) >= 0)


@pytest.mark.parametrize("scenario", ["MEQC-Sustainable-v0", "MEQC-Contended-Queues-v0"])
def test_the_pricing_pipeline_traces_once_for_every_stage(scenario):
    """Every stage (queues, battery, drift, contention) prices through one trace of the env's price and of the
    option grid, whatever the carry holds: no Python branch on a value, shapes static."""
    import chex

    from meqc_jax import make
    from meqc_jax.cost.options import option_slot

    env = make(scenario, num_users=3, num_servers=2)
    N = 4
    chex.clear_trace_counter()
    price = jax.jit(jax.vmap(chex.assert_max_traces(env.price, n=1)))
    grid = jax.jit(jax.vmap(chex.assert_max_traces(
        lambda s: option_slot(env.config, s.scenario, s.tasks, jnp.full(3, 0.5), env.conditions(s)), n=1)))
    step = jax.jit(jax.vmap(env.step))
    _, state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(5), N))
    for t in range(3):
        k_a, k_s, k_p, k_step = jax.random.split(jax.random.key(50 + t), 4)
        action = (jax.random.randint(k_a, (N, 3), 0, 2), jax.random.uniform(k_s, (N, 3)))
        cost = price(jax.random.split(k_p, N), state, action)
        g = grid(state)
        assert np.all(np.isfinite(np.asarray(cost.total))) and np.all(np.isfinite(np.asarray(g.d_cpu)))
        _, state, _, _, _ = step(jax.random.split(k_step, N), state, action)


POLICIES = ["local", "random_offloading", "greedy", "oracle"]


def test_shared_and_per_policy_transitions_agree_exactly_on_the_paper_model():
    cfg = SystemConfig(num_users=3, num_servers=2, slots_per_episode=5)  # an episode boundary inside the run
    shared = evaluate(cfg, POLICIES, num_envs=6, num_slots=7, seed=11, chunk=4, transitions="shared")
    own = evaluate(cfg, POLICIES, num_envs=6, num_slots=7, seed=11, chunk=4, transitions="per_policy")
    auto = evaluate(cfg, POLICIES, num_envs=6, num_slots=7, seed=11, chunk=4)  # the shared program, cached
    assert (shared.transitions, own.transitions, auto.transitions) == ("shared", "per_policy", "shared")
    for name in POLICIES:
        for m, v in shared.per_slot[name].items():
            np.testing.assert_array_equal(own.per_slot[name][m], v, err_msg=f"{name} {m}")
        assert own.summary[name] == shared.summary[name]


def test_with_a_carry_every_policy_runs_its_own_trajectory():
    with pytest.raises(ValueError, match="transitions='shared' is invalid"):
        evaluate(TOY, ["local"], num_envs=2, num_slots=2, transitions="shared")
    both = evaluate(TOY, ["local", "random_offloading"], num_envs=4, num_slots=6, seed=2)
    alone = evaluate(TOY, ["local"], num_envs=4, num_slots=6, seed=2)
    assert both.transitions == "per_policy"
    # a policy's trajectory does not depend on which other policies are evaluated beside it
    np.testing.assert_array_equal(both.per_slot["local"]["cost"], alone.per_slot["local"]["cost"])
    # random offloading builds a backlog within an episode (4 slots): its own later slots cost more,
    # and the backlog is gone after the reset at slot 4
    cost = both.per_slot["random_offloading"]["cost"].mean(axis=1)
    assert cost[3] > 2 * cost[0] and cost[4] < cost[3]
    # the toy reports its own metric (at each slot's start: nothing queued in an episode's first slot)
    backlog = both.per_slot["random_offloading"]["toy_backlog_s"]
    assert np.all(backlog[[0, 4]] == 0) and np.all(backlog[[2, 3]] > 0)
    s = both.summary["random_offloading"]
    assert s["mean_toy_backlog_s"] == pytest.approx(float(backlog.astype(np.float64).mean()))
    assert s["final_toy_backlog_s"] == pytest.approx(float(backlog[-1].astype(np.float64).mean()))
    assert "mean_cpu_wait_s" not in s  # no queues here: only the active dynamics report


def test_drift_plus_penalty_weighs_a_dynamics_own_drift_terms():
    from meqc_jax.slot_solver import lyapunov_function, lyapunov_weights

    env = MEQCEnv(TOY)
    _, state = env.reset(jax.random.key(3))
    for t in range(2):
        _, state, *_ = env.step(jax.random.key(10 + t), state, OFFLOAD_ALL)
    wait = np.asarray(state.carry[ToyBacklog.name]["cycles"] / state.scenario.f_edge)
    assert wait[0] > 0
    w = lyapunov_weights(TOY, state, v=2.0, theta=0.0)
    np.testing.assert_array_equal(np.asarray(w.cpu_queue), wait)
    np.testing.assert_array_equal(np.asarray(w.qpu_queue), 0.0)
    np.testing.assert_array_equal(np.asarray(w.battery), 0.0)
    assert float(lyapunov_function(state, 0.0)) == pytest.approx(0.5 * float(np.sum(wait**2)), rel=1e-6)


@pytest.mark.parametrize("latency_model", ["sum", "parallel"])
def test_planners_price_the_carry_like_the_env(latency_model):
    # option_costs and option_table (greedy's and the oracle's inputs) see the same waits as slot_cost
    from meqc_jax.cost import option_costs, option_table

    cfg = PAPER.replace(latency_model=latency_model, num_users=4, num_servers=3)
    env = MEQCEnv(cfg)
    _, state = env.reset(jax.random.key(7))
    cond = SlotConditions(stages=(WaitStage(cpu=jnp.array([0.0, 3.0, 40.0]), qpu=jnp.array([1.0, 0.0, 9.0])),))
    sc, tk = state.scenario, state.tasks
    grid = jnp.linspace(0.0, 1.0, 201)
    costs = jax.vmap(lambda p: option_costs(cfg, sc, tk, jnp.full((4, 3), p), cond))(grid)
    table = option_table(cfg, sc, tk, cond)
    # the closed-form best split is no worse than any grid point, and it is what replaying it costs
    np.testing.assert_array_less(np.asarray(table.classical), np.asarray(costs.classical.min(0)) * (1 + 1e-5) + 1e-6)
    replay = option_costs(cfg, sc, tk, table.phi_classical, cond).classical
    np.testing.assert_allclose(np.asarray(replay), np.asarray(table.classical), rtol=1e-5)
    # slot_cost of a joint action equals the option cost of each user's chosen option (no QPU granted at phi = 1)
    server, phi = jnp.array([0, 1, 2, 1]), jnp.array([0.0, 0.3, 0.6, 1.0])
    c = slot_cost(cfg, sc, tk, server, phi, jax.random.key(1), conditions=cond)
    opt = option_costs(cfg, sc, tk, phi, cond)
    expect = np.where(np.asarray(c.quantum), np.asarray(opt.quantum)[np.arange(4), np.asarray(server)],
                      np.asarray(opt.classical)[np.arange(4), np.asarray(server)])
    np.testing.assert_allclose(np.asarray(c.per_user), expect, rtol=1e-5)
    assert float(c.per_user[3]) == pytest.approx(float(table.local[3]), rel=1e-6)  # local waits for nothing
