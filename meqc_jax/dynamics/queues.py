"""`queues`: server backlogs (dynamics-spec section 2).

Carry: `cpu_backlog[E]` (cycles waiting at each server's CPU) and `qpu_backlog[E]` (seconds of QPU
work waiting), both >= 0. A slot's arrivals queue first-in first-out behind the backlog and behind
each other (`cost.slot_cost` with `SlotConditions.queued`); every feasible QPU requester runs on the
QPU; a task whose wait would exceed `max_wait_s` is dropped, so a backlog stays below
`max_wait_s` plus one slot's admitted work and never overflows float32. At the slot's end each
server drains one slot (`slot_s`) of service:

    cpu_backlog[e] <- max(cpu_backlog[e] + sum_{u on e's CPU} (1 - phi_u) cycles_u - f_edge[e] tau, 0)
    qpu_backlog[e] <- max(qpu_backlog[e] + sum_{u on e's QPU} d_Q[u] - tau, 0)
"""

from __future__ import annotations

import jax.numpy as jnp

from meqc_jax.dynamics.base import Dynamic, ObsSpec


class Queues(Dynamic):
    name = "queues"
    description = "FIFO backlogs at each server's CPU and QPU, drained slot_s per slot; waits over max_wait_s drop"

    def init(self, key, config, scenario):
        E = config.num_servers
        return {"cpu_backlog": jnp.zeros(E), "qpu_backlog": jnp.zeros(E)}

    def conditions(self, carry, config, scenario, tasks):
        return {"cpu_wait": carry["cpu_backlog"] / scenario.f_edge, "qpu_wait": carry["qpu_backlog"], "queued": True}

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
