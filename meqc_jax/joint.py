"""Planners over joint modes when users contend for their servers (dynamics-spec section 8).

Under `contention` a user's cost depends on how many others share its server's uplink and CPUs,
so the slot's optimum is no longer an assignment problem (`meqc_jax.oracle`'s MIP). Every planner
here works on joint modes (`cost.price_modes`: each user local, on a server's CPUs or on its QPU,
at its best split given everyone's mode) and returns an env action `(server, phi, preferred)`:

    enumerate_optimum   the exact slot optimum: every one of the (1 + 2E)^U joint modes priced at
                        once (vmapped) and the cheapest kept; for small instances (U <= 6, E <= 3
                        is 117,649 joint modes): the yardstick's definition, kept as its test
    dp_optimum          the same optimum by dynamic programming over servers (each server's users
                        affect no one elsewhere): E 2^U (U + 1) joint modes and E 3^U subset pairs,
                        exact up to U = 14 (U = E = 10 in milliseconds per slot)
    greedy_modes        the sequential greedy: users in index order, each taking the mode that
                        minimizes the system cost of the users placed so far (a heuristic now)
    best_response       the decentralized game (Chen et al. 2016): from the greedy, users in turn
                        switch to the mode cheapest for themselves given the others, until a whole
                        round changes nothing (a Nash equilibrium) or `max_rounds`

All are pure JAX (jit / vmap over instances); none uses a Python loop over users or modes.
"""

from __future__ import annotations

import functools
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from meqc_jax import dynamics
from meqc_jax.config import SystemConfig
from meqc_jax.cost import ModeOutcome, mode_table, num_modes, price_modes

# The enumeration materializes every joint mode of a slot; above this it is refused (memory and time).
MAX_JOINT_MODES = 2_000_000
BEST_RESPONSE_ROUNDS = 20  # rounds of best-response dynamics before it gives up (not converged)
# a user switches only when it gains more than this fraction of its cost (float32 ties never cycle)
SWITCH_TOLERANCE = 1e-6


def _uplink(config: SystemConfig) -> str | None:
    return config.contention_uplink if dynamics.contended(config) else None


def check_contention_planner(config: SystemConfig, what: str) -> None:
    """One-line ValueError unless joint modes price `config` exactly: no carried state (queue waits and
    battery drops depend on the order and size of what is sent, which joint modes do not fix)."""
    carried = [n for n in config.dynamics if n not in ("contention",)]
    if carried:
        raise ValueError(f"{what}: SystemConfig.dynamics={config.dynamics!r} is invalid: joint modes price "
                         f"contention without carried state; allowed: () or ('contention',)")


def joint_mode_count(num_users: int, num_servers: int) -> int:
    """(1 + 2E)^U, the joint modes of a slot; one-line ValueError above `MAX_JOINT_MODES`."""
    k = num_modes(num_servers)
    count = k**num_users
    if count > MAX_JOINT_MODES:
        raise ValueError(f"enumerate_optimum: (1 + 2E)^U = {k}^{num_users} = {count:,} joint modes exceeds "
                         f"{MAX_JOINT_MODES:,}; allowed e.g. U <= 6 with E <= 3 (lower num_users or num_servers)")
    return count


def joint_modes(num_users: int, num_servers: int) -> np.ndarray:
    """Every joint mode, [(1 + 2E)^U, U] int32 in lexicographic order (one-line error above the limit)."""
    count = joint_mode_count(num_users, num_servers)
    digits = np.indices((num_modes(num_servers),) * num_users, dtype=np.int32)  # [U, k, ..., k]
    return digits.reshape(num_users, count).T.copy()


def _action(out: ModeOutcome):
    return out.server, out.phi, out.quantum


@struct.dataclass
class JointOptimum:
    """The exact optimum of one slot over joint modes."""

    value: jnp.ndarray  # [] the minimum total cost
    mode: jnp.ndarray  # [U] int, a joint mode achieving it (the first in lexicographic order)
    outcome: ModeOutcome  # its pricing: the env action is (server, phi, quantum)


def enumerate_optimum(config: SystemConfig, env_state, chunk: int = 0) -> JointOptimum:
    """The slot's exact optimum by pricing every joint mode (one instance; vmap over instances).
    `chunk` > 0 prices the joint modes `chunk` at a time in a `lax.scan` (less memory, same result)."""
    check_contention_planner(config, "enumerate_optimum")
    U, E = env_state.tasks.g.shape
    cond = dynamics.conditions(env_state.carry, config, env_state.scenario, env_state.tasks)
    table = mode_table(config, env_state.scenario, env_state.tasks, cond)
    modes = jnp.asarray(joint_modes(U, E))
    uplink = _uplink(config)

    def totals(block):
        return jax.vmap(lambda m: jnp.sum(price_modes(config, table, m, uplink).per_user))(block)

    if chunk <= 0 or chunk >= modes.shape[0]:
        values = totals(modes)
        best = jnp.argmin(values)
        value = values[best]
    else:
        pad = -modes.shape[0] % chunk
        blocks = jnp.concatenate([modes, jnp.broadcast_to(modes[:1], (pad, U))]).reshape(-1, chunk, U)

        def scan(carry, xs):
            block, offset = xs
            v = totals(block)
            i = jnp.argmin(v)
            better = v[i] < carry[0]
            return (jnp.where(better, v[i], carry[0]), jnp.where(better, offset + i, carry[1])), None

        offsets = jnp.arange(blocks.shape[0]) * chunk
        (value, best), _ = jax.lax.scan(scan, (jnp.asarray(jnp.inf, jnp.float32), jnp.int32(0)), (blocks, offsets))
    mode = modes[best]
    return JointOptimum(value=value, mode=mode, outcome=price_modes(config, table, mode, uplink))


# The subset DP below keeps 2^U values per server and visits 3^U (set, subset) pairs; above this it is refused.
MAX_DP_USERS = 14


@functools.lru_cache(maxsize=8)
def _submask_pairs(num_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (set T, subset S of T) of `num_users` users as bitmasks, sorted by T: two [3^U] int32 arrays.
    Each user is outside T, in T but not S, or in S (a base-3 digit), so the pairs are the 3^U digit
    strings, built without a Python loop over them."""
    digits = np.indices((3,) * num_users, dtype=np.int32).reshape(num_users, -1)  # [U, 3^U]
    bits = (1 << np.arange(num_users, dtype=np.int32))[:, None]
    sets = np.sum(np.where(digits >= 1, bits, 0), axis=0).astype(np.int32)
    subs = np.sum(np.where(digits == 2, bits, 0), axis=0).astype(np.int32)
    order = np.argsort(sets, kind="stable")
    return sets[order], subs[order]


def check_dp_size(num_users: int) -> None:
    if not 1 <= num_users <= MAX_DP_USERS:
        raise ValueError(f"dp_optimum: num_users={num_users} is invalid: allowed 1 to {MAX_DP_USERS} (the DP visits "
                         f"3^U set-subset pairs per server)")


def dp_optimum(config: SystemConfig, env_state) -> JointOptimum:
    """The same exact optimum as `enumerate_optimum`, by dynamic programming over servers (one instance).

    Under contention without carried state the users at one server affect no one elsewhere, so the
    slot cost is a sum over servers of what each server's set of users pays (plus the local users'
    cost). For every server e, set S of users and QPU holder h (or none) the users of S are priced by
    `price_modes` (all other users local): g_e(S) = min_h. Then F_e(T) = min over subsets S of T of
    F_{e-1}(T minus S) + g_e(S), starting from F(T) = the local cost of T, and the optimum is F_E(all
    users), with its sets recovered backwards. Work: E (2^U (U + 1)) joint modes priced plus E 3^U
    pairs, instead of (1 + 2E)^U: exact at U = E = 10 in about the time the enumeration needs at
    U = 6, E = 3."""
    check_contention_planner(config, "dp_optimum")
    U, E = env_state.tasks.g.shape
    check_dp_size(U)
    cond = dynamics.conditions(env_state.carry, config, env_state.scenario, env_state.tasks)
    table = mode_table(config, env_state.scenario, env_state.tasks, cond)
    uplink = _uplink(config)
    masks = jnp.arange(1 << U, dtype=jnp.int32)
    member = ((masks[:, None] >> jnp.arange(U)[None, :]) & 1).astype(bool)  # [2^U, U]
    holders = jnp.arange(U + 1)  # U: no holder

    def group_mode(e, members, h, num_servers):  # S's users on server e (h on its QPU), everyone else local
        on = jnp.where(members, 1 + e, 0)
        return jnp.where(members & (jnp.arange(U) == h), 1 + num_servers + e, on).astype(jnp.int32)

    def group_cost(table_e, members, h):
        # priced on server e alone (the table's column e): S's users meet no one from another server, so
        # their costs are the same as in any joint mode that puts exactly S on e
        out = price_modes(config, table_e, group_mode(0, members, h, 1), uplink)
        return jnp.sum(jnp.where(members, out.per_user, 0.0))

    columns = jax.vmap(lambda e: jax.tree.map(lambda x: x[:, e][:, None] if x.ndim == 2 else x, table))(jnp.arange(E))
    per_holder = jax.vmap(lambda t: jax.vmap(lambda m: jax.vmap(lambda h: group_cost(t, m, h))(holders))(member))(
        columns)  # [E, 2^U, U + 1]
    g = per_holder.min(axis=2)
    holder = per_holder.argmin(axis=2)
    local = price_modes(config, table, jnp.zeros(U, jnp.int32), uplink).per_user
    sets, subs = (jnp.asarray(a) for a in _submask_pairs(U))

    def server_step(f, g_e):
        cand = f[sets ^ subs] + g_e[subs]
        best = jax.ops.segment_min(cand, sets, num_segments=1 << U, indices_are_sorted=True)
        choice = jax.ops.segment_min(jnp.where(cand == best[sets], subs, 1 << U), sets, num_segments=1 << U,
                                     indices_are_sorted=True)
        return best, choice

    f0 = jnp.sum(jnp.where(member, local[None, :], 0.0), axis=1)
    f, choices = jax.lax.scan(server_step, f0, g)  # choices [E, 2^U]: the subset given to server e

    def back(t, xs):
        choice_e, holder_e, e = xs
        sub = choice_e[t]
        return t ^ sub, group_mode(e, member[sub], holder_e[sub], E)

    _, per_server = jax.lax.scan(back, jnp.int32((1 << U) - 1), (choices, holder, jnp.arange(E)), reverse=True)
    mode = jnp.max(per_server, axis=0)  # each user is in at most one server's set; the rest stay 0 (local)
    return JointOptimum(value=f[-1], mode=mode, outcome=price_modes(config, table, mode, uplink))


def optimum_act(config: SystemConfig, env_state):
    """The exact slot optimum (`dp_optimum`) as a policy's action (server, phi, preferred)."""
    return _action(dp_optimum(config, env_state).outcome)


def _candidates(mode, u, k):
    """`mode` with user u's entry replaced by each of the k modes: [k, U]."""
    return jnp.broadcast_to(mode, (k,) + mode.shape).at[:, u].set(jnp.arange(k, dtype=mode.dtype))


def greedy_modes(config: SystemConfig, table, uplink) -> jnp.ndarray:
    """The sequential greedy over joint modes: users in index order, each taking the mode that minimizes
    the total cost with the users not yet placed kept local (they then add no contention and a constant
    cost, so this is the system cost of the users placed so far). Ties keep the lowest mode (local)."""
    U, E = table.g.shape
    k = num_modes(E)

    def place(mode, u):
        cands = _candidates(mode, u, k)
        totals = jax.vmap(lambda m: jnp.sum(price_modes(config, table, m, uplink).per_user))(cands)
        return mode.at[u].set(jnp.argmin(totals).astype(mode.dtype)), None

    mode, _ = jax.lax.scan(place, jnp.zeros(U, jnp.int32), jnp.arange(U))
    return mode


def greedy_act(config: SystemConfig, env_state):
    """The sequential greedy priced with contention, as a policy's action (server, phi, preferred)."""
    check_contention_planner(config, "greedy")
    cond = dynamics.conditions(env_state.carry, config, env_state.scenario, env_state.tasks)
    table = mode_table(config, env_state.scenario, env_state.tasks, cond)
    uplink = _uplink(config)
    return _action(price_modes(config, table, greedy_modes(config, table, uplink), uplink))


@struct.dataclass
class BestResponse:
    """Where best-response dynamics stopped."""

    mode: jnp.ndarray  # [U] int
    outcome: ModeOutcome
    rounds: jnp.ndarray  # [] int, rounds run (a round visits every user once)
    converged: jnp.ndarray  # [] bool, the last round changed nothing: a pure Nash equilibrium of the slot


def best_response(config: SystemConfig, env_state, max_rounds: int = BEST_RESPONSE_ROUNDS, init=None) -> BestResponse:
    """Best-response dynamics over joint modes (one instance): starting from `init` (default: the
    sequential greedy), users in index order switch to the mode cheapest for themselves (their own cost,
    the others fixed) when it gains more than `SWITCH_TOLERANCE` of their cost; stops after a round
    without a switch (converged) or `max_rounds` rounds. QPU claims follow `price_modes`' realization
    (the lowest-index claimant holds the QPU), so the game is deterministic."""
    check_contention_planner(config, "best_response")
    if not isinstance(max_rounds, int) or max_rounds < 1:
        raise ValueError(f"best_response: max_rounds={max_rounds!r} is invalid: allowed an integer >= 1")
    cond = dynamics.conditions(env_state.carry, config, env_state.scenario, env_state.tasks)
    table = mode_table(config, env_state.scenario, env_state.tasks, cond)
    uplink = _uplink(config)
    U, E = table.g.shape
    k = num_modes(E)
    mode0 = greedy_modes(config, table, uplink) if init is None else jnp.asarray(init, jnp.int32)

    def visit(carry, u):
        mode, switched = carry
        own = jax.vmap(lambda m: price_modes(config, table, m, uplink).per_user[u])(_candidates(mode, u, k))
        current = own[mode[u]]
        best = jnp.argmin(own).astype(mode.dtype)
        switch = own[best] < current - SWITCH_TOLERANCE * jnp.abs(current)
        return (mode.at[u].set(jnp.where(switch, best, mode[u])), switched | switch), None

    def one_round(state):
        mode, _, rounds = state
        (mode, switched), _ = jax.lax.scan(visit, (mode, jnp.bool_(False)), jnp.arange(U))
        return mode, switched, rounds + 1

    def go_on(state):
        _, switched, rounds = state
        return switched & (rounds < max_rounds)

    mode, switched, rounds = jax.lax.while_loop(go_on, one_round, one_round((mode0, jnp.bool_(True), jnp.int32(0))))
    return BestResponse(mode=mode, outcome=price_modes(config, table, mode, uplink), rounds=rounds,
                        converged=~switched)


def best_response_act(config: SystemConfig, env_state):
    """`best_response` as a policy's action (server, phi, preferred)."""
    return _action(best_response(config, env_state).outcome)


__all__ = ["BEST_RESPONSE_ROUNDS", "BestResponse", "JointOptimum", "MAX_DP_USERS", "MAX_JOINT_MODES", "best_response",
           "best_response_act", "check_contention_planner", "check_dp_size", "dp_optimum", "enumerate_optimum", "greedy_act", "greedy_modes",
           "joint_mode_count", "joint_modes", "optimum_act"]
