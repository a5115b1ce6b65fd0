"""Baseline policies of the paper (Section V-C, spec section 11) and the exact oracle, behind one interface.

A policy is a `Policy`: a name and a pure function `act(key, env_state, obs) -> action` for ONE
instance, where `action = (server [U] int, phi [U] float)` (a central planner may add a third
element, `preferred` bool [U]: its choice of each server's QPU winner). The harness, the CLI and
the figures `jax.vmap` it over instances. Decentralized policies read only `obs`; centralized
baselines may read the full `env_state`.

    local                phi = 1 for every user
    random_offloading    server uniform, phi = 0
    random_partitioning  server = the user's best-channel server, phi ~ U[0, 1]
    greedy               users in index order, each picks the (server, phi in {0, 0.1, ..., 1})
                         that minimizes the system cost given the earlier users' choices
                         (with dynamics: priced under the carry as it stands; myopic)
    lyapunov             drift-plus-penalty on the same solver (dynamics-spec section 7)
    oracle               the exact per-slot optimum of a central planner (meqc_jax.oracle)
  under `contention` (dynamics-spec section 8; meqc_jax.joint):
    greedy               the same sequential rule over joint modes, priced with the sharing
    best_response        users in turn switch to their own cheapest mode until none gains
    joint_optimum        the exact slot optimum by enumerating every joint mode (small U, E)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from meqc_jax import dynamics, joint, plugins
from meqc_jax.config import SystemConfig
from meqc_jax.env import EnvState
from meqc_jax.oracle import oracle_act, oracle_cost
from meqc_jax.slot_solver import GREEDY_GRID, greedy_action, lyapunov_action



@dataclasses.dataclass(frozen=True)
class Policy:
    """A named policy. `act(key, env_state, obs)` is pure and acts for one instance."""

    name: str
    act: Callable
    centralized: bool = False  # reads env_state beyond obs
    host: bool = False  # runs part of its work on the host (pure_callback), e.g. the oracle
    # Optional per-sweep-point parameters (a pytree stacked over points) and the function that
    # acts with one point's slice: `act_with(params, key, env_state, obs)`; see `evaluate`.
    params: Any = None
    act_with: Callable | None = None


def _local(config: SystemConfig):
    def act(key, env_state: EnvState, obs):
        U = config.num_users
        return jnp.zeros(U, jnp.int32), jnp.ones(U)

    return Policy("local", act)


def _random_offloading(config: SystemConfig):
    def act(key, env_state: EnvState, obs):
        U, E = config.num_users, config.num_servers
        return jax.random.randint(key, (U,), 0, E), jnp.zeros(U)

    return Policy("random_offloading", act)


def _random_partitioning(config: SystemConfig):
    def act(key, env_state: EnvState, obs):
        # the best channel is the largest gain, which each device observes (obs field g)
        return jnp.argmax(env_state.tasks.g, axis=1).astype(jnp.int32), jax.random.uniform(key, (config.num_users,))

    return Policy("random_partitioning", act)


def _greedy(config: SystemConfig):
    if dynamics.contended(config) and not dynamics.carries_state(config):
        # dynamics-spec section 8: the same sequential rule, priced with the sharing of each server
        return Policy("greedy", lambda key, env_state, obs: joint.greedy_act(config, env_state), centralized=True)
    return Policy("greedy", lambda key, env_state, obs: greedy_action(config, env_state), centralized=True)


def _best_response(config: SystemConfig):
    """Best-response dynamics of the slot's game under contention (dynamics-spec section 8; `joint.best_response`)."""
    joint.check_contention_planner(config, "best_response")
    return Policy("best_response", lambda key, env_state, obs: joint.best_response_act(config, env_state),
                  centralized=True)


def _joint_optimum(config: SystemConfig):
    """The exact slot optimum under contention (dynamics-spec section 8; `joint.dp_optimum`, equal to the
    enumeration of every joint mode)."""
    joint.check_contention_planner(config, "joint_optimum")
    joint.check_dp_size(config.num_users)  # the size check, before anything is traced
    return Policy("joint_optimum", lambda key, env_state, obs: joint.optimum_act(config, env_state), centralized=True)


def lyapunov_policy(config: SystemConfig, v: float | None = None, theta: float | None = None) -> Policy:
    """Drift-plus-penalty (dynamics-spec section 7) with weight `v` on the cost and LODCO's battery
    perturbation `theta` (J); defaults `LYAPUNOV_V` and the battery capacity. Named `lyapunov` at the
    defaults, `lyapunov(V=.., theta=..)` otherwise; one Policy object per (config, v, theta)."""
    v = LYAPUNOV_V if v is None else float(v)
    theta = float(config.battery_j) if theta is None else float(theta)
    if not v > 0:
        raise ValueError(f"lyapunov: v={v!r} is invalid: allowed a number > 0")
    return _cached_lyapunov(config, v, theta)


# the default weight on the cost; `meqc_jax.experiments` sweeps it (docs/model.md, calibration)
LYAPUNOV_V = 10.0


@functools.lru_cache(maxsize=64)
def _cached_lyapunov(config: SystemConfig, v: float, theta: float) -> Policy:
    default = v == LYAPUNOV_V and theta == float(config.battery_j)
    name = "lyapunov" if default else f"lyapunov(V={v:g},theta={theta:g})"
    return Policy(name, lambda key, env_state, obs: lyapunov_action(config, env_state, v, theta), centralized=True)


def _oracle(config: SystemConfig):
    if config.dynamics:
        raise ValueError(f"oracle: the per-slot MIP is an optimum only without dynamics, got SystemConfig.dynamics="
                         f"{config.dynamics!r}; allowed: (); with dynamics compare to meqc_jax.clairvoyant")
    return Policy("oracle", lambda key, env_state, obs: oracle_act(config, env_state), centralized=True, host=True)


@dataclasses.dataclass(frozen=True)
class PolicyEntry:
    """A registered policy: its factory `(config) -> Policy`, a one-line description, and whether it
    is a reference (an optimum) rather than a baseline to beat."""

    factory: Callable
    description: str
    reference: bool = False
    # which models it applies to: "any", "paper" (no dynamics), "dynamics" (some state carried between slots) or
    # "contention" (users share their servers, no state carried between slots: meqc_jax.joint)
    models: str = "any"
    max_users: int | None = None  # the largest U it solves (an exact solver's limit), None: any

    def applies(self, config: SystemConfig) -> bool:
        if self.max_users is not None and config.num_users > self.max_users:
            return False
        if self.models == "contention":
            return dynamics.contended(config) and not dynamics.carries_state(config)
        if self.models == "dynamics":  # state carried between slots (lyapunov weighs it)
            return dynamics.carries_state(config)
        return self.models == "any" or (self.models == "paper" and not config.dynamics)


# The policy registry: every name the CLI, the evaluation and the figures list comes from here.
# A new baseline is one factory (here or in its own module) plus one line.
POLICIES: dict[str, PolicyEntry] = {
    "local": PolicyEntry(_local, "every task computed on its device (phi = 1)"),
    "random_offloading": PolicyEntry(_random_offloading, "a uniformly random server, the whole task offloaded"),
    "random_partitioning": PolicyEntry(_random_partitioning, "the best-channel server, phi ~ U[0, 1]"),
    "greedy": PolicyEntry(_greedy, "users in index order each pick the option cheapest for the system so far "
                                   "(with dynamics: priced under the carry as it stands, one slot at a time)"),
    "lyapunov": PolicyEntry(lyapunov_policy, "drift-plus-penalty: greedy's solver on V x cost + backlog-weighted work "
                                             "- (battery - theta) x device energy", models="dynamics"),
    "oracle": PolicyEntry(_oracle, "the exact per-slot optimum of a central planner (HiGHS MIP)", reference=True,
                          models="paper"),
    "best_response": PolicyEntry(_best_response, "from the greedy, users in turn switch to the option cheapest for "
                                                 "themselves given the others, until none gains (<= 20 rounds)",
                                 models="contention"),
    "joint_optimum": PolicyEntry(_joint_optimum, "the exact slot optimum under contention (every joint option "
                                                 "priced: a subset DP over servers, U <= 14)", reference=True,
                                 models="contention", max_users=joint.MAX_DP_USERS),
}
# the policies of the paper's model (every figure of the reproduction lists these)
POLICY_NAMES = tuple(n for n, e in POLICIES.items() if e.models in ("any", "paper"))
BASELINE_NAMES = tuple(n for n in POLICY_NAMES if not POLICIES[n].reference)


# A user's own policy: a factory `(SystemConfig) -> Policy` named by `module.path:attribute`, or installed by a
# package under this entry-point group (`meqc_jax.plugins`); it applies to every configuration.
ENTRY_POINTS = "meqc_jax.policies"
FACTORY = "a policy factory (SystemConfig) -> meqc_jax.baselines.Policy"


def user_policy_names() -> tuple[str, ...]:
    """The policies installed packages provide through the `meqc_jax.policies` entry points (not registered here)."""
    return tuple(n for n in plugins.entry_points(ENTRY_POINTS) if n not in POLICIES)


def is_user_policy(name: str) -> bool:
    """Whether `name` is a module path (`module.path:attribute`) or an installed package's entry point."""
    return name not in POLICIES and (plugins.is_spec(name) or name in user_policy_names())


def user_factory(name: str, what: str = "--policies"):
    """The factory a user policy `name` (module path or entry point) names, loaded now (one-line ValueError)."""
    if plugins.is_spec(name):
        factory = plugins.load(name, what, FACTORY)
    else:
        ep = plugins.entry_points(ENTRY_POINTS).get(name)
        if ep is None:
            raise ValueError(f"{what}: unknown policy {name!r}: allowed {', '.join(POLICIES)}, an installed "
                             f"{ENTRY_POINTS} entry point, or module.path:attribute naming {FACTORY}")
        factory = plugins.load_entry_point(ep, what, FACTORY)
    if not callable(factory):
        raise ValueError(f"{what}={name!r} names an object of type {type(factory).__name__!r}, not callable; "
                         f"expected {FACTORY}")
    return factory


def policy_names(config: SystemConfig) -> tuple[str, ...]:
    """The registered policies that apply to `config` (the paper's set without dynamics; with carried state
    the baselines and `lyapunov` (the per-slot oracle is no optimum there); under contention alone the
    baselines, `best_response` and `joint_optimum`), then those installed packages provide."""
    return tuple(n for n, e in POLICIES.items() if e.applies(config)) + user_policy_names()


def make_policy(name: str, config: SystemConfig) -> Policy:
    """The named baseline (or the oracle) for `config`, or a user's policy (`module.path:attribute` naming a
    factory `(SystemConfig) -> Policy`, or an installed entry point's name); a name that is none of these, a
    module or attribute that is missing, or a factory that returns no `Policy` raise a one-line ValueError."""
    if name in POLICIES:
        return _cached_policy(name, config)
    if not is_user_policy(name):
        raise ValueError(f"unknown policy {name!r}: allowed {', '.join(POLICY_NAMES)}, or module.path:attribute "
                         f"naming {FACTORY}")
    return _user_policy(name, user_factory(name), config)


@functools.lru_cache(maxsize=64)
def _user_policy(name: str, factory, config: SystemConfig) -> Policy:
    # cached like the registered ones, so that `evaluate` reuses the compiled program of the same policy
    policy = factory(config)
    if not isinstance(policy, Policy):
        raise ValueError(f"--policies={name!r}: the factory returned an object of type {type(policy).__name__!r}; "
                         f"expected {FACTORY}")
    return policy


@functools.lru_cache(maxsize=64)
def _cached_policy(name: str, config: SystemConfig) -> Policy:
    # One Policy object per (name, config): its `act` is then the same function every time, so
    # `evaluate` reuses the compiled program across calls.
    return POLICIES[name].factory(config)


def parse_policy_names(text: str) -> tuple[str, ...]:
    """`all` or a comma-separated list of policy names, validated (one-line ValueError)."""
    names = POLICY_NAMES if text.strip() == "all" else tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ValueError(f"--policies is empty: give 'all' or a comma-separated subset of {', '.join(POLICY_NAMES)}")
    bad = [n for n in names if n not in POLICIES and not is_user_policy(n)]
    if bad:
        raise ValueError(f"--policies: unknown name(s) {', '.join(bad)}; allowed: all, {', '.join(POLICY_NAMES)}, "
                         f"or module.path:attribute naming {FACTORY}")
    for n in names:  # a user's module is imported now: a wrong path or attribute is refused before anything runs
        if is_user_policy(n):
            user_factory(n)
    return tuple(dict.fromkeys(names))


__all__ = ["BASELINE_NAMES", "ENTRY_POINTS", "FACTORY", "POLICIES", "POLICY_NAMES", "Policy", "PolicyEntry", "greedy_action",
           "is_user_policy", "lyapunov_policy", "make_policy", "oracle_cost", "parse_policy_names", "policy_names",
           "user_factory", "user_policy_names"]
