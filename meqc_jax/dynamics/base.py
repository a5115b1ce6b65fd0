"""What a dynamic is: the hooks through which state carried between slots enters the env step.

A dynamic (a server queue, a device battery, a drifting qubit lifetime, ...) owns one part of
`EnvState.carry` and is called at fixed points of the step (see `meqc_jax.env`):

    reset:  carry = init(key, config, scenario)
    slot:   tasks = tasks(carry, ...)                 the slot's draw, as the carry changes it
            stage(carry, ...) -> its pricing stage    e.g. waits ahead of each server (`cost.Stage`)
            outcome = slot_cost(..., conditions)      Eq. 12 through every active dynamic's stage
            carry = update(carry, outcome, key, ...)  the state the next slot starts from
    observe: observe(carry, ...) -> raw values of the fields declared by `obs_specs`
    report:  metrics(carry, ..., outcome) -> what `evaluate` reports of the dynamic per slot
    plan:    drift_terms(carry, scenario, theta) -> its terms of the Lyapunov function (drift-plus-penalty)
             horizon_inputs(carry, scenario) -> what the clairvoyant MIP reads off a carry

Every hook is a pure function of arrays (jit / vmap / scan friendly, static shapes); only
`init` and `update` are required. A dynamic that changes how a slot is priced returns a `cost.Stage` from
`stage` (defined in its own module): `cost.slot_cost`, the planners' option tables and the per-slot solver
all price through it, so they cannot disagree. A dynamic that drops tasks names the reason in
`drop_reason`; `register` gives it its code (`drop_code`, what `CostBreakdown.drop_reason` holds). The paper's model is the empty set of dynamics: an empty
carry, no conditions, no extra observation fields.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

OBS_KINDS = ("user", "user_server", "server")
OBS_TRANSFORMS = ("linear", "log2", "linear_clipped")


@dataclasses.dataclass(frozen=True)
class ObsSpec:
    """One block of the per-user observation, before its position in the vector is fixed.

    `kind`: "user" (raw value [U], one entry per user), "user_server" ([U, E], e.g. gains) or
    "server" ([E], the same for every user). Scaled value: `transform(raw) / scale`, where
    `log2` is log2(raw / base) and `linear_clipped` clips the scaled value at `clip`.
    """

    name: str
    kind: str
    scale: float
    doc: str
    transform: str = "linear"
    base: float = 1.0
    clip: float | None = None

    def __post_init__(self):
        if self.kind not in OBS_KINDS:
            raise ValueError(f"ObsSpec.kind={self.kind!r} is invalid: allowed one of {', '.join(OBS_KINDS)}")
        if self.transform not in OBS_TRANSFORMS:
            raise ValueError(f"ObsSpec.transform={self.transform!r} is invalid: allowed one of "
                             f"{', '.join(OBS_TRANSFORMS)}")
        if not self.scale > 0:
            raise ValueError(f"ObsSpec.scale={self.scale!r} is invalid: allowed a number > 0")


class Dynamic(abc.ABC):
    """One opt-in dynamic. Subclass, set `name` and `description`, implement `init` and `update`
    (and whichever optional hooks it needs), then `meqc_jax.dynamics.register(YourDynamic())`."""

    name: ClassVar[str]
    description: ClassVar[str]
    carries: ClassVar[bool] = True  # False: it couples the users of a slot but keeps nothing for the next
    drop_reason: ClassVar[str | None] = None  # the word for the tasks its stage drops ("queue"), if it drops any
    drop_code: int = 0  # set by `register`: the code its stage writes into `CostBreakdown.drop_reason`

    @abc.abstractmethod
    def init(self, key, config, scenario) -> Any:
        """The carry after a reset (a pytree of arrays with static shapes)."""

    @abc.abstractmethod
    def update(self, carry, outcome, key, config, scenario, tasks) -> Any:
        """The carry after a slot whose priced outcome (`cost.CostBreakdown`) is `outcome`."""

    def tasks(self, carry, config, scenario, tasks):
        """The slot's tasks as the carry changes them (default: unchanged)."""
        return tasks

    def stage(self, carry, config, scenario, tasks):
        """This dynamic's `cost.Stage` for pricing the slot, built from its carry, or None: it does not change
        pricing (default)."""
        return None

    def obs_specs(self, config) -> tuple[ObsSpec, ...]:
        """Observation fields this dynamic adds, appended after the paper's (default: none)."""
        return ()

    def observe(self, carry, config, scenario, tasks) -> dict:
        """Raw values of the fields of `obs_specs`, by name."""
        return {}

    def metrics(self, carry, config, scenario, outcome) -> dict:
        """What `evaluate` reports of this dynamic for one instance and slot, scalars by name: from the carry
        at the slot's start and the slot's priced `outcome` (`cost.CostBreakdown`). Each becomes `mean_<name>`
        and `final_<name>` of a policy's summary (default: none)."""
        return {}

    def drift_terms(self, carry, scenario, theta) -> dict:
        """This dynamic's terms of the quadratic Lyapunov function (dynamics-spec section 7), from the carry
        alone, by the `slot_solver.Weights` field each weighs: `cpu_queue` and `qpu_queue` ([E], seconds of
        wait), `battery` ([U], joules from the target `theta`). Drift-plus-penalty weighs the work an action
        adds by them; the learners' reward shaping sums their squares (default: none)."""
        return {}

    def horizon_inputs(self, carry, scenario) -> dict:
        """What the clairvoyant MIP (`clairvoyant.horizon_data`) reads off this dynamic's carry, by the
        `clairvoyant.HorizonData` field it fills: start values (`cpu_backlog0`, `qpu_backlog0` in seconds of
        work, `battery0` in J) read at the horizon's start, and the slot's exogenous draws (`has_task` read
        before each slot, `harvest` after it) (default: none)."""
        return {}
