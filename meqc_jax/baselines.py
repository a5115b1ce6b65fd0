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
    oracle               the exact per-slot optimum of a central planner (meqc_jax.oracle)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from meqc_jax import dynamics
from meqc_jax.config import SystemConfig
from meqc_jax.cost import option_costs
from meqc_jax.env import EnvState
from meqc_jax.oracle import oracle_act, oracle_cost



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


GREEDY_GRID = 11  # phi in {0, 0.1, ..., 1}


def greedy_action(config: SystemConfig, env_state: EnvState, grid: int = GREEDY_GRID):
    """Spec 11 greedy: users in index order (a `lax.scan`), each choosing the option that minimizes
    the system cost of the users placed so far, QPU occupancy included.

    A user that offloads a fraction to a server where its task is feasible requests that QPU
    (spec 8), so its effect on the cost depends on the server's earlier requesters:
    `cheapest` -- exact: it wins the QPU iff its cost with the QPU is strictly lower than the
    holder's, and the holder then falls back to the server's CPUs;
    `arrival` -- in expectation over the random order: with m requesters each wins w.p. 1/m.
    Keeping everything local is always a candidate, so greedy is never worse than `local` (exactly
    under `cheapest`, in expectation under `arrival`).
    """
    sc, tk = env_state.scenario, env_state.tasks
    U, E = tk.g.shape
    cond = dynamics.conditions(env_state.carry, config, sc, tk)  # the carry's waits as they stand (None: paper)
    phis = jnp.linspace(0.0, 1.0, grid)[:-1]  # phi = 1 is the local candidate
    table = jax.vmap(lambda p: option_costs(config, sc, tk, jnp.full((U,), p), cond))(phis)
    classical, quantum, feasible = table.classical, table.quantum, table.feasible[0]  # [P, U, E]
    local = option_costs(config, sc, tk, jnp.ones(U), cond).classical[:, 0]
    cheapest = config.arbitration == "cheapest"

    def place(carry, u):
        cc, cq, f = classical[:, u, :], quantum[:, u, :], feasible[u][None, :]  # [P, E]
        if cheapest:
            held, hold_q, hold_c = carry
            steal = cq < hold_q[None, :]
            d_request = jnp.where(held[None, :], jnp.where(steal, cq + (hold_c - hold_q)[None, :], cc), cq)
        else:
            count, gain_sum = carry  # requesters per server, sum of their (c_Q - c_E)
            prev = jnp.where(count > 0, gain_sum / jnp.maximum(count, 1), 0.0)
            d_request = cc + (gain_sum[None, :] + cq - cc) / (count[None, :] + 1) - prev[None, :]
        delta = jnp.where(f, d_request, cc).ravel()  # [P * E]
        best = jnp.argmin(delta)
        offload = delta[best] < local[u]  # ties keep the task local
        p, e = best // E, best % E
        requests = offload & feasible[u, e]
        if cheapest:
            wins = requests & (~held[e] | (cq[p, e] < hold_q[e]))
            carry = (held.at[e].set(held[e] | requests),
                     hold_q.at[e].set(jnp.where(wins, cq[p, e], hold_q[e])),
                     hold_c.at[e].set(jnp.where(wins, cc[p, e], hold_c[e])))
        else:
            carry = (count.at[e].add(requests.astype(count.dtype)),
                     gain_sum.at[e].add(jnp.where(requests, cq[p, e] - cc[p, e], 0.0)))
        return carry, (jnp.where(offload, e, 0).astype(jnp.int32), jnp.where(offload, phis[p], 1.0))

    zeros = jnp.zeros(E)
    init = (jnp.zeros(E, bool), zeros, zeros) if cheapest else (jnp.zeros(E, jnp.int32), zeros)
    _, (server, phi) = jax.lax.scan(place, init, jnp.arange(U))
    return server, phi


def _greedy(config: SystemConfig):
    return Policy("greedy", lambda key, env_state, obs: greedy_action(config, env_state), centralized=True)


def _oracle(config: SystemConfig):
    return Policy("oracle", lambda key, env_state, obs: oracle_act(config, env_state), centralized=True, host=True)


@dataclasses.dataclass(frozen=True)
class PolicyEntry:
    """A registered policy: its factory `(config) -> Policy`, a one-line description, and whether it
    is a reference (an optimum) rather than a baseline to beat."""

    factory: Callable
    description: str
    reference: bool = False


# The policy registry: every name the CLI, the evaluation and the figures list comes from here.
# A new baseline is one factory (here or in its own module) plus one line.
POLICIES: dict[str, PolicyEntry] = {
    "local": PolicyEntry(_local, "every task computed on its device (phi = 1)"),
    "random_offloading": PolicyEntry(_random_offloading, "a uniformly random server, the whole task offloaded"),
    "random_partitioning": PolicyEntry(_random_partitioning, "the best-channel server, phi ~ U[0, 1]"),
    "greedy": PolicyEntry(_greedy, "users in index order each pick the option cheapest for the system so far"),
    "oracle": PolicyEntry(_oracle, "the exact per-slot optimum of a central planner (HiGHS MIP)", reference=True),
}
POLICY_NAMES = tuple(POLICIES)
BASELINE_NAMES = tuple(n for n, e in POLICIES.items() if not e.reference)


def make_policy(name: str, config: SystemConfig) -> Policy:
    """The named baseline (or the oracle) for `config`; unknown names raise a one-line ValueError."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}: allowed {', '.join(POLICY_NAMES)}")
    return _cached_policy(name, config)


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
    bad = [n for n in names if n not in POLICIES]
    if bad:
        raise ValueError(f"--policies: unknown name(s) {', '.join(bad)}; allowed: all, {', '.join(POLICY_NAMES)}")
    return tuple(dict.fromkeys(names))


__all__ = ["BASELINE_NAMES", "POLICIES", "POLICY_NAMES", "Policy", "PolicyEntry", "greedy_action", "make_policy",
           "oracle_cost", "parse_policy_names"]
