"""`battery`: device energy with harvesting (dynamics-spec section 3).

Carry: `battery[U]` in joules, 0 <= battery <= battery_j, drawn U[0.5, 1] x battery_j after a reset,
and the last slot's harvest. A task whose device energy e_dev = e_L + e_O (Eqs. 1, 3) exceeds the
charge is dropped and spends nothing (its pricing stage, `BatteryStage`); otherwise
the device pays e_dev. Then h ~ U[0, 2 harvest_mean_j] is added, capped at the capacity; it is
usable from the next slot.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from flax import struct

from meqc_jax.cost import Stage
from meqc_jax.dynamics.base import Dynamic, ObsSpec


@struct.dataclass
class BatteryStage(Stage):
    """Section 3's drop rule: a task whose device energy e_dev = e_L + e_O (Eqs. 1, 3) exceeds the charge is
    dropped before it reaches a server (so it requests no QPU and joins no queue). The uplink is already set
    (`share` runs first): a device that then finds its battery short has still claimed its share."""

    battery: jnp.ndarray  # [U] J
    code: int = struct.field(pytree_node=False)

    def admit(self, slot, config, scenario, tasks):
        return slot.drop(slot.per_user(slot.has_task) & (slot.e_device > slot.per_user(self.battery)), self.code)


class Battery(Dynamic):
    name = "battery"
    drop_reason = "battery"
    description = "device batteries of battery_j joules, harvesting U[0, 2 harvest_mean_j] per slot; empty drops"

    def init(self, key, config, scenario):
        U = config.num_users
        return {"battery": config.battery_j * jax.random.uniform(key, (U,), minval=0.5, maxval=1.0),
                "harvest": jnp.zeros(U)}

    def stage(self, carry, config, scenario, tasks):
        return BatteryStage(battery=carry["battery"], code=self.drop_code)

    def update(self, carry, outcome, key, config, scenario, tasks):
        h = jax.random.uniform(key, (config.num_users,), minval=0.0, maxval=2.0 * config.harvest_mean_j)
        spent = jnp.maximum(carry["battery"] - outcome.device_energy, 0.0)  # e_dev <= battery when served
        return {"battery": jnp.minimum(spent + h, config.battery_j), "harvest": h}

    def obs_specs(self, config):
        h_max = 2.0 * config.harvest_mean_j if config.harvest_mean_j > 0 else 1.0
        return (ObsSpec("battery", "user", config.battery_j, "the device's charge / capacity battery_j"),
                ObsSpec("harvest", "user", h_max, "the last slot's harvest / its largest value"))

    def observe(self, carry, config, scenario, tasks):
        return {"battery": carry["battery"], "harvest": carry["harvest"]}

    def metrics(self, carry, config, scenario, outcome):
        return {"battery_j": jnp.mean(carry["battery"], axis=-1)}

    def drift_terms(self, carry, scenario, theta):
        return {"battery": carry["battery"] - theta}  # LODCO's perturbation: the distance to the target theta

    def horizon_inputs(self, carry, scenario):
        return {"battery0": carry["battery"], "harvest": carry["harvest"]}
