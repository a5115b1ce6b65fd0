"""`contention`: the users on one server share it within a slot (dynamics-spec section 8).

No carried state: it couples the users of one slot instead of one slot to the next. The users that
offload to server e share its uplink (`SystemConfig.contention_uplink`: "equal", B / n_e each, or
"interference", the full band with the co-server transmitters' power as noise) and, without
`queues`, its CPUs (processor sharing: f_edge / m_e each). With `queues` the CPUs serve in FIFO order
instead (section 2) and only the uplink is shared. Its pricing stage is `ContentionStage`.
"""

from __future__ import annotations

from flax import struct

from meqc_jax.cost import Stage, sharers, uplink_share
from meqc_jax.dynamics.base import Dynamic


@struct.dataclass
class ContentionStage(Stage):
    """Section 8's pricing: every user with a task that offloads a part shares its server's uplink (`share`,
    before the terms); with `share_cpus`, the m_e users whose offloaded part runs on e's CPUs get f_edge / m_e
    each (`serve`, after the grants: processor sharing)."""

    uplink: str = struct.field(pytree_node=False)  # "equal" or "interference" (`cost.uplink_share`)
    share_cpus: bool = struct.field(pytree_node=False)  # False where the CPUs serve in FIFO order (queues)

    def share(self, slot, config, scenario, tasks):
        bandwidth, noise = uplink_share(self.uplink, config.si, slot.server, slot.has_task & (slot.phi < 1.0),
                                        scenario.p_tx, tasks.g)
        return slot.replace(bandwidth=bandwidth, noise=noise)

    def serve(self, slot, config, scenario, tasks):
        if not self.share_cpus:
            return slot
        on_cpu = slot.active & (slot.phi < 1.0) & ~slot.granted
        return slot.replace(d_cpu=slot.d_tx + slot.d_edge * sharers(slot.server, on_cpu, tasks.g.shape[1]))


class Contention(Dynamic):
    name = "contention"
    description = "users offloading to one server share its uplink and (without queues) its CPUs within a slot"
    carries = False

    def init(self, key, config, scenario):
        return {}

    def update(self, carry, outcome, key, config, scenario, tasks):
        return {}

    def stage(self, carry, config, scenario, tasks):
        return ContentionStage(uplink=config.contention_uplink, share_cpus="queues" not in config.dynamics)
