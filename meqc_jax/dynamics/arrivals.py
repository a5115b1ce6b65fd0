"""Task arrivals (dynamics-spec section 1): with any dynamics on, a user has a task with probability p_task.

Not switched on by name: `meqc_jax.dynamics.active` puts it first whenever any dynamic is on, so that
every carried-state model shares one arrival process. A user without a task costs 0, spends no
energy, joins no queue, and its action is ignored (`CostBreakdown.has_task`, `.ignored`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from flax import struct

from meqc_jax.cost import Stage
from meqc_jax.dynamics.base import Dynamic, ObsSpec


@struct.dataclass
class ArrivalsStage(Stage):
    """Pricing with arrivals: only a user with a task takes part (section 1); a user without one costs 0,
    and with it every task of the slot is priced under section 5 (drops cost their penalty)."""

    has_task: jnp.ndarray  # [U] bool

    def participate(self, slot, config, scenario, tasks):
        return slot.replace(has_task=self.has_task, masked=True)


class Arrivals(Dynamic):
    name = "arrivals"
    description = "each user has a task in a slot with probability p_task (section 1); on with any dynamic"

    @staticmethod
    def _draw(key, config):
        if config.p_task >= 1.0:  # the paper's rate: no draw, every user has a task
            return jnp.ones(config.num_users, bool)
        return jax.random.uniform(key, (config.num_users,)) < config.p_task

    def init(self, key, config, scenario):
        return {"has_task": self._draw(key, config)}

    def update(self, carry, outcome, key, config, scenario, tasks):
        return {"has_task": self._draw(key, config)}  # the next slot's draw, independent of the action

    def stage(self, carry, config, scenario, tasks):
        return ArrivalsStage(has_task=carry["has_task"])

    def obs_specs(self, config):
        return (ObsSpec("has_task", "user", 1.0, "1 if the user has a task this slot, else 0"),)

    def observe(self, carry, config, scenario, tasks):
        return {"has_task": carry["has_task"].astype(float)}

    def horizon_inputs(self, carry, scenario):
        return {"has_task": carry["has_task"]}
