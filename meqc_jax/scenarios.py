"""The scenario registry: versioned names for configurations, in the manner of Jumanji's.

    env = meqc_jax.make("MEQC-Paper-v0")                        # the paper's model, U = E = 10
    env = meqc_jax.make("MEQC-Paper-v0", num_users=20, num_servers=20, reward=Reward("own"))
    config = scenario_config("MEQC-Paper-v0", preset="delay")   # just the SystemConfig

A registration is a name `MEQC-<What>-v<N>`, a one-line description, and the `SystemConfig`
overrides it holds (dynamics included). A registered name never changes meaning: a change of
dynamics or defaults is registered under a new version, never over an old one (`register` refuses).
This module imports neither jax nor the env at import time, so the CLI can list scenarios cheaply.
"""

from __future__ import annotations

import dataclasses
import re
from types import MappingProxyType
from typing import Mapping

from meqc_jax.config import SystemConfig

NAME_PATTERN = re.compile(r"^MEQC-[A-Za-z0-9]+(-[A-Za-z0-9]+)*-v[0-9]+$")


@dataclasses.dataclass(frozen=True)
class Registration:
    """One registered scenario: its versioned name, what it holds, and its SystemConfig overrides."""

    name: str
    description: str
    overrides: Mapping = dataclasses.field(default_factory=dict)

    def config(self, **overrides) -> SystemConfig:
        """The scenario's SystemConfig with `overrides` on top (validated: one-line ValueError)."""
        fields = {f.name for f in dataclasses.fields(SystemConfig)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(f"{self.name}: unknown SystemConfig field(s) {', '.join(unknown)}")
        return SystemConfig(**{**self.overrides, **overrides})


SCENARIOS: dict[str, Registration] = {}


def register(name: str, description: str, **overrides) -> Registration:
    """Register `name` (MEQC-<What>-v<N>) with its one-line description and SystemConfig overrides.
    A taken name raises: publish a new version instead of changing what a name means."""
    if not NAME_PATTERN.match(name):
        raise ValueError(f"scenarios.register: name={name!r} is invalid: allowed MEQC-<What>-v<N>, e.g. MEQC-Queues-v0")
    if name in SCENARIOS:
        raise ValueError(f"scenarios.register: {name!r} is registered already; register a new version")
    if not description or "\n" in description:
        raise ValueError(f"scenarios.register: {name!r} needs a one-line description")
    reg = Registration(name, description, MappingProxyType(dict(overrides)))
    reg.config()  # the overrides must form a valid configuration now, not at first use
    SCENARIOS[name] = reg
    return reg


def get(name: str) -> Registration:
    """The registration of `name` (one-line ValueError listing the registered names)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}: allowed {', '.join(SCENARIOS)}")
    return SCENARIOS[name]


def scenario_config(name: str, **overrides) -> SystemConfig:
    """The SystemConfig of scenario `name` with `overrides` on top."""
    return get(name).config(**overrides)


def make(name: str, reward=None, **overrides):
    """The environment of scenario `name`: `MEQCEnv(scenario_config(name, **overrides), reward)`."""
    from meqc_jax.env import MEQCEnv

    return MEQCEnv(scenario_config(name, **overrides), reward=reward)


def names() -> tuple[str, ...]:
    return tuple(SCENARIOS)


# ---------------------------------------------------------------------------- the registrations
DEFAULT_SCENARIO = "MEQC-Paper-v0"
register(DEFAULT_SCENARIO,
         "the paper's model as docs/spec/model.md pins it down: U = E = 10, 500-slot episodes, balanced weights, "
         "no state carried between slots")

# docs/spec/dynamics.md: state that carries between slots. Calibrated at U = E = 10, balanced weights
# (benchmarks/calibrate_dynamics.py; the measurements are in docs/model.md, "Dynamics: calibration").
HANDSET_P_TX_MW = (100.0, 500.0)  # a transmission costs ~1-6 J: the only powers at which a battery binds
register("MEQC-Queues-v0",
         "the paper's model with FIFO server queues drained every 20 s slot (waits over 400 s drop); "
         "myopic greedy pays 1.35 x drift-plus-penalty",
         dynamics=("queues",), slot_s=20.0)
register("MEQC-Battery-v0",
         "the paper's model with 20 J device batteries harvesting 2 J per slot on average, at handset transmit "
         "powers of 100-500 mW (the paper's 0.01-0.2 mW never drain a battery)",
         dynamics=("battery",), battery_j=20.0, harvest_mean_j=2.0, p_tx_range_mw=HANDSET_P_TX_MW)
register("MEQC-Drift-v0",
         "the paper's model with each QPU's t1 drifting as a log-space AR(1) (rho 0.98, spread 1.0), observed one "
         "slot late; exogenous, so it bites learners that see the past, not a planner that sees the present",
         dynamics=("drift",), drift_rho=0.98, drift_sigma=1.0)
register("MEQC-Sustainable-v0",
         "queues, batteries and drifting qubits together: 20 s slots, 20 J batteries harvesting 2 J, handset powers",
         dynamics=("queues", "battery", "drift"), slot_s=20.0, battery_j=20.0, harvest_mean_j=2.0,
         p_tx_range_mw=HANDSET_P_TX_MW, drift_rho=0.98, drift_sigma=1.0)

# dynamics-spec section 8: users compete for their servers within a slot (docs/model.md, "Contention").
register("MEQC-Contended-v0",
         "the paper's model with the users offloading to one server sharing its uplink (B / n_e each) and CPUs "
         "(processor sharing); at U = 6, E = 3 the sequential greedy pays 1.22 x the exact optimum",
         dynamics=("contention",))
register("MEQC-Contended-Queues-v0",
         "shared uplinks (B / n_e each) in front of FIFO server queues drained every 20 s slot (MEQC-Queues-v0's)",
         dynamics=("queues", "contention"), slot_s=20.0)

__all__ = ["DEFAULT_SCENARIO", "HANDSET_P_TX_MW", "SCENARIOS", "Registration", "get", "make", "names", "register", "scenario_config"]
