"""meqc_jax: a JAX-accelerated simulator and multi-agent learner for mobile edge-quantum computing.

Modules, in the order data flows:
    config   -- `SystemConfig`, every default of the model spec, validated
    physics  -- quantum hardware: noise, cryogenic power, concatenated codes (Appendices A-C)
    tasks    -- `Scenario`, `Tasks`, their sampling and the ray-tracing task compiler
    cost     -- `slot_cost`, the cost model of Eqs. 1-13
    env      -- `MEQCEnv`, the vectorized multi-agent environment
    oracle   -- the exact per-slot optimum (closed-form splits + a HiGHS MIP)
    baselines-- `Policy` and the paper's baselines (local, random, greedy) plus the oracle
    evaluate -- paired evaluation of policies on common random numbers
"""

from meqc_jax.config import SystemConfig
from meqc_jax.cost import CostBreakdown, OptionCosts, option_costs, slot_cost
from meqc_jax.env import EnvState, MEQCEnv
from meqc_jax.tasks import Scenario, Tasks, compile_ray_tracing, sample_scenario, sample_tasks

__version__ = "0.1.0"

__all__ = [
    "CostBreakdown",
    "EnvState",
    "MEQCEnv",
    "OptionCosts",
    "Scenario",
    "SystemConfig",
    "Tasks",
    "compile_ray_tracing",
    "option_costs",
    "sample_scenario",
    "sample_tasks",
    "slot_cost",
]
