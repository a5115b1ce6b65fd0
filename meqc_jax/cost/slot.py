"""One slot's price: Eq. 12 under Eq. 13b, with what carried state imposes (`SlotConditions`, the pricing
stages of `cost.stages`).

`slot_cost` prices a joint action of all users through the pipeline of `cost.stages` and `breakdown` sums
it (Eq. 12); `CostBreakdown` returns the cost, its parts and what a dynamic's carry update needs. The QPU
arbitration (`arbitrate`, model-spec section 8) and the slot's arrival order live here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from meqc_jax.config import SystemConfig
from meqc_jax.cost import stages
from meqc_jax.cost.stages import SlotConditions
from meqc_jax.cost.terms import sanitize_action, weighted_cost
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
    drop_reason: jnp.ndarray  # [U] int32, 0 (not dropped) or the dropping dynamic's code (`dynamics.drop_reasons`)
    ignored: jnp.ndarray  # [] int, users without a task whose action was ignored
    # the slot's arrival order (dynamics-spec section 2; model-spec section 8's `arrival` rule): a priority per
    # user, lower arrives first; the user index under `cheapest` (or where no key was given to a planner's replay)
    arrival: jnp.ndarray  # [U] float


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
    `conditions` (the carry's pricing stages, `cost.stages`) change the slot where a dynamic is on;
    None is the paper's model. The breakdown also returns what a carry update needs.
    """
    E = scenario.f_edge.shape[0]
    U = scenario.f_local.shape[0]
    server, phi, clipped_server, clipped_phi = sanitize_action(server, phi, E)
    slot = stages.joint(config, scenario, tasks, server, phi, conditions)
    lam_d, lam_e = scenario.lam_d, scenario.lam_e
    # the slot's arrival order: the same draw `arbitrate` makes under `arrival` (one key, one shape), so
    # recording it changes no number
    drawn = key is not None or config.arbitration != "arrival"
    order = arrival_priority(config.arbitration, key, U) if drawn else jnp.arange(U, dtype=float)
    slot = slot.replace(order=order, order_drawn=drawn)
    if slot.every_request:
        slot = slot.replace(granted=slot.requested)
    else:
        cost_q, _, _ = weighted_cost(config.latency_model, lam_d, lam_e, slot.d_local, slot.e_local, slot.d_qpu,
                                     slot.e_tx + slot.e_q)
        # the order drawn above is the arbitration's draw: passing it consumes the key once (no key reuse)
        slot = slot.replace(granted=arbitrate(config.arbitration, server, slot.requested, cost_q, key, E, preferred,
                                              order if key is not None else None))
    slot = stages.serve(slot, conditions, config, scenario, tasks)
    return breakdown(config, scenario, tasks, slot, clipped_server, clipped_phi)


def breakdown(config: SystemConfig, scenario: Scenario, tasks: Tasks, slot: stages.PricedSlot, clipped_server=0,
              clipped_phi=0) -> CostBreakdown:
    """The cost of a priced joint slot: each user's weighted cost (Eqs. 1-9 weighed by lam_d and lam_e, model-spec
    sections 5 and 7; `latency_model` "sum" or "parallel", spec 9), the QPU cost for a user granted its server's
    QPU by Eq. 13b (spec 8) and the CPU cost otherwise, summed over the users (Eq. 12, spec 9). Where a stage
    masks users (`PricedSlot.masked`): a dropped task costs lam_d drop_penalty and no energy and a user without
    a task costs nothing (dynamics-spec sections 1 and 5). Also what a dynamic's carry update reads: the device
    energy (e_L + e_O of Eqs. 1 and 3, dynamics-spec section 3), CPU cycles and QPU seconds (d_Q of Eq. 7)."""
    lam_d, lam_e = scenario.lam_d, scenario.lam_e
    granted, phi = slot.granted, slot.phi
    d_l, e_l = slot.d_local, slot.e_local
    cost_q, lat_q, en_q = weighted_cost(config.latency_model, lam_d, lam_e, d_l, e_l, slot.d_qpu, slot.e_tx + slot.e_q)
    cost_c, lat_c, en_c = weighted_cost(config.latency_model, lam_d, lam_e, d_l, e_l, slot.d_cpu,
                                        slot.e_tx + slot.e_edge)
    per_user = jnp.where(granted, cost_q, cost_c)
    latency = jnp.where(granted, lat_q, lat_c)
    energy = jnp.where(granted, en_q, en_c)
    e_dev = slot.e_device
    cpu_cycles = jnp.where(granted, 0.0, (1.0 - phi) * (tasks.s * tasks.n))
    qpu_seconds = jnp.where(granted, slot.d_q, 0.0)
    has_task, dropped = slot.has_task, slot.dropped
    if slot.masked:
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
        requested=slot.requested,
        feasible=slot.feasible,
        server=slot.server,
        phi=phi,
        clipped_server=jnp.asarray(clipped_server, jnp.int32),
        clipped_phi=jnp.asarray(clipped_phi, jnp.int32),
        device_energy=e_dev,
        cpu_cycles=cpu_cycles,
        qpu_seconds=qpu_seconds,
        has_task=has_task,
        dropped=dropped,
        drop_reason=slot.drop_reason,
        ignored=jnp.sum((~has_task).astype(jnp.int32)),
        arrival=slot.order,
    )


def arrival_priority(rule: str, key, num_users: int):
    """The slot's arrival order as a priority per user (lower arrives first): a fresh uniform draw
    under `arrival` (the same draw `arbitrate` uses), the user index under `cheapest` (dynamics-spec 2)."""
    if rule == "arrival":
        if key is None:
            raise ValueError("slot_cost: arbitration='arrival' draws the arrival order from `key`; got key=None")
        return jax.random.uniform(key, (num_users,))
    return jnp.arange(num_users, dtype=float)
