"""The MEQC cost model: paper Eqs. 1-12 and 13b, as pinned down by spec sections 4-9.

Pure functions on arrays. `slot_cost` prices one slot's joint action; `option_costs` prices every
(user, server, classical/quantum) option at once, for centralized baselines and the oracle.

Contract inside jit (where nothing can raise): an out-of-range action is clipped (server into
[0, E-1], phi into [0, 1], a NaN phi becomes 1, i.e. keep the task local) and the number of
clipped users is reported in the breakdown. No input within the configuration's ranges yields
inf or NaN.

One module per concern, in the order the terms build on each other: `terms` (the paper's per-user
terms, Eqs. 1-11, and the action contract), `sharing` (shared uplinks and CPUs, dynamics-spec section
8), `stages` (a slot priced as a pipeline: the paper's terms, then the `Stage` each active dynamic
contributes, then Eq. 13b; this package names no dynamic), `slot` (one slot's price, Eq. 12 under 13b),
`options` (every option at once, spec 11, for planners: the same pipeline on an option grid) and `modes`
(joint modes under shared servers). Everything
public is re-exported here: `from meqc_jax.cost import slot_cost`.
"""

from meqc_jax.cost.terms import classical_terms, feasibility, quantum_terms, sanitize_action, uplink_rate, weighted_cost
from meqc_jax.cost.sharing import server_sum, sharers, uplink_share
from meqc_jax.cost.stages import NO_DROP, PricedSlot, SlotConditions, Stage, participants
from meqc_jax.cost.slot import CostBreakdown, arbitrate, arrival_priority, breakdown, slot_cost
from meqc_jax.cost.options import (
    HOLD_PHI, OptionCosts, OptionLoads, OptionTable, option_costs, option_loads, option_slot, option_table, option_terms)
from meqc_jax.cost.modes import ModeOutcome, ModeTable, mode_table, num_modes, price_modes

__all__ = [
    "CostBreakdown",
    "HOLD_PHI",
    "NO_DROP",
    "ModeOutcome",
    "ModeTable",
    "OptionCosts",
    "OptionLoads",
    "OptionTable",
    "PricedSlot",
    "SlotConditions",
    "Stage",
    "arbitrate",
    "arrival_priority",
    "breakdown",
    "classical_terms",
    "feasibility",
    "mode_table",
    "num_modes",
    "option_costs",
    "option_loads",
    "option_slot",
    "option_table",
    "option_terms",
    "participants",
    "price_modes",
    "quantum_terms",
    "sanitize_action",
    "server_sum",
    "sharers",
    "slot_cost",
    "uplink_rate",
    "uplink_share",
    "weighted_cost",
]
