"""One slot's price: Eq. 12 under Eq. 13b, with what carried state imposes (`SlotConditions`).

`slot_cost` prices a joint action of all users; `CostBreakdown` returns the cost, its parts and what
a dynamic's carry update needs. The QPU arbitration (`arbitrate`, model-spec section 8), the slot's
arrival order and the in-slot FIFO prefix (dynamics-spec section 2) live here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from meqc_jax import physics
from meqc_jax.config import SystemConfig
from meqc_jax.cost.sharing import sharers, uplink_share
from meqc_jax.cost.terms import classical_terms, feasibility, quantum_terms, sanitize_action, weighted_cost
from meqc_jax.tasks import Scenario, Tasks


@struct.dataclass
class CostBreakdown:
    """Cost of one slot (Eq. 12) and its parts. Shapes for U users and E servers."""

    total: jnp.ndarray  # [] system cost C, Eq. 12
    per_user: jnp.ndarray  # [U] c_L + (1 - I) c_E + I c_Q (or the `parallel` variant)
    latency: jnp.ndarray  # [U] seconds: local + offloaded (`sum`) or their max (`parallel`)
    energy: jnp.ndarray  # [U] joules: local + transmission + edge (CPU or QPU)
    quantum: jnp.ndarray  # [U] bool, I_u: the user's task holds its server's QPU this slot
    requested: jnp.ndarray  # [U] bool, phi < 1 and the chosen server is feasible (spec 8)
    feasible: jnp.ndarray  # [U, E] bool, Eq. 11 for every user-server pair
    server: jnp.ndarray  # [U] int, the server actually used (after clipping)
    phi: jnp.ndarray  # [U] the local fraction actually used (after clipping)
    clipped_server: jnp.ndarray  # [] int, users whose server index was out of range
    clipped_phi: jnp.ndarray  # [] int, users whose phi was outside [0, 1] or NaN
    # What a dynamic's carry update needs (meqc_jax.dynamics): the slot's outcome per user.
    device_energy: jnp.ndarray  # [U] J spent on the device, e_L + e_O (Eqs. 1, 3; dynamics-spec section 3's e_dev)
    cpu_cycles: jnp.ndarray  # [U] cycles of the offloaded part run on the server's CPUs (0 if local or on a QPU)
    qpu_seconds: jnp.ndarray  # [U] s of QPU execution, d_Q of Eq. 7 (0 unless granted the QPU)
    # dynamics-spec sections 1 and 5 (the paper's model: every user has a task, none is dropped)
    has_task: jnp.ndarray  # [U] bool, the user had a task this slot (a user without one costs 0)
    dropped: jnp.ndarray  # [U] bool, the task was dropped (costs lam_d drop_penalty, no energy)
    drop_reason: jnp.ndarray  # [U] int32, DROP_NONE, DROP_QUEUE or DROP_BATTERY
    ignored: jnp.ndarray  # [] int, users without a task whose action was ignored
    # the slot's arrival order (dynamics-spec section 2; model-spec section 8's `arrival` rule): a priority per
    # user, lower arrives first; the user index under `cheapest` (or where no key was given to a planner's replay)
    arrival: jnp.ndarray  # [U] float


DROP_NONE, DROP_QUEUE, DROP_BATTERY = 0, 1, 2


DROP_REASONS = ("none", "queue", "battery")


@struct.dataclass
class SlotConditions:
    """What carried state (meqc_jax.dynamics) imposes on pricing one slot.

    Every field is optional; `None` leaves that part of the paper's model untouched, and the
    default (all None) prices a slot exactly as Eqs. 1-13b do, bit for bit. A dynamic fills the
    fields from its carry through `dynamics.conditions`.
    """

    # dynamics-spec section 2: the backlog ahead of a new arrival, added to d_O + d_E (CPU) or d_O + d_Q (QPU)
    cpu_wait: jnp.ndarray | None = None  # [E] s a task offloaded to e's CPUs waits before service
    qpu_wait: jnp.ndarray | None = None  # [E] s a task granted e's QPU waits before service
    # section 1: which users have a task this slot ([U] bool); None: all (the paper)
    has_task: jnp.ndarray | None = None
    # section 3: each device's battery charge, J ([U]); a task needing more device energy is dropped
    battery: jnp.ndarray | None = None
    # section 8: users offloading to one server share its uplink ("equal" or "interference", see
    # `uplink_share`) and, without queues, its CPU (processor sharing); None: each has the whole of both
    contention: str | None = struct.field(pytree_node=False, default=None)
    # section 2: the servers are FIFO queues. The slot's arrivals at a server queue behind its backlog
    # and behind each other in arrival order, every feasible QPU requester runs on the QPU (Eq. 13b
    # becomes a queue), and a task whose wait would exceed `max_wait_s` is dropped.
    queued: bool = struct.field(pytree_node=False, default=False)


def arbitrate(rule: str, server, requested, cost_if_granted, key, num_servers: int, preferred=None, order=None):
    """Eq. 13b, spec 8: among each server's QPU requesters exactly one is granted.

    `arrival`: a fresh uniformly random arrival order (drawn from `key`), first requester wins.
    `cheapest`: the requester with the lowest whole per-user cost with the QPU wins; ties go to the
    lowest user index (argmin returns the first minimum). `key` is unused.
    `preferred` (bool [U], optional) overrides the rule for a central planner (the oracle): at each
    server a preferred requester wins (the lowest-index one if several); a server none of whose
    requesters is preferred grants its lowest-index requester, so the invariant holds for any input.
    `order` (float [U], optional) is the arrival order already drawn from `key` (`arrival_priority`);
    passing it lets a caller that reads the order itself consume the key once.
    """
    U = server.shape[0]
    if preferred is not None:
        priority = jnp.where(jnp.asarray(preferred, dtype=bool), 0.0, 1.0)
    elif rule == "arrival" and order is not None:
        priority = order
    elif rule == "arrival":
        if key is None:
            raise ValueError("slot_cost: arbitration='arrival' draws the arrival order from `key`; got key=None")
        # jax.random, not prng: each word is read once per server below, and XLA would recompute the
        # written-out hash there (prng's docstring; the slot's pricing measured 2.8x slower with it)
        priority = jax.random.uniform(key, (U,))
    else:
        priority = cost_if_granted
    member = (server[:, None] == jnp.arange(num_servers)[None, :]) & requested[:, None]  # [U, E]
    score = jnp.where(member, priority[:, None], jnp.inf)
    winner = jnp.argmin(score, axis=0)  # [E]; meaningful only where the server has requesters
    return requested & (winner[server] == jnp.arange(U))


def slot_cost(
    config: SystemConfig, scenario: Scenario, tasks: Tasks, server, phi, key, preferred=None,
    conditions: SlotConditions | None = None,
) -> CostBreakdown:
    """Cost of one slot for the joint action (server [U], phi [U]): Eq. 12 under Eq. 13b.

    Every user pays its local part; its offloaded part runs on the QPU of `server[u]` if it is
    granted (spec 8: it requested, i.e. phi < 1 and Eq. 11 holds, and won the arbitration),
    else on that server's CPUs. U and E are read from the arrays' shapes; of `config` only the
    constants and the three model options are used. `key` drives the `arrival` rule only.
    `preferred` (bool [U]) lets a central planner pick each server's QPU winner (see `arbitrate`).
    `conditions` (from the carried state, see `SlotConditions`) add waits before edge service;
    None is the paper's model. The breakdown also returns what a carry update needs.
    """
    si = config.si
    conditions = SlotConditions() if conditions is None else conditions
    E = scenario.f_edge.shape[0]
    U = scenario.f_local.shape[0]
    server, phi, clipped_server, clipped_phi = sanitize_action(server, phi, E)
    profile = physics.qpu_profile(si, scenario.phys_qubits, scenario.k, tasks.t1_slot)
    _, feasible = feasibility(si, tasks.q, tasks.depth, profile)

    gain = jnp.take_along_axis(tasks.g, server[:, None], axis=1)[:, 0]
    # dynamics-spec sections 1, 3: who takes part in the slot (a user without a task, or whose device
    # lacks the energy for its action, neither requests a QPU nor joins a queue)
    has_task = jnp.ones(U, bool) if conditions.has_task is None else conditions.has_task
    bandwidth = noise = None
    if conditions.contention is not None:
        # section 8: every user with a task that offloads a part shares its server's uplink (a device that
        # then finds its battery short has still claimed its share: the rates are set before the drops)
        bandwidth, noise = uplink_share(conditions.contention, si, server, has_task & (phi < 1.0), scenario.p_tx,
                                        tasks.g)
    d_l, e_l, d_o, e_o, d_e, e_e = classical_terms(
        si, tasks.s, tasks.n, phi, scenario.f_local, scenario.p_tx, gain, scenario.f_edge[server], bandwidth, noise
    )
    d_q, e_q = quantum_terms(
        si, config.energy_model, tasks.s, tasks.q, phi,
        profile.latency_per_unit[server], profile.power_per_unit[server],
    )
    lam_d, lam_e = scenario.lam_d, scenario.lam_e
    d_cpu, d_qpu = d_o + d_e, d_o + d_q  # Eqs. 4 and 7 plus the uplink, Eq. 2
    # a backlog ahead of an offloaded part delays its edge service (a task kept whole at home waits for nothing)
    if conditions.cpu_wait is not None:
        d_cpu = d_cpu + jnp.where(phi < 1.0, conditions.cpu_wait[server], 0.0)
    if conditions.qpu_wait is not None:
        d_qpu = d_qpu + jnp.where(phi < 1.0, conditions.qpu_wait[server], 0.0)

    requested = (phi < 1.0) & feasible[jnp.arange(U), server]
    e_dev = e_l + e_o
    battery_drop = jnp.zeros(U, bool) if conditions.battery is None else has_task & (e_dev > conditions.battery)
    dyn = conditions.has_task is not None or conditions.battery is not None or conditions.queued
    if dyn:
        requested = requested & has_task & ~battery_drop
    queue_drop = jnp.zeros(U, bool)
    # the same draw `arbitrate` makes under `arrival` (one key, one shape), so recording it changes no number
    order = (arrival_priority(config.arbitration, key, U) if key is not None or config.arbitration != "arrival"
             else jnp.arange(U, dtype=float))
    if conditions.queued:
        # section 2: FIFO behind the backlog and the slot's earlier arrivals, in the arrival order
        if key is None and config.arbitration == "arrival":
            raise ValueError("slot_cost: arbitration='arrival' draws the arrival order from `key`; got key=None")
        granted = requested
        on_cpu = has_task & ~battery_drop & (phi < 1.0) & ~granted
        cycles = (1.0 - phi) * (tasks.s * tasks.n)
        # only an offloaded part waits (section 2): the in-slot wait is masked like the backlog's above, so a
        # task kept whole at home (phi = 1) pays its local cost whatever server its action names
        ahead_cpu = jnp.where(on_cpu, fifo_ahead(server, order, jnp.where(on_cpu, cycles, 0.0))
                              / scenario.f_edge[server], 0.0)
        ahead_qpu = jnp.where(granted, fifo_ahead(server, order, jnp.where(granted, d_q, 0.0)), 0.0)
        d_cpu, d_qpu = d_cpu + ahead_cpu, d_qpu + ahead_qpu
        w_cpu = ahead_cpu + (0.0 if conditions.cpu_wait is None else conditions.cpu_wait[server])
        w_qpu = ahead_qpu + (0.0 if conditions.qpu_wait is None else conditions.qpu_wait[server])
        # waits grow along the order, so dropping every task whose wait (counting all earlier arrivals)
        # exceeds the bound is exactly the sequential rule: the first one over it and all after it
        queue_drop = jnp.where(granted, w_qpu, jnp.where(on_cpu, w_cpu, 0.0)) > config.max_wait
        granted = granted & ~queue_drop
    cost_q, lat_q, en_q = weighted_cost(config.latency_model, lam_d, lam_e, d_l, e_l, d_qpu, e_o + e_q)
    if not conditions.queued:
        # the order drawn above is the arbitration's draw: passing it consumes the key once (no key reuse)
        granted = arbitrate(config.arbitration, server, requested, cost_q, key, E, preferred,
                            order if key is not None else None)
        if conditions.contention is not None:
            # section 8, processor sharing: the m_e users whose offloaded part runs on e's CPUs get f_edge / m_e each
            on_cpu = has_task & ~battery_drop & (phi < 1.0) & ~granted
            d_cpu = d_o + d_e * sharers(server, on_cpu, E)
    cost_c, lat_c, en_c = weighted_cost(config.latency_model, lam_d, lam_e, d_l, e_l, d_cpu, e_o + e_e)
    per_user = jnp.where(granted, cost_q, cost_c)
    latency = jnp.where(granted, lat_q, lat_c)
    energy = jnp.where(granted, en_q, en_c)
    cpu_cycles = jnp.where(granted, 0.0, (1.0 - phi) * (tasks.s * tasks.n))
    qpu_seconds = jnp.where(granted, d_q, 0.0)
    dropped = jnp.zeros(U, bool)
    reason = jnp.zeros(U, jnp.int32)
    if dyn:
        dropped = battery_drop | queue_drop
        reason = jnp.where(battery_drop, DROP_BATTERY, jnp.where(queue_drop, DROP_QUEUE, DROP_NONE)).astype(jnp.int32)
        # section 5: a dropped task costs lam_d drop_penalty and no energy; a user without a task costs nothing
        penalty = config.drop_penalty
        served = has_task & ~dropped
        per_user = jnp.where(dropped, lam_d * penalty, jnp.where(served, per_user, 0.0))
        latency = jnp.where(dropped, penalty, jnp.where(served, latency, 0.0))
        energy = jnp.where(served, energy, 0.0)
        e_dev = jnp.where(served, e_dev, 0.0)
        cpu_cycles = jnp.where(served, cpu_cycles, 0.0)
        qpu_seconds = jnp.where(served, qpu_seconds, 0.0)
        granted = granted & served
    return CostBreakdown(
        total=jnp.sum(per_user),
        per_user=per_user,
        latency=latency,
        energy=energy,
        quantum=granted,
        requested=requested,
        feasible=feasible,
        server=server,
        phi=phi,
        clipped_server=clipped_server,
        clipped_phi=clipped_phi,
        device_energy=e_dev,
        cpu_cycles=cpu_cycles,
        qpu_seconds=qpu_seconds,
        has_task=has_task,
        dropped=dropped,
        drop_reason=reason,
        ignored=jnp.sum((~has_task).astype(jnp.int32)),
        arrival=order,
    )


def arrival_priority(rule: str, key, num_users: int):
    """The slot's arrival order as a priority per user (lower arrives first): a fresh uniform draw
    under `arrival` (the same draw `arbitrate` uses), the user index under `cheapest` (dynamics-spec 2)."""
    if rule == "arrival":
        if key is None:
            raise ValueError("slot_cost: arbitration='arrival' draws the arrival order from `key`; got key=None")
        return jax.random.uniform(key, (num_users,))
    return jnp.arange(num_users, dtype=float)


# Up to this many users the FIFO prefix is a [U, U] masked sum (cheap and exact); above, a sort.
_PAIRWISE_FIFO_MAX_USERS = 64


def fifo_ahead(server, priority, work):
    """Work queued ahead of each user within the slot: the sum of `work` of the users at the same
    server that arrive earlier (lower `priority`; ties by user index). Shapes [U] -> [U]."""
    U = server.shape[0]
    idx = jnp.arange(U)
    if U <= _PAIRWISE_FIFO_MAX_USERS:
        earlier = (priority[None, :] < priority[:, None]) | ((priority[None, :] == priority[:, None])
                                                             & (idx[None, :] < idx[:, None]))
        ahead = (server[None, :] == server[:, None]) & earlier  # [u, v]: v is ahead of u
        return jnp.sum(jnp.where(ahead, work[None, :], 0.0), axis=1)
    order = jnp.lexsort((idx, priority, server))  # by server, then arrival
    w_sorted = work[order]
    s_sorted = server[order]
    incl = jnp.cumsum(w_sorted)
    # the cumulative work at the start of each server's run, subtracted to restart the sum per server
    start = jnp.concatenate([jnp.ones(1, bool), s_sorted[1:] != s_sorted[:-1]])
    run_base = jax.lax.cummax(jnp.where(start, jnp.arange(U), 0))
    ahead_sorted = (incl - w_sorted) - (incl - w_sorted)[run_base]
    return jnp.zeros(U, work.dtype).at[order].set(ahead_sorted)
