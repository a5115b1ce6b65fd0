"""meqc_jax: a JAX-accelerated simulator and multi-agent learner for mobile edge-quantum computing.

Layers, top imports bottom (enforced by the import-linter contract in pyproject.toml):
    cli          -- `meqc`: argparse only; every option list comes from the modules below
    experiments  -- `meqc reproduce`: one module per figure family, a parts registry, the report
    loop         -- the host loop for any learner: chunks, orbax checkpoints, progress, NaN stop
    learners     -- the `Learner` interface, pure losses, hybrid multi-agent PPO
    agents       -- actor-critic networks (MLP, VQC) and their distributions
    evaluate     -- paired evaluation: per-policy trajectories on common random numbers
    baselines    -- `Policy`, the policy registry and the paper's baselines; oracle: the exact optimum
    scenarios    -- versioned scenario names: `make("MEQC-Paper-v0", **overrides)`
    marl         -- the env behind JaxMARL's MultiAgentEnv interface
    env          -- `MEQCEnv`: reset/step, the reward, the observation layout
    dynamics     -- state carried between slots (`EnvState.carry`); none = the paper's model
    cost         -- `slot_cost`, the cost model of Eqs. 1-13
    tasks        -- `Scenario`, `Tasks`, their sampling and the ray-tracing task compiler
    config       -- `SystemConfig`, every default of the model spec, validated
    physics      -- quantum hardware: noise, cryogenic power, concatenated codes (Appendices A-C)
    units        -- SI constants, `SIParams`
Support modules any layer may use: io (atomic writes), progress, sharding (meshes, compile options),
plots (figures).
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
