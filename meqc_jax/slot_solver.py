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
from meqc_jax.cost import option_costs, option_loads

GREEDY_GRID = 11  # phi in {0, 0.1, ..., 1}


@struct.dataclass
class Weights:
    """The score of `slot_action` (module docstring): the myopic greedy is `Weights.myopic()`."""

    v: jnp.ndarray  # [] weight of the slot's cost (Lyapunov's V)
    cpu_queue: jnp.ndarray  # [E] per second of CPU work added at e
    qpu_queue: jnp.ndarray  # [E] per second of QPU work added at e
    battery: jnp.ndarray  # [U] per joule of device energy (battery - theta; 0: energy priced by the cost only)

    @classmethod
    def myopic(cls, num_users: int, num_servers: int) -> Weights:
        zero_e = jnp.zeros(num_servers)
        return cls(v=jnp.ones(()), cpu_queue=zero_e, qpu_queue=zero_e, battery=jnp.zeros(num_users))


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
    if dynamics.active(config):
        U, E = env_state.tasks.g.shape
        return slot_action(config, env_state, Weights.myopic(U, E), grid)
    phis, classical, quantum, feasible, local = _tables(config, env_state, grid)
    return _place_arbitrated(config, phis, classical, quantum, feasible, local)


def _place_arbitrated(config: SystemConfig, phis, classical, quantum, feasible, local):
    """The scan of spec 11's greedy under Eq. 13b (one task per QPU, `config.arbitration` decides).

    A user that offloads a fraction to a server where its task is feasible requests that QPU
    (spec 8), so its effect on the score depends on the server's earlier requesters:
    `cheapest` -- exact: it wins the QPU iff its cost with the QPU is strictly lower than the
    holder's, and the holder then falls back to the server's CPUs;
    `arrival` -- in expectation over the random order: with m requesters each wins w.p. 1/m.
    Keeping everything local is always a candidate, so greedy is never worse than `local` (exactly
    under `cheapest`, in expectation under `arrival`).
    """
    U, E = feasible.shape
    cheapest = config.arbitration == "cheapest"

    def place(carry, u):
        cc, cq, f = classical[:, u, :], quantum[:, u, :], feasible[u][None, :]  # [P, E]
        if cheapest:
            held, hold_q, hold_c = carry
            steal = cq < hold_q[None, :]
            d_request = jnp.where(held[None, :], jnp.where(steal, cq + (hold_c - hold_q)[None, :], cc), cq)
        else:
            count, gain_sum = carry  # requesters per server, sum of their (c_Q - c_E)
            prev = jnp.where(count > 0, gain_sum / jnp.maximum(count, 1), 0.0)
            d_request = cc + (gain_sum[None, :] + cq - cc) / (count[None, :] + 1) - prev[None, :]
        delta = jnp.where(f, d_request, cc).ravel()  # [P * E]
        best = jnp.argmin(delta)
        offload = delta[best] < local[u]  # ties keep the task local
        p, e = best // E, best % E
        requests = offload & feasible[u, e]
        if cheapest:
            wins = requests & (~held[e] | (cq[p, e] < hold_q[e]))
            carry = (held.at[e].set(held[e] | requests),
                     hold_q.at[e].set(jnp.where(wins, cq[p, e], hold_q[e])),
                     hold_c.at[e].set(jnp.where(wins, cc[p, e], hold_c[e])))
        else:
            carry = (count.at[e].add(requests.astype(count.dtype)),
                     gain_sum.at[e].add(jnp.where(requests, cq[p, e] - cc[p, e], 0.0)))
        return carry, (jnp.where(offload, e, 0).astype(jnp.int32), jnp.where(offload, phis[p], 1.0))

    zeros = jnp.zeros(E)
    init = (jnp.zeros(E, bool), zeros, zeros) if cheapest else (jnp.zeros(E, jnp.int32), zeros)
    _, (server, phi) = jax.lax.scan(place, init, jnp.arange(U))
    return server, phi


def slot_action(config: SystemConfig, env_state, weights: Weights, grid: int = GREEDY_GRID):
    """The sequential placement under the carry of `env_state` with the score of `weights` (module
    docstring); returns the joint action (server [U] int, phi [U])."""
    sc, tk = env_state.scenario, env_state.tasks
    U, E = tk.g.shape
    cond = dynamics.conditions(env_state.carry, config, sc, tk)
    phis, classical, quantum, feasible, local = _tables(config, env_state, grid, cond)
    loads = jax.vmap(lambda p: option_loads(config, sc, tk, jnp.full((U,), p)))(phis)  # [P, U, E]
    e_local = option_loads(config, sc, tk, jnp.ones(U)).device_energy[:, 0]
    has_task = jnp.ones(U, bool) if cond is None or cond.has_task is None else cond.has_task
    battery = None if cond is None else cond.battery
    drop = sc.lam_d * config.drop_penalty  # [U], the cost of a dropped task (dynamics-spec section 5)
    v = weights.v
    # the battery rule and term (dynamics-spec sections 3 and 7), per option
    bw = weights.battery[None, :, None]
    score_c = v * classical - bw * loads.device_energy
    score_q = v * quantum - bw * loads.device_energy
    score_l = v * local - weights.battery * e_local
    if battery is not None:
        short = loads.device_energy > battery[None, :, None]
        score_c = jnp.where(short, v * drop[None, :, None], score_c)
        score_q = jnp.where(short, v * drop[None, :, None], score_q)
        score_l = jnp.where(e_local > battery, v * drop, score_l)
        served_c = ~short
    else:
        served_c = jnp.ones_like(classical, bool)
    # a user without a task acts locally at no cost (its action is ignored)
    score_l = jnp.where(has_task, score_l, 0.0)
    if cond is None or not cond.queued:
        off = jnp.where(has_task[None, :, None], 0.0, 1.0)  # any offload costs more than 0
        score_c = jnp.where(has_task[None, :, None], score_c, off)
        score_q = jnp.where(has_task[None, :, None], score_q, off)
        return _place_arbitrated(config, phis, score_c, score_q, feasible, score_l)
    return _place_queued(config, phis, sc.lam_d, drop, score_c, score_q, score_l, served_c, feasible, has_task,
                         loads, cond, weights)


def _place_queued(config, phis, lam_d, drop, score_c, score_q, score_l, served, feasible, has_task, loads, cond,
                  weights):
    """The scan under `queues`: a feasible requester runs on the QPU, anyone else on the CPUs, each
    queue first-in first-out (dynamics-spec section 2)."""
    U, E = feasible.shape
    v = weights.v
    cheapest = config.arbitration == "cheapest"
    ahead_share = 1.0 if cheapest else 0.5  # the chance that an earlier-placed user is ahead
    behind_share = 0.0 if cheapest else 0.5  # the chance that it is behind (it then waits for us)
    wait_c = jnp.zeros(E) if cond.cpu_wait is None else cond.cpu_wait
    wait_q = jnp.zeros(E) if cond.qpu_wait is None else cond.qpu_wait

    def place(carry, u):
        work_c, lam_c, work_q, lam_q = carry  # [E] seconds placed and sum of lam_d placed, per queue
        quantum = feasible[u][None, :]  # [1, E]
        work = jnp.where(quantum, loads.qpu_seconds[:, u, :], loads.cpu_seconds[:, u, :])  # [P, E]
        placed_work = jnp.where(quantum, work_q, work_c)[None, :]
        placed_lam = jnp.where(quantum, lam_q, lam_c)[None, :]
        extra = ahead_share * placed_work  # expected wait behind the slot's earlier arrivals
        wait = jnp.where(quantum, wait_q, wait_c)[None, :] + extra
        queue_w = jnp.where(quantum, weights.qpu_queue, weights.cpu_queue)[None, :]
        base = jnp.where(quantum, score_q[:, u, :], score_c[:, u, :])
        score = base + v * (lam_d[u] * extra + behind_share * work * placed_lam) + queue_w * work
        ok = served[:, u, :] & (wait <= config.max_wait)
        score = jnp.where(ok, score, v * drop[u]).ravel()
        best = jnp.argmin(score)
        offload = has_task[u] & (score[best] < score_l[u])  # ties keep the task local
        p, e = best // E, best % E
        joins = offload & ok.ravel()[best]
        w = jnp.where(joins, work.ravel()[best], 0.0)
        lu = jnp.where(joins, lam_d[u], 0.0)
        q = quantum[0, e]
        carry = (work_c.at[e].add(jnp.where(q, 0.0, w)), lam_c.at[e].add(jnp.where(q, 0.0, lu)),
                 work_q.at[e].add(jnp.where(q, w, 0.0)), lam_q.at[e].add(jnp.where(q, lu, 0.0)))
        return carry, (jnp.where(offload, e, 0).astype(jnp.int32), jnp.where(offload, phis[p], 1.0))

    zeros = jnp.zeros(E)
    _, (server, phi) = jax.lax.scan(place, (zeros, zeros, zeros, zeros), jnp.arange(U))
    return server, phi


def _drift_terms(env_state, theta: float):
    """The carry's terms of the quadratic Lyapunov function (dynamics-spec section 7): each CPU queue's
    backlog wait cpu_backlog / f_edge [E] (s), each QPU queue's backlog qpu_backlog [E] (s) and each
    battery's distance to LODCO's target, battery - theta [U] (J); zeros where a dynamic is off."""
    U, E = env_state.tasks.g.shape
    carry = env_state.carry
    if "queues" in carry:
        cpu_w = carry["queues"]["cpu_backlog"] / env_state.scenario.f_edge
        qpu_w = carry["queues"]["qpu_backlog"]
    else:
        cpu_w = qpu_w = jnp.zeros(E)
    bat = carry["battery"]["battery"] - theta if "battery" in carry else jnp.zeros(U)
    return cpu_w, qpu_w, bat


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
