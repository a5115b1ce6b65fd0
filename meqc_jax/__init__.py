"""meqc_jax: a JAX-accelerated simulator and multi-agent learner for mobile edge-quantum computing.

The package's layers, top importing bottom, are one list: the import-linter contract in
pyproject.toml (`[tool.importlinter]`), checked on every test run; docs/architecture.md says what each
layer holds and where a change goes.
"""

from meqc_jax.config import SystemConfig
from meqc_jax.cost import CostBreakdown, OptionCosts, SlotConditions, option_costs, slot_cost
from meqc_jax.env import EnvState, MEQCEnv, Reward
from meqc_jax.scenarios import make
from meqc_jax.tasks import Scenario, Tasks, compile_ray_tracing, sample_scenario, sample_tasks

__version__ = "0.1.0"

__all__ = [
    "CostBreakdown",
    "EnvState",
    "MEQCEnv",
    "OptionCosts",
    "Reward",
    "Scenario",
    "SlotConditions",
    "SystemConfig",
    "Tasks",
    "compile_ray_tracing",
    "make",
    "option_costs",
    "sample_scenario",
    "sample_tasks",
    "slot_cost",
]
