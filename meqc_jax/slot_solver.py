"""The per-slot sequential solver shared by `greedy` and `lyapunov` (spec 11; dynamics-spec section 7).

Users are placed one at a time in index order (a `lax.scan`); each picks the option -- keep the
task local (phi = 1), or offload 1 - phi, phi in {0, 0.1, ..., 0.9}, to a server -- that minimizes
the *score* of the users placed so far. With the paper's model the score is the system cost and
this is spec 11's greedy, unchanged. With carried state (`meqc_jax.dynamics`) each option is priced
under the carry as it stands now (the waits ahead of each server, the battery rule, who has a task):

    score = V * (own cost + the wait it adds to users placed earlier on its queue)
            + queue_weight[e] * (seconds of work it adds to e's CPU or QPU)
            - battery_weight[u] * e_dev

`greedy` (myopic) is V = 1 with no queue or battery weight; `lyapunov` (drift-plus-penalty) sets
queue_weight to the backlog waits and battery_weight to battery - theta (LODCO's perturbation).
An option the carry would drop (a device without the energy, a wait beyond `max_wait_s`) is priced
as the drop (`lam_d drop_penalty`, no energy, no work). Queue waits inside the slot are priced in
expectation: under `arrival` each earlier-placed user on the same queue is ahead with probability
1/2; under `cheapest` the order is the user index, the placement order, so the wait is exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from meqc_jax import dynamics
from meqc_jax.config import SystemConfig
from meqc_jax.cost import option_costs, option_loads, option_slot, option_terms, weighted_cost

GREEDY_GRID = 11  # phi in {0, 0.1, ..., 1}


@struct.dataclass
class Weights:
    """The score of `slot_action` (module docstring): the myopic greedy is `Weights.myopic()`."""

    v: jnp.ndarray  # [] weight of the slot's cost (Lyapunov's V)
    cpu_queue: jnp.ndarray  # [E] per second of CPU work added at e
    qpu_queue: jnp.ndarray  # [E] per second of QPU work added at e
    battery: jnp.ndarray  # [U] per joule of device energy (battery - theta; 0: energy priced by the cost only)
    # [U] per joule squared, or None: the spend is then `battery x e_dev` (drift-plus-penalty's linear price). A
    # curvature c prices spending e as `battery x e - c e^2 / 2`, the second-order change of a learned value of
    # the charge (`learners.priced`); None keeps DPP's program exactly as it is
    battery_curvature: jnp.ndarray | None = None

    @classmethod
    def myopic(cls, num_users: int, num_servers: int) -> Weights:
        zero_e = jnp.zeros(num_servers)
        return cls(v=jnp.ones(()), cpu_queue=zero_e, qpu_queue=zero_e, battery=jnp.zeros(num_users))


@struct.dataclass
class SlotPlan:
    """A joint action and the slot cost (Eq. 12) the solver expects the env to charge for it: exact under
    `cheapest` (the placement order is the arrival order and the QPU winner is the cheapest requester), the
    expectation over the slot's random order under `arrival` (exact where no queue drops a task)."""

    server: jnp.ndarray  # [U] int
    phi: jnp.ndarray  # [U]
    predicted_cost: jnp.ndarray  # [] the system cost the solver priced the action at


def _tables(config: SystemConfig, env_state, grid: int, cond=None):
    sc, tk = env_state.scenario, env_state.tasks
    U = tk.g.shape[0]
    phis = jnp.linspace(0.0, 1.0, grid)[:-1]  # phi = 1 is the local candidate
    table = jax.vmap(lambda p: option_costs(config, sc, tk, jnp.full((U,), p), cond))(phis)
    local = option_costs(config, sc, tk, jnp.ones(U), cond).classical[:, 0]
    return phis, table.classical, table.quantum, table.feasible[0], local


def greedy_action(config: SystemConfig, env_state, grid: int = GREEDY_GRID):
    """Spec 11 greedy: users in index order, each choosing the option that minimizes the system cost of
    the users placed so far, QPU occupancy included; with dynamics, `slot_action` with myopic weights."""
    plan = greedy_plan(config, env_state, grid)
    return plan.server, plan.phi


def greedy_plan(config: SystemConfig, env_state, grid: int = GREEDY_GRID) -> SlotPlan:
    """`greedy_action` with the slot cost it predicts for its action (`SlotPlan`)."""
    if dynamics.active(config):
        U, E = env_state.tasks.g.shape
        return slot_plan(config, env_state, Weights.myopic(U, E), grid)
    phis, classical, quantum, feasible, local = _tables(config, env_state, grid)
    return _place_arbitrated(config, phis, classical, quantum, feasible, local)


def _place_arbitrated(config: SystemConfig, phis, classical, quantum, feasible, local, scores=None,
                      can_request=None) -> SlotPlan:
    """The scan of spec 11's greedy under Eq. 13b (one task per QPU, `config.arbitration` decides).

    `classical`, `quantum` [P, U, E] and `local` [U] are each option's cost; `scores` (the same three, or
    None: the cost itself) is what the placement minimizes. `can_request` [P, U, E] (None: everywhere)
    marks the options whose task would reach the server (not one a short battery drops, dynamics-spec section 3).
    A user that offloads a fraction to a server where its task is feasible requests that QPU
    (spec 8), so its effect on the score depends on the server's earlier requesters:
    `cheapest` -- exact: it wins the QPU iff its cost with the QPU is strictly lower than the
    holder's (the env's rule compares costs, not scores), and the holder then falls back to the CPUs;
    `arrival` -- in expectation over the random order: with m requesters each wins w.p. 1/m.
    Keeping everything local is always a candidate, so greedy is never worse than `local` (exactly
    under `cheapest`, in expectation under `arrival`).
    """
    U, E = feasible.shape
    cheapest = config.arbitration == "cheapest"
    s_classical, s_quantum, s_local = (classical, quantum, local) if scores is None else scores

    def place(carry, u):
        cc, cq, f = classical[:, u, :], quantum[:, u, :], feasible[u][None, :]  # [P, E] costs
        sc, sq = (cc, cq) if scores is None else (s_classical[:, u, :], s_quantum[:, u, :])  # [P, E] scores
        req = f if can_request is None else f & can_request[:, u, :]
        if cheapest:
            held, hold_q, hold_c, hold_sq, hold_sc, total = carry
            steal = cq < hold_q[None, :]
            d_score = jnp.where(held[None, :], jnp.where(steal, sq + (hold_sc - hold_sq)[None, :], sc), sq)
            d_cost = jnp.where(held[None, :], jnp.where(steal, cq + (hold_c - hold_q)[None, :], cc), cq)
        else:
            count, gain_sum, gain_cost, total = carry  # requesters per server, sum of their (c_Q - c_E)
            prev = jnp.where(count > 0, gain_sum / jnp.maximum(count, 1), 0.0)
            d_score = sc + (gain_sum[None, :] + sq - sc) / (count[None, :] + 1) - prev[None, :]
            prev_c = jnp.where(count > 0, gain_cost / jnp.maximum(count, 1), 0.0)
            d_cost = cc + (gain_cost[None, :] + cq - cc) / (count[None, :] + 1) - prev_c[None, :]
        delta = jnp.where(req, d_score, sc).ravel()  # [P * E]
        best = jnp.argmin(delta)
        offload = delta[best] < s_local[u]  # ties keep the task local
        total = total + jnp.where(offload, jnp.where(req, d_cost, cc).ravel()[best], local[u])
        p, e = best // E, best % E
        requests = offload & req[p, e]
        if cheapest:
            wins = requests & (~held[e] | steal[p, e])
            put = lambda a, x: a.at[e].set(jnp.where(wins, x, a[e]))  # noqa: E731
            carry = (held.at[e].set(held[e] | requests), put(hold_q, cq[p, e]), put(hold_c, cc[p, e]),
                     put(hold_sq, sq[p, e]), put(hold_sc, sc[p, e]), total)
        else:
            carry = (count.at[e].add(requests.astype(count.dtype)),
                     gain_sum.at[e].add(jnp.where(requests, sq[p, e] - sc[p, e], 0.0)),
                     gain_cost.at[e].add(jnp.where(requests, cq[p, e] - cc[p, e], 0.0)), total)
        return carry, (jnp.where(offload, e, 0).astype(jnp.int32), jnp.where(offload, phis[p], 1.0))

    zeros, zero = jnp.zeros(E), jnp.zeros(())
    init = ((jnp.zeros(E, bool), zeros, zeros, zeros, zeros, zero) if cheapest
            else (jnp.zeros(E, jnp.int32), zeros, zeros, zero))
    carry, (server, phi) = jax.lax.scan(place, init, jnp.arange(U))
    return SlotPlan(server=server, phi=phi, predicted_cost=carry[-1])


def slot_action(config: SystemConfig, env_state, weights: Weights, grid: int = GREEDY_GRID):
    """The sequential placement under the carry of `env_state` with the score of `weights` (module
    docstring); returns the joint action (server [U] int, phi [U])."""
    plan = slot_plan(config, env_state, weights, grid)
    return plan.server, plan.phi


def slot_plan(config: SystemConfig, env_state, weights: Weights, grid: int = GREEDY_GRID) -> SlotPlan:
    """`slot_action` with the slot cost it predicts for its action (`SlotPlan`): the score's cost part,
    priced as the env prices the carry (a drop's penalty, a user without a task at 0, the waits)."""
    sc, tk = env_state.scenario, env_state.tasks
    U, E = tk.g.shape
    cond = dynamics.conditions(env_state.carry, config, sc, tk)
    phis, classical, quantum, feasible, local = _tables(config, env_state, grid, cond)
    loads = jax.vmap(lambda p: option_loads(config, sc, tk, jnp.full((U,), p)))(phis)  # [P, U, E]
    e_local = option_loads(config, sc, tk, jnp.ones(U)).device_energy[:, 0]
    # what the carry's pricing stages do to each option before Eq. 13b (`cost.option_slot`, the env's code):
    # who has a task, which options a stage drops (a device without the energy, dynamics-spec section 3), the
    # waits ahead of each server's service and whether every QPU requester is served (section 2)
    grid = jax.vmap(lambda p: option_slot(config, sc, tk, jnp.full((U,), p), cond))(phis)  # [P, U, E]
    at_home = option_slot(config, sc, tk, jnp.ones(U), cond)
    has_task = grid.has_task[0]
    drop = sc.lam_d * config.drop_penalty  # [U], the cost of a dropped task (dynamics-spec section 5)
    v = weights.v
    # an option a stage drops is priced as the drop, which spends no energy, so its battery term (section 7)
    # is 0 (a user without a task is priced below, whatever its options)
    served = jnp.broadcast_to(~grid.dropped, classical.shape)
    local_served = jnp.broadcast_to(~at_home.dropped, (U, E))[:, 0]
    cost_c = jnp.where(served, classical, drop[None, :, None])
    cost_q = jnp.where(served, quantum, drop[None, :, None])
    cost_l = jnp.where(local_served, local, drop)
    bw = weights.battery[None, :, None]
    spend = jnp.where(served, bw * loads.device_energy, 0.0)
    spend_l = jnp.where(local_served, weights.battery * e_local, 0.0)
    if weights.battery_curvature is not None:  # a learned value's second order (the field's comment)
        curv = weights.battery_curvature
        spend = spend - jnp.where(served, 0.5 * curv[None, :, None] * loads.device_energy ** 2, 0.0)
        spend_l = spend_l - jnp.where(local_served, 0.5 * curv * e_local ** 2, 0.0)
    # a user without a task acts locally at no cost (its action is ignored)
    cost_l = jnp.where(has_task, cost_l, 0.0)
    spend_l = jnp.where(has_task, spend_l, 0.0)
    if not grid.every_request:
        off = jnp.where(has_task[None, :, None], 0.0, 1.0)  # any offload costs more than 0
        cost_c = jnp.where(has_task[None, :, None], cost_c, off)
        cost_q = jnp.where(has_task[None, :, None], cost_q, off)
        spend = jnp.where(has_task[None, :, None], spend, 0.0)
        scores = (v * cost_c - spend, v * cost_q - spend, v * cost_l - spend_l)
        return _place_arbitrated(config, phis, cost_c, cost_q, feasible, cost_l, scores,
                                 served & has_task[None, :, None])
    lat = None
    if config.latency_model == "parallel":  # the in-slot wait enters inside the max, so keep the parts
        terms = jax.vmap(lambda p: option_terms(config, sc, tk, jnp.full((U,), p), cond))(phis)
        _, (d_l, e_l), (d_c, en_c), (d_q, en_q) = terms
        lat = (d_l, e_l, d_c, en_c, d_q, en_q)
    waits = tuple(jnp.zeros(E) if w is None else w[0, 0] for w in (grid.wait_cpu, grid.wait_qpu))  # [E] each
    return _place_queued(config, phis, sc.lam_d, sc.lam_e, drop, cost_c, cost_q, cost_l, spend, spend_l, served,
                         feasible, has_task, loads, waits, weights, lat)


def _place_queued(config, phis, lam_d, lam_e, drop, cost_c, cost_q, cost_l, spend, spend_l, served, feasible,
                  has_task, loads, waits, weights, lat) -> SlotPlan:
    """The scan under `queues`: a feasible requester runs on the QPU, anyone else on the CPUs, each
    queue first-in first-out (dynamics-spec section 2). Only an offloaded part joins a queue and waits;
    keeping the task local (phi = 1) is priced wait-free, as the env prices it."""
    U, E = feasible.shape
    v = weights.v
    cheapest = config.arbitration == "cheapest"
    ahead_share = 1.0 if cheapest else 0.5  # the chance that an earlier-placed user is ahead
    behind_share = 0.0 if cheapest else 0.5  # the chance that it is behind (it then waits for us)
    wait_c, wait_q = waits  # [E] s of backlog ahead of each server's CPU and QPU

    def place(carry, u):
        work_c, lam_c, work_q, lam_q, total = carry  # [E] seconds placed and sum of lam_d placed, per queue
        quantum = feasible[u][None, :]  # [1, E]
        work = jnp.where(quantum, loads.qpu_seconds[:, u, :], loads.cpu_seconds[:, u, :])  # [P, E]
        placed_work = jnp.where(quantum, work_q, work_c)[None, :]
        placed_lam = jnp.where(quantum, lam_q, lam_c)[None, :]
        extra = ahead_share * placed_work  # expected wait behind the slot's earlier arrivals
        wait = jnp.where(quantum, wait_q, wait_c)[None, :] + extra
        queue_w = jnp.where(quantum, weights.qpu_queue, weights.cpu_queue)[None, :]
        if lat is None:  # `sum`: the wait adds lam_d per second
            own = jnp.where(quantum, cost_q[:, u, :], cost_c[:, u, :]) + lam_d[u] * extra
        else:  # `parallel`: lam_d max(d_L, d_O + w + d_E) + lam_e energy, the backlog's wait already in d_off
            d_l, e_l, d_c, en_c, d_q, en_q = (x[:, u, :] for x in lat)
            own, _, _ = weighted_cost("parallel", lam_d[u], lam_e[u], d_l, e_l,
                                      jnp.where(quantum, d_q, d_c) + extra, jnp.where(quantum, en_q, en_c))
        cost = own + behind_share * work * placed_lam  # what it costs the users placed before it, too
        ok = served[:, u, :] & (wait <= config.max_wait)
        cost = jnp.where(ok, cost, drop[u])
        score = jnp.where(ok, v * cost - spend[:, u, :] + queue_w * work, v * drop[u]).ravel()
        best = jnp.argmin(score)
        score_l = v * cost_l[u] - spend_l[u]
        offload = has_task[u] & (score[best] < score_l)  # ties keep the task local
        total = total + jnp.where(offload, cost.ravel()[best], cost_l[u])
        p, e = best // E, best % E
        joins = offload & ok.ravel()[best]
        w = jnp.where(joins, work.ravel()[best], 0.0)
        lu = jnp.where(joins, lam_d[u], 0.0)
        q = quantum[0, e]
        carry = (work_c.at[e].add(jnp.where(q, 0.0, w)), lam_c.at[e].add(jnp.where(q, 0.0, lu)),
                 work_q.at[e].add(jnp.where(q, w, 0.0)), lam_q.at[e].add(jnp.where(q, lu, 0.0)), total)
        return carry, (jnp.where(offload, e, 0).astype(jnp.int32), jnp.where(offload, phis[p], 1.0))

    zeros = jnp.zeros(E)
    carry, (server, phi) = jax.lax.scan(place, (zeros, zeros, zeros, zeros, jnp.zeros(())), jnp.arange(U))
    return SlotPlan(server=server, phi=phi, predicted_cost=carry[-1])


def _drift_terms(env_state, theta: float):
    """The carry's terms of the quadratic Lyapunov function (dynamics-spec section 7), as each dynamic
    gives them (`Dynamic.drift_terms`): each CPU queue's backlog wait [E] (s), each QPU queue's backlog
    [E] (s) and each battery's distance to LODCO's target [U] (J); zeros where no dynamic gives one."""
    U, E = env_state.tasks.g.shape
    terms = dynamics.drift_terms(env_state.carry, env_state.scenario, theta)
    return (terms.get("cpu_queue", jnp.zeros(E)), terms.get("qpu_queue", jnp.zeros(E)),
            terms.get("battery", jnp.zeros(U)))


def lyapunov_weights(config: SystemConfig, env_state, v: float, theta: float) -> Weights:
    """Drift-plus-penalty weights (dynamics-spec section 7): V on the cost, each queue's backlog wait on
    the work added to it, battery - theta on the device energy (LODCO's perturbation); these are the
    gradients of `lyapunov_function` with respect to a queue's wait and a battery's charge."""
    cpu_w, qpu_w, bat = _drift_terms(env_state, theta)
    return Weights(v=jnp.asarray(v, float), cpu_queue=cpu_w, qpu_queue=qpu_w, battery=bat)


def lyapunov_function(env_state, theta: float) -> jnp.ndarray:
    """The quadratic Lyapunov function L whose one-slot drift `lyapunov_weights` linearizes (dynamics-spec
    section 7): half the sum of squared queue waits (s^2) plus, with LODCO's perturbation, half the sum of
    squared (battery - theta) (J^2). Zero without queues and batteries. The learners' reward shaping uses it
    as a potential (`PPOConfig.shaping_v`)."""
    return 0.5 * sum(jnp.sum(t**2) for t in _drift_terms(env_state, theta))


def lyapunov_action(config: SystemConfig, env_state, v: float, theta: float, grid: int = GREEDY_GRID):
    """One slot of drift-plus-penalty: `slot_action` with `lyapunov_weights`."""
    return slot_action(config, env_state, lyapunov_weights(config, env_state, v, theta), grid)


def lyapunov_plan(config: SystemConfig, env_state, v: float, theta: float, grid: int = GREEDY_GRID) -> SlotPlan:
    """`lyapunov_action` with the slot cost it predicts for its action (`SlotPlan`)."""
    return slot_plan(config, env_state, lyapunov_weights(config, env_state, v, theta), grid)
