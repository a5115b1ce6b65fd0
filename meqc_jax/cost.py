"""The MEQC cost model: paper Eqs. 1-12 and 13b, as pinned down by spec sections 4-9.

Pure functions on arrays. `slot_cost` prices one slot's joint action; `option_costs` prices every
(user, server, classical/quantum) option at once, for centralized baselines and the oracle.

Contract inside jit (where nothing can raise): an out-of-range action is clipped (server into
[0, E-1], phi into [0, 1], a NaN phi becomes 1, i.e. keep the task local) and the number of
clipped users is reported in the breakdown. No input within the configuration's ranges yields
inf or NaN.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

from meqc_jax import physics
from meqc_jax.config import SystemConfig
from meqc_jax.units import SIParams
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


@struct.dataclass
class OptionCosts:
    """Per-user cost of every option at a given phi (spec 11), shapes [U, E]."""

    classical: jnp.ndarray  # whole per-user cost if the offloaded part runs on e's CPUs
    quantum: jnp.ndarray  # whole per-user cost if it runs on e's QPU (valid where `feasible`)
    feasible: jnp.ndarray  # bool, Eq. 11


# ---------------------------------------------------------------------------- actions
def sanitize_action(server, phi, num_servers: int):
    """Clip an action into range (documented contract); returns (server, phi, n_bad_server, n_bad_phi)."""
    server = jnp.asarray(server)
    if jnp.issubdtype(server.dtype, jnp.floating):
        server = jnp.where(jnp.isnan(server), 0.0, server)
        server = jnp.clip(jnp.round(server), 0, num_servers - 1).astype(jnp.int32)
    server = server.astype(jnp.int32)
    bad_server = (server < 0) | (server >= num_servers)
    phi = jnp.asarray(phi, dtype=float)
    bad_phi = jnp.isnan(phi) | (phi < 0.0) | (phi > 1.0)
    phi = jnp.clip(jnp.where(jnp.isnan(phi), 1.0, phi), 0.0, 1.0)
    return (
        jnp.clip(server, 0, num_servers - 1),
        phi,
        jnp.sum(bad_server.astype(jnp.int32)),
        jnp.sum(bad_phi.astype(jnp.int32)),
    )


# ---------------------------------------------------------------------------- cost terms
def classical_terms(si: SIParams, s, n, phi, f_local, p_tx, gain, f_edge, bandwidth=None, noise=None):
    """Eqs. 1-6 (spec 5), broadcasting: returns (d_L, e_L, d_O, e_O, d_E, e_E) in s and J.
    `bandwidth` (Hz) and `noise` (W) replace the configuration's where users share an uplink
    (dynamics-spec section 8, `uplink_share`); None is the paper's link."""
    cycles = s * n
    off = 1.0 - phi
    d_local = phi * cycles / f_local  # Eq. 1
    e_local = si.chip_coeff * phi * cycles  # Eq. 1
    rate = uplink_rate(si, p_tx, gain, bandwidth, noise)
    d_tx = off * 8.0 * s / rate  # Eq. 2 (s in bytes, rate in bits/s)
    e_tx = p_tx * d_tx  # Eq. 3
    d_edge = off * cycles / f_edge  # Eq. 4
    e_edge = si.chip_coeff * off * cycles  # Eq. 5
    return d_local, e_local, d_tx, e_tx, d_edge, e_edge


def uplink_rate(si: SIParams, p_tx, gain, bandwidth=None, noise=None):
    """Eq. 2's Shannon rate in bits/s, B log2(1 + p_tx g / noise), broadcasting; `bandwidth` and `noise`
    default to the configuration's (dynamics-spec section 8 shares them: `uplink_share`). log1p keeps a
    weak link's rate exact (and > 0) in float32."""
    bandwidth = si.bandwidth if bandwidth is None else bandwidth
    noise = si.noise_power if noise is None else noise
    return bandwidth * jnp.log1p(p_tx * gain / noise) / math.log(2.0)


def quantum_terms(si: SIParams, energy_model: str, s, q, phi, latency_per_unit, power_per_unit):
    """Eqs. 7-8 (spec 7): QPU latency and energy of the offloaded part, w = s / unit work units.

    `paper`: e_Q = (1-phi) w q (P_1 N_1 + P_2 N_2 + P_M N_M + P_Q 91^k), Eq. 8 read as joules.
    `power_time`: e_Q = d_Q x (same power), i.e. power times execution time.
    """
    work = (1.0 - phi) * (s / si.quantum_unit) * jnp.asarray(q, dtype=float)
    d_q = work * latency_per_unit  # Eq. 7
    if energy_model == "paper":
        e_q = work * power_per_unit  # Eq. 8 as printed
    else:
        e_q = d_q * power_per_unit
    return d_q, e_q


def weighted_cost(latency_model: str, lam_d, lam_e, d_local, e_local, d_off, e_off):
    """Per-user cost, latency and energy (Eqs. 1, 6, 9 combined as in Eq. 12; spec 9).

    `sum`: lam_d (d_local + d_off) + lam_e (e_local + e_off) = c_L + c_E (or c_L + c_Q).
    `parallel`: the local and offloaded parts run at once, latency max(d_local, d_off).
    """
    latency = d_local + d_off if latency_model == "sum" else jnp.maximum(d_local, d_off)
    energy = e_local + e_off
    return lam_d * latency + lam_e * energy, latency, energy


def feasibility(si: SIParams, q, depth, profile: physics.QPUProfile):
    """Eqs. 10-11 for every user-server pair: (success probability [U, E], feasible [U, E])."""
    q = jnp.asarray(q, dtype=float)[:, None]
    depth = jnp.asarray(depth, dtype=float)[:, None]
    success = physics.success_probability(q, depth, profile.eps_err[None, :], profile.k[None, :], si)
    return success, physics.feasible(q, profile.qcap[None, :], success, si)


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


# ---------------------------------------------------------------------------- slot cost
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


def uplink_share(rule: str, si: SIParams, server, offloading, p_tx, g):
    """Each user's uplink when the users offloading to one server share it (dynamics-spec section 8):
    (bandwidth [U] Hz, noise [U] W) for `classical_terms`, from `server` [U], `offloading` [U] bool (it
    sends a part this slot), `p_tx` [U] W and the gains `g` [U, E].

    `equal`: the n_e users offloading to e split its band, B / n_e each, at the plain noise.
    `interference`: each keeps the whole band; the received power of the others offloading to the
    same server, sum_{v != u} p_tx[v] g[v, e], is added to the noise.
    A user that does not offload gets the whole link (its rate is then unused)."""
    E = g.shape[1]
    if rule == "equal":
        return si.bandwidth / sharers(server, offloading, E), None
    if rule != "interference":
        raise ValueError(f"uplink_share: rule={rule!r} is invalid: allowed one of equal, interference")
    own = jnp.where(offloading, p_tx * jnp.take_along_axis(g, server[:, None], axis=1)[:, 0], 0.0)
    # the others' power: the server's received total less the user's own (clipped: float32 rounding never
    # goes below 0)
    return None, si.noise_power + jnp.maximum(server_sum(server, own, E) - own, 0.0)


def sharers(server, members, num_servers: int):
    """How many `members` ([U] bool) are at each user's server, itself included ([U] float, >= 1): n_e of
    the uplink's equal shares, or m_e of processor sharing, whose edge time is then d_E x m_e
    (dynamics-spec section 8)."""
    return jnp.maximum(server_sum(server, members.astype(float), num_servers), 1.0)


# Up to this many user-server pairs a per-server sum is a masked [U, E] reduction (no scatter: several times
# faster under nested vmaps on a CPU, e.g. the joint planners'); above, a scatter-add over the servers.
_ONE_HOT_MAX_PAIRS = 4096


def server_sum(server, x, num_servers: int):
    """For each user, the sum of `x` ([U]) over the users at its server, itself included ([U])."""
    if server.shape[0] * num_servers <= _ONE_HOT_MAX_PAIRS:
        at = (server[:, None] == jnp.arange(num_servers)[None, :]).astype(x.dtype)  # [U, E] one-hot
        return at @ (x @ at)  # x summed per server, then read back at each user's server
    return jnp.zeros(num_servers, x.dtype).at[server].add(x)[server]


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


def option_terms(config: SystemConfig, scenario: Scenario, tasks: Tasks, phi, conditions: SlotConditions | None = None):
    """Latency and energy terms of every (user, server) option at `phi` (broadcast to [U, E]), under the
    carry's `conditions` exactly as `slot_cost` applies them: (feasible, (d_local, e_local), (d_cpu, e_cpu),
    (d_qpu, e_qpu)), the offloaded parts' latencies with the backlog's wait (only where phi < 1)."""
    si = config.si
    profile = physics.qpu_profile(si, scenario.phys_qubits, scenario.k, tasks.t1_slot)
    _, feasible = feasibility(si, tasks.q, tasks.depth, profile)
    phi = jnp.clip(jnp.asarray(phi, dtype=float), 0.0, 1.0)
    phi = phi[:, None] if phi.ndim == 1 else phi
    col = lambda x: x[:, None]  # noqa: E731  users along axis 0
    row = lambda x: x[None, :]  # noqa: E731  servers along axis 1
    d_l, e_l, d_o, e_o, d_e, e_e = classical_terms(
        si, col(tasks.s), col(tasks.n), phi, col(scenario.f_local), col(scenario.p_tx), tasks.g, row(scenario.f_edge)
    )
    d_q, e_q = quantum_terms(
        si, config.energy_model, col(tasks.s), col(tasks.q), phi,
        row(profile.latency_per_unit), row(profile.power_per_unit),
    )
    d_cpu, d_qpu = d_o + d_e, d_o + d_q
    if conditions is not None and conditions.cpu_wait is not None:
        d_cpu = d_cpu + jnp.where(phi < 1.0, row(conditions.cpu_wait), 0.0)
    if conditions is not None and conditions.qpu_wait is not None:
        d_qpu = d_qpu + jnp.where(phi < 1.0, row(conditions.qpu_wait), 0.0)
    return feasible, (d_l, e_l), (d_cpu, e_o + e_e), (d_qpu, e_o + e_q)


def option_costs(config: SystemConfig, scenario: Scenario, tasks: Tasks, phi,
                 conditions: SlotConditions | None = None) -> OptionCosts:
    """Whole per-user cost of every option at local fraction `phi` ([U] or [U, E]), spec 11.

    `classical[u, e]`: the offloaded part on e's CPUs; `quantum[u, e]`: on e's QPU (meaningful
    where `feasible[u, e]`). These are the terms `slot_cost` gathers for the chosen servers, under the
    same `conditions` (the carry's waits; None: the paper's model).
    """
    feasible, (d_l, e_l), (d_c, e_c), (d_q, e_q) = option_terms(config, scenario, tasks, phi, conditions)
    lam_d, lam_e = scenario.lam_d[:, None], scenario.lam_e[:, None]
    classical, _, _ = weighted_cost(config.latency_model, lam_d, lam_e, d_l, e_l, d_c, e_c)
    quantum, _, _ = weighted_cost(config.latency_model, lam_d, lam_e, d_l, e_l, d_q, e_q)
    return OptionCosts(classical=classical, quantum=quantum, feasible=feasible)


# A QPU "holder" with phi -> 1 costs (in the limit) exactly the local cost; replaying that choice
# needs phi < 1 to request the QPU, so it is replayed at the largest float32 step below 1 that keeps
# 1 - phi exact (2^-23): the replay exceeds the limit by 2^-23 (c_Q(phi=0) - c_L) per holder.
HOLD_PHI = 1.0 - 2.0**-23


@struct.dataclass
class OptionTable:
    """Each user's best cost per option with its best phi in closed form (spec 11), for planners.

    Under `sum` the cost is linear in phi, so the best phi is 0 or 1; under `parallel` it is convex
    piecewise linear, with its kink where the local and offloaded latencies meet,
    phi* = D_off / (D_local + D_off), so the best phi is 0, phi* or 1. The value at phi = 1 is the
    local cost; for the quantum option it is the limit phi -> 1 (holding the QPU at no extra cost),
    replayed at `HOLD_PHI`.
    """

    local: jnp.ndarray  # [U] cost with phi = 1
    classical: jnp.ndarray  # [U, E] best cost offloading to e's CPUs
    quantum: jnp.ndarray  # [U, E] best cost offloading to e's QPU (only meaningful where feasible)
    phi_classical: jnp.ndarray  # [U, E] the phi achieving `classical`
    phi_quantum: jnp.ndarray  # [U, E] the phi achieving `quantum` (HOLD_PHI for the limit)
    feasible: jnp.ndarray  # [U, E] bool, Eq. 11


def option_table(config: SystemConfig, scenario: Scenario, tasks: Tasks,
                 conditions: SlotConditions | None = None) -> OptionTable:
    """Best split per user and option in closed form (spec 11): the input of the oracle's MIP.

    Under `conditions` a wait w ahead of the server is paid by any phi < 1: the cost stays linear in
    phi on [0, 1) (`sum`) or convex piecewise linear (`parallel`, kink at phi* = (D_off + w) /
    (D_local + D_off), clipped into [0, 1]), and phi = 1 is the local cost, so the same candidates
    stay exact."""
    U, E = tasks.g.shape
    zeros = jnp.zeros((U, E))
    cond = conditions
    feasible, (d_l1, _), _, _ = option_terms(config, scenario, tasks, jnp.ones(U), cond)  # local latency at phi = 1
    _, _, (d_c0, _), (d_q0, _) = option_terms(config, scenario, tasks, zeros, cond)  # offload latencies at phi = 0
    at0 = option_costs(config, scenario, tasks, zeros, cond)
    local = option_costs(config, scenario, tasks, jnp.ones(U), cond).classical[:, 0]
    cands_c = [(at0.classical, zeros)]
    cands_q = [(at0.quantum, zeros)]
    if config.latency_model == "parallel":
        if cond is None or (cond.cpu_wait is None and cond.qpu_wait is None):
            kink_c = d_c0 / (d_l1 + d_c0)
            kink_q = d_q0 / (d_l1 + d_q0)
        else:  # d_c0, d_q0 include the wait; the fraction that scales with 1 - phi does not
            w_c = 0.0 if cond.cpu_wait is None else cond.cpu_wait[None, :]
            w_q = 0.0 if cond.qpu_wait is None else cond.qpu_wait[None, :]
            kink_c = jnp.clip(d_c0 / (d_l1 + d_c0 - w_c), 0.0, 1.0)
            kink_q = jnp.clip(d_q0 / (d_l1 + d_q0 - w_q), 0.0, 1.0)
        cands_c.append((option_costs(config, scenario, tasks, kink_c, cond).classical, kink_c))
        cands_q.append((option_costs(config, scenario, tasks, kink_q, cond).quantum, kink_q))
    cands_c.append((jnp.broadcast_to(local[:, None], (U, E)), jnp.ones((U, E))))
    hold = jnp.full((U, E), HOLD_PHI)
    if cond is None or cond.qpu_wait is None:
        cands_q.append((jnp.broadcast_to(local[:, None], (U, E)), hold))
    else:  # holding the QPU at phi -> 1 still queues behind its backlog
        cands_q.append((option_costs(config, scenario, tasks, hold, cond).quantum, hold))

    def best(cands):
        costs = jnp.stack([c for c, _ in cands])
        phis = jnp.stack([p for _, p in cands])
        i = jnp.argmin(costs, axis=0)
        return jnp.take_along_axis(costs, i[None], 0)[0], jnp.take_along_axis(phis, i[None], 0)[0]

    classical, phi_c = best(cands_c)
    quantum, phi_q = best(cands_q)
    return OptionTable(local=local, classical=classical, quantum=quantum, phi_classical=phi_c,
                       phi_quantum=phi_q, feasible=feasible)


@struct.dataclass
class OptionLoads:
    """What every (user, server) option at a given phi puts on the device and the servers (dynamics-spec
    sections 2, 3, 7), shapes [U, E]: the inputs of carry-aware planners (`meqc_jax.slot_solver`)."""

    device_energy: jnp.ndarray  # J, e_L + e_O (the battery's e_dev)
    cpu_seconds: jnp.ndarray  # s of e's CPU time the offloaded part needs, (1 - phi) cycles / f_edge[e]
    qpu_seconds: jnp.ndarray  # s of e's QPU time, d_Q of Eq. 7


def option_loads(config: SystemConfig, scenario: Scenario, tasks: Tasks, phi) -> OptionLoads:
    """`OptionLoads` of every option at local fraction `phi` ([U] or [U, E]), the same terms `slot_cost` uses."""
    si = config.si
    profile = physics.qpu_profile(si, scenario.phys_qubits, scenario.k, tasks.t1_slot)
    phi = jnp.clip(jnp.asarray(phi, dtype=float), 0.0, 1.0)
    phi = phi[:, None] if phi.ndim == 1 else phi
    col = lambda x: x[:, None]  # noqa: E731
    row = lambda x: x[None, :]  # noqa: E731
    _, e_l, _, e_o, d_e, _ = classical_terms(
        si, col(tasks.s), col(tasks.n), phi, col(scenario.f_local), col(scenario.p_tx), tasks.g, row(scenario.f_edge)
    )
    d_q, _ = quantum_terms(si, config.energy_model, col(tasks.s), col(tasks.q), phi,
                           row(profile.latency_per_unit), row(profile.power_per_unit))
    shape = tasks.g.shape
    return OptionLoads(device_energy=jnp.broadcast_to(e_l + e_o, shape), cpu_seconds=jnp.broadcast_to(d_e, shape),
                       qpu_seconds=jnp.broadcast_to(d_q, shape))


# ---------------------------------------------------------------------------- joint modes (contention)
# A joint mode gives every user one of 1 + 2E options: 0 = local, 1 + e = offload to e's CPUs,
# 1 + E + e = offload to e's QPU. Under contention (dynamics-spec section 8) a user's cost depends on
# the others only through how many share its server's uplink and CPU (and, with interference, whose
# power reaches it), which the joint mode fixes; its best split is then its own closed-form choice.
def num_modes(num_servers: int) -> int:
    """Options per user in a joint mode: local, each server's CPUs, each server's QPU."""
    return 1 + 2 * num_servers


@struct.dataclass
class ModeTable:
    """What pricing joint modes needs from one slot, computed once: every (user, server) term with the
    whole task offloaded (phi = 0) over an unshared link and CPU. Shapes for U users and E servers."""

    lam_d: jnp.ndarray  # [U]
    lam_e: jnp.ndarray  # [U]
    feasible: jnp.ndarray  # [U, E] bool, Eq. 11
    has_task: jnp.ndarray  # [U] bool (dynamics-spec section 1)
    d_local: jnp.ndarray  # [U] s, the whole task at home (phi = 1), Eq. 1
    e_local: jnp.ndarray  # [U] J
    d_tx: jnp.ndarray  # [U, E] s, the upload over the whole band, Eq. 2
    d_cpu: jnp.ndarray  # [U, E] s on all of e's CPUs, Eq. 4
    e_cpu: jnp.ndarray  # [U, E] J, Eq. 5
    d_qpu: jnp.ndarray  # [U, E] s on e's QPU, Eq. 7
    e_qpu: jnp.ndarray  # [U, E] J, Eq. 8
    bits: jnp.ndarray  # [U] bits to upload, 8 s (Eq. 2)
    p_tx: jnp.ndarray  # [U] W
    g: jnp.ndarray  # [U, E] channel gains


@struct.dataclass
class ModeOutcome:
    """A joint mode priced at every user's best split (module comment above)."""

    per_user: jnp.ndarray  # [U] cost, Eq. 12's summands
    server: jnp.ndarray  # [U] int, the env action's server (0 for local users)
    phi: jnp.ndarray  # [U] the env action's split
    quantum: jnp.ndarray  # [U] bool, granted its server's QPU (the action's `preferred`)


def mode_table(config: SystemConfig, scenario: Scenario, tasks: Tasks,
               conditions: SlotConditions | None = None) -> ModeTable:
    """The slot's `ModeTable` from the terms `slot_cost` uses (only `has_task` of `conditions` applies:
    joint modes price contention without queues or batteries)."""
    si = config.si
    U, E = tasks.g.shape
    profile = physics.qpu_profile(si, scenario.phys_qubits, scenario.k, tasks.t1_slot)
    _, feasible = feasibility(si, tasks.q, tasks.depth, profile)
    col = lambda x: x[:, None]  # noqa: E731
    d_l, e_l, *_ = classical_terms(si, tasks.s, tasks.n, jnp.ones(U), scenario.f_local, scenario.p_tx,
                                   tasks.g[:, 0], scenario.f_edge[0])
    _, _, d_o, _, d_e, e_e = classical_terms(si, col(tasks.s), col(tasks.n), jnp.zeros((U, 1)), col(scenario.f_local),
                                             col(scenario.p_tx), tasks.g, scenario.f_edge[None, :])
    d_q, e_q = quantum_terms(si, config.energy_model, col(tasks.s), col(tasks.q), jnp.zeros((U, 1)),
                             profile.latency_per_unit[None, :], profile.power_per_unit[None, :])
    has_task = jnp.ones(U, bool) if conditions is None or conditions.has_task is None else conditions.has_task
    full = lambda x: jnp.broadcast_to(x, (U, E))  # noqa: E731
    return ModeTable(lam_d=scenario.lam_d, lam_e=scenario.lam_e, feasible=feasible, has_task=has_task, d_local=d_l,
                     e_local=e_l, d_tx=full(d_o), d_cpu=full(d_e), e_cpu=full(e_e), d_qpu=full(d_q), e_qpu=full(e_q),
                     bits=8.0 * tasks.s, p_tx=scenario.p_tx, g=tasks.g)


def price_modes(config: SystemConfig, table: ModeTable, mode, uplink: str | None = "equal") -> ModeOutcome:
    """Price the joint mode `mode` ([U] int in [0, 1 + 2E)) as `slot_cost` prices its replay.

    Realization: an offloader whose task is feasible at its server requests that QPU (spec 8); each
    server grants a user in QPU mode (the lowest index if several), else its lowest-index requester
    (`arbitrate` with `preferred`), the rest run on the CPUs. Sharing (dynamics-spec section 8), with
    n_e offloaders and m_e CPU users at e: the uplink as `uplink_share` (B / n_e each, or the co-server
    received power as noise) and processor sharing, the CPU time x m_e (`sharers`); None: no sharing
    (the paper's link and CPUs).
    Best split, per user, given the joint mode (the counts do not depend on how much each sends):
    the cost is linear in phi on [0, 1) under `sum` (so phi = 0) and convex piecewise linear under
    `parallel` (phi = 0 or the kink D_off / (D_local + D_off)); a QPU holder may also hold at
    phi -> 1 (`HOLD_PHI`, the local cost), which frees nothing but keeps the QPU from a CPU user.
    Users without a task cost 0 and act locally."""
    si = config.si
    U, E = table.g.shape
    mode = jnp.asarray(mode, jnp.int32)
    offload = (mode > 0) & table.has_task
    server = jnp.where(mode > 0, (mode - 1) % E, 0).astype(jnp.int32)
    at_server = server[:, None] == jnp.arange(E)[None, :]  # [U, E] one-hot
    pick = lambda x: jnp.sum(jnp.where(at_server, x, 0.0), axis=1)  # noqa: E731  x[u, server[u]] without a gather
    requested = offload & jnp.any(at_server & table.feasible, axis=1)
    quantum = arbitrate("cheapest", server, requested, jnp.zeros(U), None, E, preferred=mode > E)
    bandwidth = noise = None
    if uplink is not None:
        bandwidth, noise = uplink_share(uplink, si, server, offload, table.p_tx, table.g)
    if noise is None:  # the plain noise: Eq. 2's upload time scales with 1 / bandwidth (no log per joint mode)
        d_tx = pick(table.d_tx) * (1.0 if bandwidth is None else si.bandwidth / bandwidth)
    else:
        d_tx = table.bits / uplink_rate(si, table.p_tx, pick(table.g), bandwidth, noise)  # Eq. 2 at phi = 0
    d_cpu = pick(table.d_cpu)
    if uplink is not None:
        d_cpu = d_cpu * sharers(server, offload & ~quantum, E)
    d_off = d_tx + jnp.where(quantum, pick(table.d_qpu), d_cpu)  # phi = 0
    e_off = table.p_tx * d_tx + jnp.where(quantum, pick(table.e_qpu), pick(table.e_cpu))

    def at(phi):
        cost, _, _ = weighted_cost(config.latency_model, table.lam_d, table.lam_e, phi * table.d_local,
                                   phi * table.e_local, (1.0 - phi) * d_off, (1.0 - phi) * e_off)
        return cost

    zero = jnp.zeros(U)
    best, phi = at(zero), zero
    if config.latency_model == "parallel":
        kink = d_off / (table.d_local + d_off)
        c = at(kink)
        best, phi = jnp.where(c < best, c, best), jnp.where(c < best, kink, phi)
    c = at(jnp.full(U, HOLD_PHI))
    hold = quantum & (c < best)
    best, phi = jnp.where(hold, c, best), jnp.where(hold, HOLD_PHI, phi)
    local = at(jnp.ones(U))
    per_user = jnp.where(offload, best, jnp.where(table.has_task, local, 0.0))
    return ModeOutcome(per_user=per_user, server=jnp.where(offload, server, 0).astype(jnp.int32),
                       phi=jnp.where(offload, phi, 1.0), quantum=quantum)
