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
         "the paper's model as model-spec.md pins it down: U = E = 10, 500-slot episodes, balanced weights, "
         "no state carried between slots")

__all__ = ["DEFAULT_SCENARIO", "SCENARIOS", "Registration", "get", "make", "names", "register", "scenario_config"]
