"""Every planner's predicted cost equals the env's replay of the action it chose.

A planner prices candidate actions with its own model of the slot (the per-slot solver's option tables,
the joint modes' pricing, the clairvoyant MIP's terms) and picks the cheapest; if that model and the env
disagree (as the queue waits of a task kept local once did), the planner optimizes the wrong thing. Each
test below rolls the env forward under the planner, so the carry (backlogs, batteries, drifted
lifetimes, users without a task) is the one the planner itself built, and compares after every slot:

- `greedy`, `lyapunov` and the learned prices of `learners.priced` (the per-slot solver, `slot_solver.slot_plan`): exact under `cheapest` (the
  placement order is the arrival order), the expectation over the arrival order under `arrival`;
- the joint planners under contention (`joint.dp_optimum`, `enumerate_optimum`, `best_response`,
  `greedy_modes`): their `price_modes` value; DROO prices its candidates with the same function
  (`tests/test_droo.py::test_search_is_priced_as_the_env_prices_its_action_and_never_loses_to_its_argmax`);
- the clairvoyant MIP: its plan's per-slot terms replayed slot by slot on the same draws.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meqc_jax import MEQCEnv, SystemConfig, clairvoyant, dynamics, joint
from meqc_jax.slot_solver import greedy_plan, lyapunov_plan

HANDSET = (100.0, 500.0)  # mW: transmissions cost joules, so batteries bind (dynamics-spec section 6)
U, E = 5, 3
DROP_QUEUE, DROP_BATTERY = dynamics.get("queues").drop_code, dynamics.get("battery").drop_code


def _rollout(cfg, planner, n=12, slots=16, seed=0):
    """n instances, `slots` slots under `planner`: (predicted [T, n], replayed [T, n], outcome counts)."""
    env = MEQCEnv(cfg)
    _, states = jax.vmap(env.reset)(jax.random.split(jax.random.key(seed), n))

    def slot(states, key):
        plans = jax.vmap(lambda s: planner(cfg, s))(states)
        _, nxt, _, _, info = jax.vmap(env.step)(jax.random.split(key, n), states, (plans.server, plans.phi))
        c = info["cost"]
        counts = dict(local=jnp.sum(c.has_task & (c.phi == 1.0)), offload=jnp.sum(c.has_task & (c.phi < 1.0)),
                      quantum=jnp.sum(c.quantum), queue_drop=jnp.sum(c.drop_reason == DROP_QUEUE),
                      battery_drop=jnp.sum(c.drop_reason == DROP_BATTERY), idle=jnp.sum(~c.has_task))
        return nxt, (plans.predicted_cost, c.total, counts)

    keys = jax.random.split(jax.random.key(seed + 1), slots)
    _, (pred, real, counts) = jax.jit(lambda s: jax.lax.scan(slot, s, keys))(states)
    return np.asarray(pred), np.asarray(real), {k: int(v.sum()) for k, v in counts.items()}


# level-1 and -2 codes and long lifetimes make QPUs feasible; the delay preset makes them worth taking
QPU = dict(t1_ms=50.0, k_choices=(1, 2), preset="delay")
BASE = dict(num_users=U, num_servers=E, arbitration="cheapest", slots_per_episode=500, **QPU)
# (config, which outcomes the rollout must show, so that the comparison is not vacuous)
CHEAPEST_CASES = {
    "paper-sum": (SystemConfig(**BASE), ("local", "offload", "quantum")),
    "paper-parallel": (SystemConfig(**BASE, latency_model="parallel"), ("offload", "quantum")),
    "queues-sum": (SystemConfig(**BASE, dynamics=("queues",), slot_s=3.0), ("local", "offload", "quantum", "queue_drop")),
    "queues-parallel": (SystemConfig(**BASE, dynamics=("queues",), slot_s=3.0, latency_model="parallel"),
                        ("offload", "quantum", "queue_drop")),
    "battery": (SystemConfig(**BASE, dynamics=("battery",), p_tx_range_mw=HANDSET, battery_j=6.0, harvest_mean_j=1.0),
                ("local", "offload", "battery_drop")),
    "drift-arrivals": (SystemConfig(**BASE, dynamics=("drift",), p_task=0.6), ("offload", "quantum", "idle")),
    "sustainable": (SystemConfig(**BASE, dynamics=("queues", "battery", "drift"), slot_s=3.0, p_tx_range_mw=HANDSET,
                                 battery_j=6.0, harvest_mean_j=1.0, p_task=0.8),
                    ("local", "offload", "queue_drop", "battery_drop", "idle")),
}


# drift-plus-penalty is the greedy without carried state, so it is checked only where state carries
SOLVER_CASES = [(c, p) for p in ("greedy", "lyapunov") for c in sorted(CHEAPEST_CASES)
                if p == "greedy" or CHEAPEST_CASES[c][0].dynamics]


@pytest.mark.parametrize("case,planner", SOLVER_CASES)
def test_the_per_slot_solver_predicts_exactly_what_the_env_charges_under_cheapest(case, planner):
    cfg, exercised = CHEAPEST_CASES[case]
    if planner == "greedy":
        plan = greedy_plan
    else:
        plan = lambda c, s: lyapunov_plan(c, s, v=3.0, theta=0.5 * c.battery_j)  # noqa: E731
    pred, real, counts = _rollout(cfg, plan)
    for what in exercised if planner == "greedy" else ("offload",):  # drift-plus-penalty avoids the drops
        assert counts[what] > 0, (what, counts)
    np.testing.assert_allclose(pred, real, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", ["queues-sum", "battery", "sustainable"])
def test_learned_prices_change_the_choice_not_the_pricing(case):
    """`learners.priced`: the solver under learned prices (every entry off DPP's, a curvature on the energy spent)
    still predicts exactly what the env charges for its action."""
    from meqc_jax.learners import make_learner
    from meqc_jax.learners.priced import NUM_PRICES, PricedConfig, start_vector
    from meqc_jax.slot_solver import slot_plan

    cfg, _ = CHEAPEST_CASES[case]
    learner = make_learner("priced", cfg, PricedConfig(v_grid=(3.0,), theta_grid=(0.5,)))
    x = start_vector(0.5) + 0.3 * np.sin(np.arange(NUM_PRICES) + 1.0)  # every price away from DPP's
    params = {"v": jnp.asarray(3.0), "x": jnp.asarray(x)}
    pred, real, counts = _rollout(cfg, lambda c, s: slot_plan(c, s, learner.weights(params, s)))
    assert counts["offload"] > 0, counts
    np.testing.assert_allclose(pred, real, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dyn", [(), ("queues",)])
def test_under_arrival_the_solver_predicts_the_expected_cost_over_the_arrival_order(dyn):
    # The random order is drawn after the action, so the solver prices its expectation: each earlier-placed
    # user ahead w.p. 1/2, each of m QPU requesters the winner w.p. 1/m. Exact in expectation where no queue
    # drops (the default max_wait_s is far above these waits); checked on many orders of the same slot.
    cfg = SystemConfig(num_users=4, num_servers=2, dynamics=dyn, slot_s=10.0, **QPU)
    env = MEQCEnv(cfg)
    _, states = jax.vmap(env.reset)(jax.random.split(jax.random.key(5), 6))
    hold = (jnp.zeros((6, 4), jnp.int32), jnp.zeros((6, 4)))  # offload everything: backlogs build
    orders = jax.random.split(jax.random.key(9), 4096)

    def replay(state, server, phi):
        c = jax.vmap(lambda k: env.price(k, state, (server, phi)))(orders)
        return c.total, jnp.sum(c.dropped)

    @jax.jit  # one program: three slots of backlog, the plan, its replay under 4096 arrival orders
    def run(states):
        for t in range(3):
            _, states, *_ = jax.vmap(env.step)(jax.random.split(jax.random.key(100 + t), 6), states, hold)
        plans = jax.vmap(lambda s: greedy_plan(cfg, s))(states)
        return plans, jax.vmap(replay)(states, plans.server, plans.phi)

    plans, (totals, drops) = run(states)
    assert int(drops.sum()) == 0
    mean, se = np.asarray(totals.mean(1)), np.asarray(totals.std(1)) / np.sqrt(totals.shape[1])
    contested = np.asarray(totals.std(1)) > 1e-3 * mean
    assert contested.any()  # the order matters on some slots, so the expectation is what is checked
    assert np.all(np.abs(np.asarray(plans.predicted_cost) - mean) <= 4.5 * se + 1e-4 * mean)


CONTENDED = dict(num_users=4, num_servers=2, dynamics=("contention",), t1_ms=50.0, p_task=0.8)


@pytest.mark.parametrize("uplink,latency_model", [("equal", "sum"), ("interference", "parallel")])
def test_the_joint_planners_price_their_action_as_the_env_replays_it(uplink, latency_model):
    cfg = SystemConfig(**CONTENDED, contention_uplink=uplink, latency_model=latency_model)
    env = MEQCEnv(cfg)
    keys = jax.random.split(jax.random.key(4), 24)
    _, states = jax.vmap(env.reset)(keys)
    from meqc_jax.cost import mode_table, price_modes

    def predicted_and_replayed(key, st):
        cond = env.conditions(st)
        table = mode_table(cfg, st.scenario, st.tasks, cond)
        outs = {"dp": joint.dp_optimum(cfg, st).outcome, "enumerate": joint.enumerate_optimum(cfg, st).outcome,
                "best_response": joint.best_response(cfg, st).outcome,
                "greedy": price_modes(cfg, table, joint.greedy_modes(cfg, table, uplink), uplink)}
        return {k: (jnp.sum(o.per_user), env.price(key, st, (o.server, o.phi, o.quantum)).total, jnp.sum(o.quantum))
                for k, o in outs.items()}

    res = jax.jit(jax.vmap(predicted_and_replayed))(keys, states)
    for name, (pred, real, quantum) in res.items():
        np.testing.assert_allclose(np.asarray(pred), np.asarray(real), rtol=1e-5, atol=1e-5, err_msg=name)
    assert int(res["dp"][2].sum()) > 0  # a QPU is granted somewhere
    np.testing.assert_allclose(np.asarray(res["dp"][0]), np.asarray(res["enumerate"][0]), rtol=1e-5)


@pytest.mark.parametrize("dyn,overrides", [
    (("queues",), dict(slot_s=4.0)),
    (("battery",), dict(p_tx_range_mw=HANDSET, battery_j=6.0, harvest_mean_j=1.0)),
    (("queues", "battery"), dict(slot_s=6.0, p_tx_range_mw=HANDSET, battery_j=8.0, harvest_mean_j=1.5, p_task=0.8)),
])
def test_the_clairvoyant_plan_replays_to_its_per_slot_terms(dyn, overrides):
    # Each served user of the plan pays in the env's replay exactly its terms of the MIP. A task the plan drops
    # (a relaxation) is replayed local: it then joins no queue, so the others' waits stay the plan's, but it
    # spends battery, so with a battery that user is not compared again.
    cfg = SystemConfig(num_users=3, num_servers=2, dynamics=dyn, slots_per_episode=40, **QPU, **overrides)
    env = MEQCEnv(cfg)
    step = jax.jit(env.step)
    compared = 0
    for seed in range(2):
        _, state = env.reset(jax.random.key(seed))
        for t in range(3):  # a few slots of random offloading build a carry
            act = (jax.random.randint(jax.random.key(50 + t), (3,), 0, 2), jnp.zeros(3))
            _, state, *_ = step(jax.random.key(seed * 10 + t), state, act)
        H = 4
        keys = jax.random.split(jax.random.key(70 + seed), H)
        data = clairvoyant.horizon_data(env, state, keys)
        bound = clairvoyant.solve(cfg, data)
        plan = bound.plan
        assert bound.optimal and plan is not None
        np.testing.assert_allclose(plan.per_user.sum(1), bound.per_slot, rtol=1e-12)
        diverged = np.zeros(3, bool)
        for t in range(H):
            charge = np.asarray(state.carry["battery"]["battery"], np.float64) if "battery" in dyn else None
            action = (jnp.asarray(plan.server[t]), jnp.asarray(plan.phi[t], jnp.float32), jnp.asarray(plan.quantum[t]))
            _, state, _, _, info = step(keys[t], state, action)
            c = info["cost"]
            check = ~plan.dropped[t] & ~diverged
            if charge is not None:
                # the plan may spend a battery to its last joule; the env's float32 e_dev can then exceed the charge
                # by an ulp and drop the task: only that boundary is excused (and the user not compared again)
                phi, srv = plan.phi[t], plan.server[t]
                energy = phi * data.e_local[t] + (1 - phi) * data.e_off[t, np.arange(3), srv]
                boundary = np.asarray(c.dropped) & ~plan.dropped[t] & np.isclose(energy, charge, rtol=1e-5, atol=1e-6)
                check &= ~boundary
                diverged |= boundary | (plan.dropped[t] & ~np.asarray(c.dropped))
            np.testing.assert_allclose(np.asarray(c.per_user)[check], plan.per_user[t][check], rtol=1e-4, atol=1e-4)
            compared += int(check.sum())
    assert compared >= 12, compared
