"""A new dynamic is one module + one registry line: a toy defined here, and nothing else touched.

`ServerOutage` (test only): each server is down for a slot with probability P_DOWN, drawn afresh every
slot; a task whose offloaded part is sent to a down server is dropped (dynamics-spec section 5's
penalty). Defined and registered in this module only, it must price through the env, the per-slot
planners (greedy, drift-plus-penalty) and the option tables alike, appear in the observation and in
`evaluate`'s summaries, and train with PPO -- without a line of the package knowing it.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from meqc_jax import MEQCEnv, SystemConfig, dynamics
from meqc_jax.cost import Stage, option_costs
from meqc_jax.dynamics import Dynamic, ObsSpec
from meqc_jax.evaluate import evaluate
from meqc_jax.learners.ppo import PPOConfig, make_train
from meqc_jax.loop import fit
from meqc_jax.slot_solver import greedy_plan, lyapunov_plan

P_DOWN = 0.4


@struct.dataclass
class OutageStage(Stage):
    down: jnp.ndarray  # [E] bool, the server is down this slot
    code: int = struct.field(pytree_node=False)

    def admit(self, slot, config, scenario, tasks):
        # only an offloaded part reaches the server; a task kept at home is untouched by an outage
        sent = slot.per_user(slot.has_task) & (slot.phi < 1.0) & slot.at_server(self.down)
        return slot.drop(sent, self.code)


class ServerOutage(Dynamic):
    name = "test_server_outage"
    description = "test only: each server is down for a slot with probability P_DOWN; tasks sent there drop"
    drop_reason = "outage"
    carries = True

    def _draw(self, key, config):
        return jax.random.uniform(key, (config.num_servers,)) < P_DOWN

    def init(self, key, config, scenario):
        return {"down": self._draw(key, config)}

    def update(self, carry, outcome, key, config, scenario, tasks):
        return {"down": self._draw(key, config)}  # the next slot's outages, independent of the action

    def stage(self, carry, config, scenario, tasks):
        return OutageStage(down=carry["down"], code=self.drop_code)

    def obs_specs(self, config):
        return (ObsSpec("server_down", "server", 1.0, "1 if the server is down this slot"),)

    def observe(self, carry, config, scenario, tasks):
        return {"server_down": carry["down"].astype(float)}

    def metrics(self, carry, config, scenario, outcome):
        return {"servers_down": jnp.mean(carry["down"].astype(float), axis=-1)}


if ServerOutage.name not in dynamics.names():  # the one registry line (guarded: a re-import registers once)
    dynamics.register(ServerOutage())

CFG = SystemConfig(num_users=3, num_servers=2, slots_per_episode=8, dynamics=(ServerOutage.name,),
                   arbitration="cheapest")
CODE = dynamics.get(ServerOutage.name).drop_code


def _state_with(down, seed=0):
    env = MEQCEnv(CFG)
    _, state = env.reset(jax.random.key(seed))
    return env, state.replace(carry={**state.carry, ServerOutage.name: {"down": jnp.asarray(down)}})


def test_it_registers_with_its_own_drop_code_and_observation_field():
    assert dynamics.drop_reasons()[CODE] == "outage" and CODE >= 3  # after queues (1) and battery (2)
    env = MEQCEnv(CFG)
    assert env.obs_fields[-1].name == "server_down" and env.obs_fields[-1].kind == "server"
    obs, state = env.reset(jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(obs[:, -2:]), np.broadcast_to(
        np.asarray(state.carry[ServerOutage.name]["down"], float), (3, 2)))


def test_a_task_sent_to_a_down_server_drops_and_the_rest_price_as_before():
    env, state = _state_with([True, False])
    server, phi = jnp.array([0, 1, 0]), jnp.array([0.0, 0.0, 1.0])  # user 2 names server 0 but stays home
    c = env.price(jax.random.key(1), state, (server, phi))
    up = env.price(jax.random.key(1), state.replace(carry={**state.carry, ServerOutage.name: {
        "down": jnp.array([False, False])}}), (server, phi))
    assert np.asarray(c.dropped).tolist() == [True, False, False]
    assert int(c.drop_reason[0]) == CODE and int(c.drop_reason[1]) == 0
    lam_d = float(state.scenario.lam_d[0])
    assert float(c.per_user[0]) == np.float32(lam_d * CFG.drop_penalty) and float(c.energy[0]) == 0.0
    np.testing.assert_array_equal(np.asarray(c.per_user[1:]), np.asarray(up.per_user[1:]))
    # the option tables see the same drop (the same stage prices them)
    opt = option_costs(CFG, state.scenario, state.tasks, jnp.zeros(3), env.conditions(state))
    assert np.asarray(opt.dropped).tolist() == [[True, False]] * 3


def test_planners_avoid_a_down_server_and_predict_what_the_env_charges():
    env = MEQCEnv(CFG)
    _, states = jax.vmap(env.reset)(jax.random.split(jax.random.key(3), 16))

    def both(key, st):
        g = greedy_plan(CFG, st)
        ly = lyapunov_plan(CFG, st, 1.0, 0.0)
        priced = [env.price(key, st, (p.server, p.phi)) for p in (g, ly)]
        home = env.price(key, st, (jnp.zeros(3, jnp.int32), jnp.ones(3)))
        sent_down = (g.phi < 1.0) & st.carry[ServerOutage.name]["down"][g.server]
        return (g.predicted_cost, ly.predicted_cost, priced[0].total, priced[1].total, priced[0].per_user,
                home.per_user, sent_down, jnp.sum(st.carry[ServerOutage.name]["down"]), jnp.sum(g.phi < 1.0))

    keys = jax.random.split(jax.random.key(4), 16)
    pg, pl, rg, rl, cost, home, sent_down, downs, offloads = jax.jit(jax.vmap(both))(keys, states)
    np.testing.assert_allclose(np.asarray(pg), np.asarray(rg), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(pl), np.asarray(rl), rtol=1e-5)
    # greedy sends a task to a down server only where the drop is cheaper than keeping it at home
    sent_down = np.asarray(sent_down)
    assert np.all(np.asarray(cost)[sent_down] <= np.asarray(home)[sent_down] * (1 + 1e-6))
    assert sent_down.sum() < 0.1 * sent_down.size
    assert int(downs.sum()) > 0 and int(offloads.sum()) > 0  # both paths are exercised


def test_it_evaluates_and_trains_with_ppo():
    trainer = make_train(CFG, PPOConfig(epochs=2, num_envs=4, num_minibatches=4, hidden=(16,)), scale=100.0)
    params, metrics = fit(trainer, [0], chunk=2)
    assert np.all(np.isfinite(np.asarray(jax.tree.leaves(metrics)[0])))
    policy = trainer.policy(jax.tree.map(lambda x: x[0], params.params), name="ppo")
    res = evaluate(CFG, ["local", "random_offloading", "greedy", policy], num_envs=4, num_slots=8, seed=5)
    for name in ("local", "random_offloading", "greedy", "ppo"):
        s = res.summary[name]
        assert np.isfinite(s["mean_cost"]) and 0.0 < s["mean_servers_down"] < 1.0
    assert res.summary["local"]["drop_share"] == 0.0  # nothing leaves home: no outage reaches it
    assert res.summary["random_offloading"]["drop_share"] > 0.0
    assert res.summary["greedy"]["mean_cost"] < res.summary["random_offloading"]["mean_cost"]
