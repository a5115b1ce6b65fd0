"""Every option at once (spec 11): the per-user cost of each (user, server, CPU or QPU) choice at a split,
the best split per option, and the loads an option adds, for centralized baselines, the oracle and the
per-slot solver. Built by the same pipeline as `slot_cost` (`cost.stages`: its per-user phases on an option
grid), and tested equal to the env's replay (tests/test_planner_consistency.py).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import struct

from meqc_jax.config import SystemConfig
from meqc_jax.cost import stages
from meqc_jax.cost.stages import SlotConditions
from meqc_jax.cost.terms import weighted_cost
from meqc_jax.tasks import Scenario, Tasks


@struct.dataclass
class OptionCosts:
    """Per-user cost of every option at a given phi (spec 11), shapes [U, E]."""

    classical: jnp.ndarray  # whole per-user cost if the offloaded part runs on e's CPUs
    quantum: jnp.ndarray  # whole per-user cost if it runs on e's QPU (valid where `feasible`)
    feasible: jnp.ndarray  # bool, Eq. 11
    # bool: a stage drops the task of this option before it reaches the server (`cost.stages`' admit, e.g. a
    # device without the energy for it); the costs above are then what it would cost if it were served
    dropped: jnp.ndarray


def option_slot(config: SystemConfig, scenario: Scenario, tasks: Tasks, phi,
                conditions: SlotConditions | None = None) -> stages.PricedSlot:
    """Every (user, server) option at local fraction `phi` ([U] or [U, E]) through the per-user phases of the
    pricing pipeline (`cost.stages.own`), the code the env prices its chosen options with: who has a task
    (dynamics-spec section 1), the paper's terms (Eqs. 1-11, model-spec sections 5-7), what each option meets
    before Eq. 13b (the waits and drops of dynamics-spec sections 2, 3 and 5) and who would request a QPU
    (spec 8). A `PricedSlot` on the [U, E] option grid; Eq. 13b's grants and Eq. 12's sum are the planner's."""
    E = tasks.g.shape[1]
    phi = jnp.clip(jnp.asarray(phi, dtype=float), 0.0, 1.0)
    # users along axis 0 and servers along axis 1, broadcast only where they meet: the terms keep their
    # shapes ([U, 1] per user, [1, E] per server), so XLA fuses them as it always has (bit-identical numbers)
    phi = phi[:, None] if phi.ndim == 1 else phi
    return stages.own(config, scenario, tasks, jnp.arange(E, dtype=jnp.int32)[None, :], phi, conditions)


def option_terms(config: SystemConfig, scenario: Scenario, tasks: Tasks, phi, conditions: SlotConditions | None = None):
    """Latency and energy terms of every (user, server) option at `phi` (broadcast to [U, E]), under the
    carry's `conditions` exactly as `slot_cost` applies them: (feasible, (d_local, e_local), (d_cpu, e_cpu),
    (d_qpu, e_qpu)), the offloaded parts' latencies with the waits a stage puts ahead of them (`option_slot`)."""
    g = option_slot(config, scenario, tasks, phi, conditions)
    return g.feasible, (g.d_local, g.e_local), (g.d_cpu, g.e_tx + g.e_edge), (g.d_qpu, g.e_tx + g.e_q)


def option_costs(config: SystemConfig, scenario: Scenario, tasks: Tasks, phi,
                 conditions: SlotConditions | None = None) -> OptionCosts:
    """Whole per-user cost of every option at local fraction `phi` ([U] or [U, E]), spec 11.

    `classical[u, e]`: the offloaded part on e's CPUs; `quantum[u, e]`: on e's QPU (meaningful
    where `feasible[u, e]`). These are the terms `slot_cost` gathers for the chosen servers, under the
    same `conditions` (the carry's stages; None: the paper's model).
    """
    g = option_slot(config, scenario, tasks, phi, conditions)
    lam_d, lam_e = scenario.lam_d[:, None], scenario.lam_e[:, None]
    classical, _, _ = weighted_cost(config.latency_model, lam_d, lam_e, g.d_local, g.e_local, g.d_cpu,
                                    g.e_tx + g.e_edge)
    quantum, _, _ = weighted_cost(config.latency_model, lam_d, lam_e, g.d_local, g.e_local, g.d_qpu, g.e_tx + g.e_q)
    return OptionCosts(classical=classical, quantum=quantum, feasible=g.feasible,
                       dropped=jnp.broadcast_to(g.dropped, classical.shape))


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
    waits = option_slot(config, scenario, tasks, zeros, cond)  # the waits ahead of each option's edge service
    at0 = option_costs(config, scenario, tasks, zeros, cond)
    local = option_costs(config, scenario, tasks, jnp.ones(U), cond).classical[:, 0]
    cands_c = [(at0.classical, zeros)]
    cands_q = [(at0.quantum, zeros)]
    if config.latency_model == "parallel":
        if waits.wait_cpu is None and waits.wait_qpu is None:
            kink_c = d_c0 / (d_l1 + d_c0)
            kink_q = d_q0 / (d_l1 + d_q0)
        else:  # d_c0, d_q0 include the wait; the fraction that scales with 1 - phi does not
            w_c = 0.0 if waits.wait_cpu is None else waits.wait_cpu
            w_q = 0.0 if waits.wait_qpu is None else waits.wait_qpu
            kink_c = jnp.clip(d_c0 / (d_l1 + d_c0 - w_c), 0.0, 1.0)
            kink_q = jnp.clip(d_q0 / (d_l1 + d_q0 - w_q), 0.0, 1.0)
        cands_c.append((option_costs(config, scenario, tasks, kink_c, cond).classical, kink_c))
        cands_q.append((option_costs(config, scenario, tasks, kink_q, cond).quantum, kink_q))
    cands_c.append((jnp.broadcast_to(local[:, None], (U, E)), jnp.ones((U, E))))
    hold = jnp.full((U, E), HOLD_PHI)
    if waits.wait_qpu is None:
        cands_q.append((jnp.broadcast_to(local[:, None], (U, E)), hold))
    else:  # holding the QPU at phi -> 1 still queues behind the wait ahead of it
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
    g = option_slot(config, scenario, tasks, phi)
    shape = tasks.g.shape
    return OptionLoads(device_energy=jnp.broadcast_to(g.e_device, shape),
                       cpu_seconds=jnp.broadcast_to(g.d_edge, shape), qpu_seconds=jnp.broadcast_to(g.d_q, shape))
