"""`contention`: the users on one server share it within a slot (dynamics-spec section 8).

No carried state: it couples the users of one slot instead of one slot to the next. The users that
offload to server e share its uplink (`SystemConfig.contention_uplink`: "equal", B / n_e each, or
"interference", the full band with the co-server transmitters' power as noise) and, without
`queues`, its CPUs (processor sharing: f_edge / m_e each). With `queues` the CPUs serve in FIFO order
instead (section 2) and only the uplink is shared. Pricing is in `cost.slot_cost`
(`SlotConditions.contention`); this module only switches it on.
"""

from __future__ import annotations

from meqc_jax.dynamics.base import Dynamic


class Contention(Dynamic):
    name = "contention"
    description = "users offloading to one server share its uplink and (without queues) its CPUs within a slot"
    carries = False

    def init(self, key, config, scenario):
        return {}

    def update(self, carry, outcome, key, config, scenario, tasks):
        return {}

    def conditions(self, carry, config, scenario, tasks):
        return {"contention": config.contention_uplink}
