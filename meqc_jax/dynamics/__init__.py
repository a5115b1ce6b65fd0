"""State that carries between slots: the registry of dynamics and the carry they share.

`SystemConfig.dynamics` names the dynamics switched on (a tuple; empty = the paper's model, in
which no slot affects the next). `EnvState.carry` is a dict `{dynamic name: its state}`, `{}`
for the paper. The env calls the functions below at fixed points of its step (see
`meqc_jax.dynamics.base` for the order); each folds over the active dynamics, so a new dynamic is
one module with a `Dynamic` subclass plus one `register` line, and nothing else changes.

Registered names never change meaning: a change of behaviour is a new name (and a new scenario
version in `meqc_jax.scenarios`).
"""

from __future__ import annotations

import jax

from meqc_jax.cost import SlotConditions
from meqc_jax.dynamics.arrivals import Arrivals
from meqc_jax.dynamics.base import OBS_KINDS, Dynamic, ObsSpec
from meqc_jax.dynamics.battery import Battery
from meqc_jax.dynamics.contention import Contention
from meqc_jax.dynamics.drift import Drift
from meqc_jax.dynamics.queues import Queues

_REGISTRY: dict[str, Dynamic] = {}
ARRIVALS = Arrivals()  # implicit: on whenever any dynamic is


_DROP_REASONS: list[str] = ["none"]  # CostBreakdown.drop_reason's codes: 0 = not dropped, then by registration


def register(dynamic: Dynamic) -> Dynamic:
    """Add a dynamic under its `name`; a name already taken raises (registrations never change). A dynamic that
    drops tasks (`drop_reason`) gets the next drop code (`drop_code`), so codes never change either."""
    if not isinstance(dynamic, Dynamic):
        raise TypeError(f"register: expected a Dynamic instance, got {type(dynamic).__name__}")
    if dynamic.name in _REGISTRY:
        raise ValueError(f"dynamics.register: the name {dynamic.name!r} is taken; register a new name")
    if dynamic.drop_reason is not None:
        dynamic.drop_code = len(_DROP_REASONS)
        _DROP_REASONS.append(dynamic.drop_reason)
    _REGISTRY[dynamic.name] = dynamic
    return dynamic


def drop_reasons() -> tuple[str, ...]:
    """The words of `CostBreakdown.drop_reason`'s codes: code k is `drop_reasons()[k]` ("none" for 0)."""
    return tuple(_DROP_REASONS)


def get(name: str) -> Dynamic:
    """The registered dynamic `name` (one-line KeyError naming the registered ones otherwise)."""
    if name not in _REGISTRY:
        raise KeyError(f"dynamics.get: unknown {name!r}; registered: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def names() -> tuple[str, ...]:
    """Registered dynamics, in registration order."""
    return tuple(_REGISTRY)


def describe() -> dict[str, str]:
    """{name: one-line description} of every registered dynamic."""
    return {n: d.description for n, d in _REGISTRY.items()}


def active(config) -> tuple[Dynamic, ...]:
    """The dynamics `config.dynamics` switches on, in its order, after the task arrivals (dynamics-spec
    section 1) that every carried-state model shares; () for the paper. Unknown names: one-line ValueError."""
    unknown = [n for n in config.dynamics if n not in _REGISTRY]
    if unknown:
        allowed = ", ".join(_REGISTRY) or "none registered"
        raise ValueError(f"SystemConfig.dynamics={config.dynamics!r} is invalid: unknown {', '.join(unknown)}; "
                         f"allowed names: {allowed}")
    if not config.dynamics:
        return ()
    return (ARRIVALS,) + tuple(_REGISTRY[n] for n in config.dynamics)


def contended(config) -> bool:
    """True when the users of a slot share their servers (dynamics-spec section 8, `contention`)."""
    return "contention" in config.dynamics


def carries_state(config) -> bool:
    """True when some active dynamic keeps state for the next slot (arrivals draw afresh and `contention`
    couples one slot's users only, so neither does alone)."""
    return any(d.carries for d in active(config) if d is not ARRIVALS)


# ---------------------------------------------------------------------------- the carry, folded over dynamics
def init(key, config, scenario) -> dict:
    """The carry after a reset: `{}` without dynamics, else one entry per dynamic from its own key."""
    dyns = active(config)
    if not dyns:
        return {}
    keys = jax.random.split(key, len(dyns))
    return {d.name: d.init(k, config, scenario) for d, k in zip(dyns, keys)}


def tasks(carry: dict, config, scenario, tasks):
    """The slot's tasks after every dynamic's `tasks` hook, in `config.dynamics` order."""
    for d in active(config):
        tasks = d.tasks(carry[d.name], config, scenario, tasks)
    return tasks


def conditions(carry: dict, config, scenario, tasks) -> SlotConditions | None:
    """The `SlotConditions` the carry imposes on this slot: every active dynamic's pricing stage
    (`Dynamic.stage`), in `config.dynamics` order after the arrivals; None (the paper's pricing) without dynamics."""
    dyns = active(config)
    if not dyns:
        return None
    found = (d.stage(carry[d.name], config, scenario, tasks) for d in dyns)
    return SlotConditions(stages=tuple(s for s in found if s is not None))


def update(carry: dict, outcome, key, config, scenario, tasks) -> dict:
    """The carry after a slot with priced `outcome`; each dynamic draws from its own key."""
    dyns = active(config)
    if not dyns:
        return carry
    keys = jax.random.split(key, len(dyns))
    return {d.name: d.update(carry[d.name], outcome, k, config, scenario, tasks) for d, k in zip(dyns, keys)}


def obs_specs(config) -> tuple[ObsSpec, ...]:
    """The observation fields the active dynamics add, in `config.dynamics` order."""
    specs = tuple(s for d in active(config) for s in d.obs_specs(config))
    seen = [s.name for s in specs]
    if len(set(seen)) != len(seen):
        raise ValueError(f"dynamics: observation field names repeat across {config.dynamics!r}: {seen}")
    return specs


def observe(carry: dict, config, scenario, tasks) -> dict:
    """Raw values of every field of `obs_specs`, by name."""
    out: dict = {}
    for d in active(config):
        out.update(d.observe(carry[d.name], config, scenario, tasks))
    return out


def metrics(carry: dict, config, scenario, outcome) -> dict:
    """Every active dynamic's `metrics` of one instance's slot, by name ({} for the paper)."""
    out: dict = {}
    for d in active(config):
        for name, value in d.metrics(carry[d.name], config, scenario, outcome).items():
            if name in out:
                raise ValueError(f"dynamics: the metric {name!r} is reported by two dynamics in {config.dynamics!r}")
            out[name] = value
    return out


def _holders(carry: dict):
    """(dynamic, its part of the carry) for every dynamic whose state `carry` holds (read from the carry alone)."""
    return [(ARRIVALS if name == ARRIVALS.name else _REGISTRY[name], part) for name, part in carry.items()]


def drift_terms(carry: dict, scenario, theta) -> dict:
    """The Lyapunov terms (`Dynamic.drift_terms`) of the dynamics whose state `carry` holds, by `Weights` field;
    terms two dynamics both give are added ({} for the paper)."""
    out: dict = {}
    for dyn, part in _holders(carry):
        for field, value in dyn.drift_terms(part, scenario, theta).items():
            out[field] = out[field] + value if field in out else value
    return out


def horizon_inputs(carry: dict, scenario) -> dict:
    """What the clairvoyant MIP reads off `carry` (`Dynamic.horizon_inputs`), by `HorizonData` field ({} for the
    paper); a field two dynamics both fill raises."""
    out: dict = {}
    for dyn, part in _holders(carry):
        for field, value in dyn.horizon_inputs(part, scenario).items():
            if field in out:
                raise ValueError(f"dynamics: the horizon input {field!r} is filled by two dynamics")
            out[field] = value
    return out


# ---------------------------------------------------------------------------- the registrations
register(Queues())
register(Battery())
register(Drift())
register(Contention())

__all__ = ["OBS_KINDS", "Dynamic", "ObsSpec", "active", "carries_state", "conditions", "contended", "describe",
           "drift_terms", "drop_reasons", "get", "horizon_inputs", "init", "metrics", "names", "obs_specs", "observe",
           "register", "tasks", "update"]
