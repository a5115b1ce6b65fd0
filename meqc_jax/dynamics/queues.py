"""`queues`: server backlogs (dynamics-spec section 2).

Carry: `cpu_backlog[E]` (cycles waiting at each server's CPU) and `qpu_backlog[E]` (seconds of QPU
work waiting), both >= 0. A slot's arrivals queue first-in first-out behind the backlog and behind
each other (its pricing stage, `QueueStage`); every feasible QPU requester runs on the
QPU; a task whose wait would exceed `max_wait_s` is dropped, so a backlog stays below
`max_wait_s` plus one slot's admitted work and never overflows float32. At the slot's end each
server drains one slot (`slot_s`) of service:

    cpu_backlog[e] <- max(cpu_backlog[e] + sum_{u on e's CPU} (1 - phi_u) cycles_u - f_edge[e] tau, 0)
    qpu_backlog[e] <- max(qpu_backlog[e] + sum_{u on e's QPU} d_Q[u] - tau, 0)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from meqc_jax.cost import Stage
from meqc_jax.dynamics.base import Dynamic, ObsSpec


@struct.dataclass
class QueueStage(Stage):
    """Section 2's pricing: an offloaded part waits for the backlog ahead of its server's CPU or QPU (admit);
    every feasible QPU requester is granted (the QPU serves its requesters in turn), and the slot's arrivals
    at a server queue behind each other in arrival order; a task whose wait would exceed `max_wait_s` is
    dropped (serve)."""

    cpu_wait: jnp.ndarray  # [E] s a task offloaded to e's CPUs waits for the backlog before service
    qpu_wait: jnp.ndarray  # [E] s a task granted e's QPU waits before service
    code: int = struct.field(pytree_node=False)

    def admit(self, slot, config, scenario, tasks):
        return slot.wait(slot.at_server(self.cpu_wait), slot.at_server(self.qpu_wait)).replace(every_request=True)

    def serve(self, slot, config, scenario, tasks):
        if not slot.order_drawn:
            raise ValueError("slot_cost: arbitration='arrival' draws the arrival order from `key`; got key=None")
        server, phi, granted = slot.server, slot.phi, slot.granted
        on_cpu = slot.active & (phi < 1.0) & ~granted
        cycles = (1.0 - phi) * (tasks.s * tasks.n)
        # only an offloaded part waits: the in-slot wait is masked like the backlog's, so a task kept whole at
        # home (phi = 1) pays its local cost whatever server its action names
        ahead_cpu = jnp.where(on_cpu, fifo_ahead(server, slot.order, jnp.where(on_cpu, cycles, 0.0))
                              / scenario.f_edge[server], 0.0)
        ahead_qpu = jnp.where(granted, fifo_ahead(server, slot.order, jnp.where(granted, slot.d_q, 0.0)), 0.0)
        w_cpu = ahead_cpu + self.cpu_wait[server]
        w_qpu = ahead_qpu + self.qpu_wait[server]
        # waits grow along the order, so dropping every task whose wait (counting all earlier arrivals)
        # exceeds the bound is exactly the sequential rule: the first one over it and all after it
        queue_drop = jnp.where(granted, w_qpu, jnp.where(on_cpu, w_cpu, 0.0)) > config.max_wait
        slot = slot.replace(d_cpu=slot.d_cpu + ahead_cpu, d_qpu=slot.d_qpu + ahead_qpu, granted=granted & ~queue_drop)
        return slot.drop(queue_drop, self.code)


class Queues(Dynamic):
    name = "queues"
    drop_reason = "queue"
    description = "FIFO backlogs at each server's CPU and QPU, drained slot_s per slot; waits over max_wait_s drop"

    def init(self, key, config, scenario):
        E = config.num_servers
        return {"cpu_backlog": jnp.zeros(E), "qpu_backlog": jnp.zeros(E)}

    def stage(self, carry, config, scenario, tasks):
        return QueueStage(cpu_wait=carry["cpu_backlog"] / scenario.f_edge, qpu_wait=carry["qpu_backlog"],
                          code=self.drop_code)

    def update(self, carry, outcome, key, config, scenario, tasks):
        E = config.num_servers
        tau = config.slot_s
        cpu_in = jnp.zeros(E).at[outcome.server].add(outcome.cpu_cycles)
        qpu_in = jnp.zeros(E).at[outcome.server].add(outcome.qpu_seconds)
        return {"cpu_backlog": jnp.maximum(carry["cpu_backlog"] + cpu_in - scenario.f_edge * tau, 0.0),
                "qpu_backlog": jnp.maximum(carry["qpu_backlog"] + qpu_in - tau, 0.0)}

    def obs_specs(self, config):
        w = config.max_wait if config.max_wait > 0 else 1.0
        return (ObsSpec("cpu_wait", "server", w, "the wait a new arrival at each server's CPU sees now / max_wait_s"),
                ObsSpec("qpu_wait", "server", w, "the wait a new arrival at each server's QPU sees now / max_wait_s"))

    def observe(self, carry, config, scenario, tasks):
        return {"cpu_wait": carry["cpu_backlog"] / scenario.f_edge, "qpu_wait": carry["qpu_backlog"]}

    def metrics(self, carry, config, scenario, outcome):
        # the CPU load: seconds of CPU work that arrived per second of service (the utilisation each queue
        # would have if it drained nothing else), averaged over servers
        arrived = jnp.zeros(scenario.f_edge.shape[-1]).at[outcome.server].add(outcome.cpu_cycles)
        return {"cpu_wait_s": jnp.mean(carry["cpu_backlog"] / scenario.f_edge, axis=-1),
                "qpu_wait_s": jnp.mean(carry["qpu_backlog"], axis=-1),
                "cpu_load": jnp.mean(arrived / (scenario.f_edge * config.slot_s), axis=-1)}

    def drift_terms(self, carry, scenario, theta):
        return {"cpu_queue": carry["cpu_backlog"] / scenario.f_edge, "qpu_queue": carry["qpu_backlog"]}

    def horizon_inputs(self, carry, scenario):
        return {"cpu_backlog0": carry["cpu_backlog"] / scenario.f_edge, "qpu_backlog0": carry["qpu_backlog"]}


def backlog_bound_s(config) -> float:
    """The largest CPU wait a backlog can reach, s: a task is admitted only while its wait is at most
    `max_wait`, so a backlog never exceeds that plus the largest single task's service time on the
    slowest server (every cycle of the largest task, offloaded whole)."""
    si = config.si
    cycles = si.frames_range[1] * si.bytes_per_frame * si.cycles_base * 2.0 ** si.cycles_exponent_range[1]
    return config.max_wait + cycles / min(si.f_edge_choices)


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
