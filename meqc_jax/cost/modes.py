"""Joint modes under contention (dynamics-spec section 8): every user's option fixed at once, priced as
`slot_cost` prices its replay (`price_modes`), for the joint planners and DROO.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import struct

from meqc_jax import physics
from meqc_jax.config import SystemConfig
from meqc_jax.cost.options import HOLD_PHI
from meqc_jax.cost.sharing import sharers, uplink_share
from meqc_jax.cost.slot import arbitrate
from meqc_jax.cost.stages import SlotConditions, participants
from meqc_jax.cost.terms import classical_terms, feasibility, quantum_terms, uplink_rate, weighted_cost
from meqc_jax.tasks import Scenario, Tasks


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
    """The slot's `ModeTable` from the terms `slot_cost` uses. Of `conditions` only who takes part applies (the
    stages' `participate`): joint modes price shared servers (`price_modes`), not carried state, and their
    callers refuse a carry that changes more (tests/test_planner_consistency.py prices them against the env)."""
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
    has_task = participants(config, scenario, tasks, conditions)
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
