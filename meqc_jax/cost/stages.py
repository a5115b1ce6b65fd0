"""One slot priced as a pipeline of stages: the paper's terms (Eqs. 1-11), the stage each active dynamic
contributes, Eq. 13b's grants, then the weighted sum (Eq. 12, in `cost.slot`).

A `Stage` is what one dynamic adds to pricing a slot (its module in `meqc_jax.dynamics` defines it and
builds it from its carry through `Dynamic.stage`); this module knows no dynamic, only the points at which
a stage may act and what it may change there (`PricedSlot`). In the order `price` runs them:

    participate  who takes part in the slot (`has_task`)                      every user on its own
    share        the uplink each user gets (`bandwidth`, `noise`)               joint: depends on the others
      -- the paper's terms at each user's chosen server (`paper_terms`, Eqs. 1-8, 10-11) --
    admit        what the user's own choice meets before Eq. 13b: a wait ahead   every user on its own
                 of the edge service (`wait`), a drop (`drop`), a grant rule
      -- Eq. 13b: each server's QPU granted to one requester (`cost.slot.arbitrate`), or to every
         requester where a stage said so (`every_request`) --
    serve        what the grants imply for the slot's users together: in-slot   joint
                 waits, shared processors, more drops

The option tables of the planners (`cost.options`) run the per-user phases, participate and admit, on
an option grid (every server for every user: `server` and `phi` of shape [U, E]), so a planner and the
env price an option by the same code. A stage's hooks must therefore broadcast over `server`'s shape
(`PricedSlot.per_user` lifts a per-user array to it). The paper's model is the empty pipeline.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import struct

from meqc_jax import physics
from meqc_jax.config import SystemConfig
from meqc_jax.cost.terms import classical_terms, feasibility, quantum_terms
from meqc_jax.tasks import Scenario, Tasks

NO_DROP = 0  # `PricedSlot.drop_reason` of a task that is not dropped; a dynamic's own reasons are 1, 2, ...


@struct.dataclass
class PricedSlot:
    """What pricing knows about one slot at each point of the pipeline (module docstring).

    Shapes "S": [U] for a joint action; on an option grid `server` is [1, E] (every server) and each field
    broadcasts between [U, 1] (a per-user term) and [1, E] to [U, E]; per user [U]. Term fields are None
    until `paper_terms` fills them.
    """

    server: jnp.ndarray  # S int, the server each user's offloaded part goes to
    phi: jnp.ndarray  # S, the local fraction
    has_task: jnp.ndarray  # [U] bool, the user has a task this slot (dynamics-spec section 1)
    dropped: jnp.ndarray  # S bool, the task is dropped (priced lam_d drop_penalty, no energy: section 5)
    drop_reason: jnp.ndarray  # S int32, NO_DROP or the code of the stage that dropped it
    order: jnp.ndarray | None = None  # [U] the slot's arrival priority (lower first), set before `serve`
    bandwidth: jnp.ndarray | None = None  # S Hz of uplink each user gets (None: the configuration's band)
    noise: jnp.ndarray | None = None  # S W of noise it sees (None: the configuration's)
    feasible: jnp.ndarray | None = None  # [U, E] bool, Eq. 11
    d_local: jnp.ndarray | None = None  # S s, Eq. 1
    e_local: jnp.ndarray | None = None  # S J, Eq. 1
    d_tx: jnp.ndarray | None = None  # S s, Eq. 2
    e_tx: jnp.ndarray | None = None  # S J, Eq. 3
    d_edge: jnp.ndarray | None = None  # S s on the server's CPUs, Eq. 4
    e_edge: jnp.ndarray | None = None  # S J, Eq. 5
    d_q: jnp.ndarray | None = None  # S s on the server's QPU, Eq. 7
    e_q: jnp.ndarray | None = None  # S J, Eq. 8
    e_device: jnp.ndarray | None = None  # S J spent on the device, e_L + e_O (Eqs. 1, 3; dynamics-spec 3's e_dev)
    d_cpu: jnp.ndarray | None = None  # S s from sending to the end of CPU service: d_O + d_E + waits
    d_qpu: jnp.ndarray | None = None  # S s from sending to the end of QPU service: d_O + d_Q + waits
    wait_cpu: jnp.ndarray | None = None  # S s a stage made an offloaded part wait before CPU service (admit)
    wait_qpu: jnp.ndarray | None = None  # S s ... before QPU service
    requested: jnp.ndarray | None = None  # S bool, phi < 1, Eq. 11 holds and the task takes part (spec 8)
    granted: jnp.ndarray | None = None  # S bool, holds its server's QPU (Eq. 13b, after `serve`'s drops)
    # a stage took part in pricing: users without a task cost 0 and dropped tasks their penalty (sections 1, 5)
    masked: bool = struct.field(pytree_node=False, default=False)
    # Eq. 13b granted to every feasible requester (the QPU serves its requesters in turn) instead of to one
    every_request: bool = struct.field(pytree_node=False, default=False)
    # `order` is the slot's drawn arrival order (False: the user index, because a planner gave no key)
    order_drawn: bool = struct.field(pytree_node=False, default=True)

    def at_server(self, x):
        """A per-server array ([E]) read at each user's server: x[server] for a joint action, the row x[None, :]
        on an option grid (whose `server` is every server, `arange(E)[None, :]`: read without a gather, so XLA
        fuses the grid's terms as it fuses a row)."""
        x = jnp.asarray(x)
        return x[self.server] if self.server.ndim == 1 else x[None, :]

    def per_user(self, x):
        """A per-user array ([U]) lifted to `server`'s shape (a column on an option grid)."""
        x = jnp.asarray(x)
        return x if self.server.ndim == 1 else x.reshape(x.shape + (1,) * (self.server.ndim - 1))

    @property
    def active(self):
        """S bool: the user has a task that is not dropped (so far)."""
        return self.per_user(self.has_task) & ~self.dropped

    def drop(self, mask, reason: int) -> PricedSlot:
        """Drop the tasks of `mask` (S bool) not dropped yet, recording `reason` (a dynamic's drop code)."""
        new = mask & ~self.dropped
        return self.replace(dropped=self.dropped | mask, drop_reason=jnp.where(new, reason, self.drop_reason)
                            .astype(jnp.int32), masked=True)

    def wait(self, cpu, qpu) -> PricedSlot:
        """Add a wait ahead of the edge service (S seconds, or None) to an offloaded part (phi < 1): a task
        kept whole at home waits for nothing (dynamics-spec section 2)."""
        slot = self
        if cpu is not None:
            slot = slot.replace(d_cpu=slot.d_cpu + jnp.where(slot.phi < 1.0, cpu, 0.0),
                                wait_cpu=cpu if slot.wait_cpu is None else slot.wait_cpu + cpu)
        if qpu is not None:
            slot = slot.replace(d_qpu=slot.d_qpu + jnp.where(slot.phi < 1.0, qpu, 0.0),
                                wait_qpu=qpu if slot.wait_qpu is None else slot.wait_qpu + qpu)
        return slot


class Stage:
    """What one dynamic adds to pricing a slot (module docstring). Subclass as a `flax.struct.dataclass`
    (its arrays, read off the carry, are pytree fields; its settings static fields) and override the hooks
    it needs; each takes the `PricedSlot` and returns it changed. Defaults leave it unchanged."""

    def participate(self, slot: PricedSlot, config: SystemConfig, scenario: Scenario, tasks: Tasks) -> PricedSlot:
        return slot

    def share(self, slot: PricedSlot, config: SystemConfig, scenario: Scenario, tasks: Tasks) -> PricedSlot:
        return slot

    def admit(self, slot: PricedSlot, config: SystemConfig, scenario: Scenario, tasks: Tasks) -> PricedSlot:
        return slot

    def serve(self, slot: PricedSlot, config: SystemConfig, scenario: Scenario, tasks: Tasks) -> PricedSlot:
        return slot


@struct.dataclass
class SlotConditions:
    """What carried state (meqc_jax.dynamics) imposes on pricing one slot: the `Stage` of each active
    dynamic, in the order they run. The default (no stage) prices a slot exactly as Eqs. 1-13b do, bit for
    bit; `dynamics.conditions` builds it from the carry (`Dynamic.stage`)."""

    stages: tuple = ()


def start(server, phi, num_users: int) -> PricedSlot:
    """The slot before any stage or term: everyone has a task, nothing is dropped (the paper's model)."""
    return PricedSlot(server=server, phi=phi, has_task=jnp.ones(num_users, bool), dropped=jnp.zeros(server.shape, bool),
                      drop_reason=jnp.full(server.shape, NO_DROP, jnp.int32))


def _run(hook: str, slot: PricedSlot, conditions: SlotConditions | None, config, scenario, tasks) -> PricedSlot:
    for stage in () if conditions is None else conditions.stages:
        slot = getattr(stage, hook)(slot, config, scenario, tasks)
    return slot


def paper_terms(slot: PricedSlot, config: SystemConfig, scenario: Scenario, tasks: Tasks) -> PricedSlot:
    """Eqs. 1-8 at each user's chosen server (over the uplink `share` set), and Eqs. 10-11 for every pair."""
    si = config.si
    server, phi = slot.server, slot.phi
    profile = physics.qpu_profile(si, scenario.phys_qubits, scenario.k, tasks.t1_slot)
    _, feasible = feasibility(si, tasks.q, tasks.depth, profile)
    col = slot.per_user
    gain = tasks.g if server.ndim == 2 else jnp.take_along_axis(tasks.g, server[:, None], axis=1)[:, 0]
    d_l, e_l, d_o, e_o, d_e, e_e = classical_terms(
        si, col(tasks.s), col(tasks.n), phi, col(scenario.f_local), col(scenario.p_tx), gain,
        slot.at_server(scenario.f_edge), slot.bandwidth, slot.noise)
    d_q, e_q = quantum_terms(si, config.energy_model, col(tasks.s), col(tasks.q), phi,
                             slot.at_server(profile.latency_per_unit), slot.at_server(profile.power_per_unit))
    return slot.replace(feasible=feasible, d_local=d_l, e_local=e_l, d_tx=d_o, e_tx=e_o, d_edge=d_e, e_edge=e_e,
                        d_q=d_q, e_q=e_q, e_device=e_l + e_o, d_cpu=d_o + d_e, d_qpu=d_o + d_q)  # Eqs. 4 and 7 plus the uplink, Eq. 2


def requests(slot: PricedSlot) -> PricedSlot:
    """Who requests its server's QPU (model-spec section 8): a user who offloads (phi < 1) a task feasible on the
    chosen server (Eq. 11, spec 6); where a stage masks users, only one with a task that no stage dropped
    (dynamics-spec sections 1 and 5). On an option grid (`server` [1, E]) every (user, server) option."""
    U = slot.has_task.shape[0]
    at_server = slot.feasible if slot.server.ndim == 2 else slot.feasible[jnp.arange(U), slot.server]
    requested = (slot.phi < 1.0) & at_server
    if slot.masked:
        requested = requested & slot.active
    return slot.replace(requested=requested)


def own(config: SystemConfig, scenario: Scenario, tasks: Tasks, server, phi,
        conditions: SlotConditions | None = None) -> PricedSlot:
    """The per-user phases (participate, the paper's terms, admit, the requests) for a joint action (`server`,
    `phi` [U]) or an option grid (`server` = arange(E)[None, :], `phi` [U, 1] or [U, E]): what the option tables
    price (`cost.options.option_slot`)."""
    U = tasks.g.shape[0]
    slot = _run("participate", start(server, phi, U), conditions, config, scenario, tasks)
    return requests(_run("admit", paper_terms(slot, config, scenario, tasks), conditions, config, scenario, tasks))


def participants(config: SystemConfig, scenario: Scenario, tasks: Tasks, conditions: SlotConditions | None):
    """[U] bool: who has a task this slot under `conditions` (every stage's `participate`)."""
    U = tasks.g.shape[0]
    server = jnp.zeros(U, jnp.int32)
    return _run("participate", start(server, jnp.ones(U), U), conditions, config, scenario, tasks).has_task


def joint(config: SystemConfig, scenario: Scenario, tasks: Tasks, server, phi,
          conditions: SlotConditions | None = None) -> PricedSlot:
    """A joint action ([U] each) through participate, share, the paper's terms, admit and the requests."""
    U = tasks.g.shape[0]
    slot = _run("participate", start(server, phi, U), conditions, config, scenario, tasks)
    slot = _run("share", slot, conditions, config, scenario, tasks)
    return requests(_run("admit", paper_terms(slot, config, scenario, tasks), conditions, config, scenario, tasks))


def serve(slot: PricedSlot, conditions: SlotConditions | None, config, scenario, tasks) -> PricedSlot:
    """Every stage's `serve`, after the grants."""
    return _run("serve", slot, conditions, config, scenario, tasks)
