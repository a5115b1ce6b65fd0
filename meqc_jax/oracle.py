"""The exact per-slot optimum of a central planner (spec section 11), solved with HiGHS.

The planner chooses every user's server and split and each server's QPU winner. Per user and
option (local; classical at e; quantum at e) the best split is known in closed form
(`cost.option_table`), so what remains is a small mixed-integer program over binaries
x[u, e, mode]:

    minimise  sum_u local_u + sum_{u,e} x_c[u,e] (classical[u,e] - local_u) + x_q[u,e] (quantum[u,e] - local_u)
    s.t.      sum_e x_c[u,e] + x_q[u,e] <= 1                 each user at most one option (else local)
              sum_u x_q[u,e] <= 1                           one QPU task per server (Eq. 13b)
              x_q[u,e] = 0 where not feasible               Eq. 11
              x_c[u,e] <= sum_v x_q[v,e] where feasible      a feasible user offloading to e requests
                                                            its QPU, so it can run on e's CPUs only if
                                                            someone else holds that QPU (spec 8)

Its value is a lower bound on the slot cost of every policy under every arbitration rule. It is
a per-slot optimum: in the paper's model (no dynamics) slots are independent, so it is also the
optimum of every episode; with carried state (`meqc_jax.dynamics`) it prices the carry as it
finds it and ignores what the slot leaves behind, i.e. it is then a myopic planner, not a bound. Most
slots need no solver: when every user's unconstrained best option already satisfies the
constraints, that assignment is optimal; only the others go to HiGHS. With `config.oracle_lp_first`
(opt-in) it solves their LP relaxations first, many slots to one block-diagonal LP (`solve_lp_block`),
and the MIP only where a slot's relaxed optimum is fractional (rarely: 2 of 160 colliding slots): the
same optimal values about 6x faster than the MIPs.
"""

from __future__ import annotations

import functools

import highspy
import jax
import jax.numpy as jnp
import numpy as np

from meqc_jax import dynamics
from meqc_jax.config import SystemConfig
from meqc_jax.highs import new_highs
from meqc_jax.cost import HOLD_PHI, OptionTable, option_table
from meqc_jax.tasks import Scenario, Tasks

LOCAL, CLASSICAL, QUANTUM = 0, 1, 2


def check_assignment(mode, server, feasible) -> bool:
    """Whether an assignment (mode [U], server [U]) satisfies the MIP's constraints."""
    quantum_at = server[mode == QUANTUM]
    if len(np.unique(quantum_at)) != len(quantum_at):
        return False
    held = np.zeros(feasible.shape[1], bool)
    held[quantum_at] = True
    users = np.flatnonzero(mode == CLASSICAL)
    return not np.any(feasible[users, server[users]] & ~held[server[users]])


def assignment_value(local, classical, quantum, mode, server) -> float:
    """Eq. 12 total of an assignment, recomputed from the option costs (not the solver objective)."""
    users = np.arange(len(local))
    return float(np.sum(np.select([mode == CLASSICAL, mode == QUANTUM],
                                  [classical[users, server], quantum[users, server]], local)))


def valid_batch(mode, server, feasible):
    """`check_assignment` over a batch (spec 11's constraints: one QPU task per server, Eq. 13b; a CPU
    user at a feasible server needs a holder, spec 8): mode, server [B, U], feasible [B, U, E] -> bool [B]."""
    E = feasible.shape[-1]
    at = server[..., None] == np.arange(E)  # [B, U, E]
    holders = np.sum(at & (mode == QUANTUM)[..., None], axis=-2)  # [B, E] QPU tasks per server
    needs_holder = (mode == CLASSICAL) & np.take_along_axis(feasible, server[..., None], -1)[..., 0]
    unheld = np.take_along_axis(holders, server, -1) == 0
    return ~(np.any(holders > 1, axis=-1) | np.any(needs_holder & unheld, axis=-1))


def _lp_arrays(local, classical, quantum, feasible):
    """The MIPs of the module docstring for B slots (local [B, U], the rest [B, U, E]) as one
    block-diagonal program, slot after slot, without Python loops: (cost [2nB], upper [2nB], rows,
    cols, vals, row_upper). In slot b, x_c[u, e] is column 2nb + uE + e and x_q[u, e] column 2nb + n +
    uE + e; its rows are U users, E servers, then one per (u, e) whose classical option needs a holder."""
    B, U, E = classical.shape
    n = U * E
    d_c = (classical - local[..., None]).reshape(B, n)
    d_q = (quantum - local[..., None]).reshape(B, n)
    scale = np.maximum(np.abs(local), 1.0).repeat(E, axis=-1)
    # A QPU held at phi -> 1 (quantum == local) is replayed a hair above the local cost; a tiny
    # tie-breaker keeps the solver from picking such holders when nobody needs them.
    hold = np.isclose(d_q, 0.0, rtol=0.0, atol=1e-12 * scale)
    cost = np.concatenate([d_c, d_q + hold * 1e-9 * scale], axis=-1).ravel()
    upper = np.concatenate([(d_c < 0).astype(float), feasible.reshape(B, n).astype(float)], axis=-1).ravel()
    hb, hu, he = np.nonzero(feasible & (d_c.reshape(B, U, E) < 0))  # classical at e needs a holder
    k = np.bincount(hb, minlength=B)
    row0 = np.concatenate([[0], np.cumsum(U + E + k)])[:-1]  # each slot's first row
    col0 = 2 * n * np.arange(B)
    at = np.arange(n).reshape(U, E)
    fixed_rows = np.concatenate([np.repeat(np.arange(U), 2 * E),  # one option per user
                                 np.repeat(U + np.arange(E), U)])  # one QPU task per server
    fixed_cols = np.concatenate([np.concatenate([at, n + at], axis=1).ravel(), (n + at.T).ravel()])
    j = np.arange(len(hb)) - np.concatenate([[0], np.cumsum(k)])[hb]  # the holder row's index in its slot
    rows = np.concatenate([(row0[:, None] + fixed_rows).ravel(),
                           np.repeat(row0[hb] + U + E + j, U + 1)])
    cols = np.concatenate([(col0[:, None] + fixed_cols).ravel(),
                           (col0[hb, None] + np.concatenate([(hu * E + he)[:, None], n + at[:, he].T], axis=1)).ravel()])
    vals = np.concatenate([np.ones(B * 3 * n), np.tile(np.r_[1.0, -np.ones(U)], len(hb))])
    row_upper = np.ones(B * (U + E) + len(hb))
    row_upper[row0[hb] + U + E + j] = 0.0  # x_c[u, e] - sum_v x_q[v, e] <= 0
    return cost, upper, rows, cols, vals, row_upper


def _highs_lp(cost, upper, rows, cols, vals, row_upper) -> highspy.HighsLp:
    """A HiGHS LP  min cost.x  s.t.  A x <= row_upper, 0 <= x <= upper, A given as coordinates (rows, cols, vals)."""
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = len(cost), len(row_upper)
    lp.col_cost_ = cost
    lp.col_lower_ = np.zeros(len(cost))
    lp.col_upper_ = upper
    lp.row_lower_ = np.full(len(row_upper), -highspy.kHighsInf)
    lp.row_upper_ = np.asarray(row_upper)
    order = np.lexsort((rows, cols))  # column-wise (CSC)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.searchsorted(cols[order], np.arange(len(cost) + 1)).astype(np.int32)
    lp.a_matrix_.index_ = rows[order].astype(np.int32)
    lp.a_matrix_.value_ = vals[order]
    return lp


def _decode(x_real, U: int, E: int):
    """Solver values [..., 2 U E] -> (mode [..., U], server [..., U], whether integral with <= 1 option per user)."""
    x_real = x_real.reshape(x_real.shape[:-1] + (2, U, E))
    x = np.round(x_real).astype(int)
    xc, xq = x[..., 0, :, :], x[..., 1, :, :]
    mode = np.where(xq.any(-1), QUANTUM, np.where(xc.any(-1), CLASSICAL, LOCAL)).astype(np.int32)
    server = np.where(mode == QUANTUM, xq.argmax(-1), np.where(mode == CLASSICAL, xc.argmax(-1), 0)).astype(np.int32)
    integral = np.all(np.abs(x_real - x) <= 1e-7, axis=(-3, -2, -1)) & np.all(xc.sum(-1) + xq.sum(-1) <= 1, axis=-1)
    return mode, server, integral


def solve_mip(local, classical, quantum, feasible, relax_first: bool = False):
    """The spec-11 MIP of the module docstring with HiGHS; returns (mode [U], server [U]).
    `relax_first` (`SystemConfig.oracle_lp_first`): try the LP relaxation first (below); the same optimal
    value, though among equal-cost assignments it may return another than the MIP would."""
    U, E = classical.shape
    n = U * E
    h = new_highs()
    h.setOptionValue("mip_rel_gap", 1e-9)
    h.setOptionValue("mip_abs_gap", 0.0)
    h.setOptionValue("threads", 1)
    lp = _highs_lp(*_lp_arrays(local[None], classical[None], quantum[None], feasible[None]))
    # The LP relaxation first: its optimum is a lower bound on the MIP's, so when it is integral (measured:
    # 158 of 160 colliding slots at t1 = 1 s) it is the MIP's optimum, found in a third of the time.
    for integer in ((False, True) if relax_first else (True,)):
        if integer:
            lp.integrality_ = [highspy.HighsVarType.kInteger] * (2 * n)
        h.passModel(lp)
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            raise RuntimeError(f"HiGHS did not solve the slot's {'MIP' if integer else 'LP relaxation'}: "
                               f"{h.modelStatusToString(h.getModelStatus())}")
        mode, server, integral = _decode(np.asarray(h.getSolution().col_value), U, E)
        if integer or (integral and check_assignment(mode, server, feasible)):
            return mode, server
    raise AssertionError("unreachable")


def solve_lp_block(local, classical, quantum, feasible):
    """Spec 11's per-slot programs, relaxed: the LP relaxations of several slots ([B, U], [B, U, E] ...)
    as one block-diagonal LP (HiGHS once for all: its per-call cost is most of a small slot's).
    Separable, so each slot's part of the optimum is optimal for that slot; where it is integral and a
    valid assignment it is that slot's MIP optimum.
    Returns (mode [B, U], server [B, U], solved [B]); slots not solved need the MIP (`solve_mip`)."""
    B, U, E = classical.shape
    n = U * E
    h = new_highs()
    h.setOptionValue("threads", 1)
    h.passModel(_highs_lp(*_lp_arrays(local, classical, quantum, feasible)))
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return np.zeros((B, U), np.int32), np.zeros((B, U), np.int32), np.zeros(B, bool)  # every slot to the MIP
    mode, server, integral = _decode(np.asarray(h.getSolution().col_value).reshape(B, 2 * n), U, E)
    return mode, server, integral & valid_batch(mode, server, feasible)


# Slots per block-diagonal LP (`solve_lp_block`). benchmarks/bench_oracle.py (-> results/oracle_blocks.json, 2-core
# CPU, the quick run's held-out slots): U = E = 10, 4096 slots of which 1033 collide: MIPs 2.57 s, one LP each
# 1.08 s, blocks of 32-128 0.31-0.33 s (1024: 0.37 s); U = E = 30, 1366 slots (782): MIPs 5.92 s, one LP each
# 2.26 s, blocks of 64 1.65 s; every way the same values.
LP_BLOCK = 64


def solve_slot(local, classical, quantum, feasible, relax_first: bool = False):
    """Exact optimum of one slot from its option table (NumPy arrays, float64 inside).

    Returns (value, mode [U] in {LOCAL, CLASSICAL, QUANTUM}, server [U]).
    """
    local = np.asarray(local, np.float64)
    classical = np.asarray(classical, np.float64)
    quantum = np.asarray(quantum, np.float64)
    feasible = np.asarray(feasible, bool)
    U, E = classical.shape
    # Unconstrained best option per user; if it is a valid assignment it is optimal.
    q_masked = np.where(feasible, quantum, np.inf)
    options = np.concatenate([local[:, None], classical, q_masked], axis=1)  # [U, 1 + 2E]
    pick = np.argmin(options, axis=1)
    mode = np.where(pick == 0, LOCAL, np.where(pick <= E, CLASSICAL, QUANTUM))
    server = np.where(pick == 0, 0, (pick - 1) % E)
    if not check_assignment(mode, server, feasible):
        mode, server = solve_mip(local, classical, quantum, feasible, relax_first)
    return assignment_value(local, classical, quantum, mode, server), mode, server


def solve_batch(local, classical, quantum, feasible, relax_first: bool = False):
    """`solve_slot` (spec 11) over any leading batch shape; returns (value [...], mode [..., U], server [..., U]).

    The unconstrained best options and their validity are found for the whole batch at once; only
    the slots whose best options collide (two QPU tasks on one server, or a CPU user at a feasible
    server whose QPU nobody holds) go to HiGHS, one MIP each."""
    local = np.asarray(local, np.float64)
    batch = local.shape[:-1]
    U = local.shape[-1]
    E = np.asarray(classical).shape[-1]
    local = local.reshape(-1, U)
    classical = np.asarray(classical, np.float64).reshape(-1, U, E)
    quantum = np.asarray(quantum, np.float64).reshape(-1, U, E)
    feasible = np.asarray(feasible, bool).reshape(-1, U, E)
    options = np.concatenate([local[..., None], classical, np.where(feasible, quantum, np.inf)], axis=-1)
    pick = np.argmin(options, axis=-1)  # [B, U], as solve_slot picks
    modes = np.where(pick == 0, LOCAL, np.where(pick <= E, CLASSICAL, QUANTUM)).astype(np.int32)
    servers = np.where(pick == 0, 0, (pick - 1) % E).astype(np.int32)
    colliding = np.flatnonzero(~valid_batch(modes, servers, feasible))
    if relax_first:  # the relaxations of many slots in one LP each block; the MIP only where one is fractional
        for start in range(0, len(colliding), LP_BLOCK):
            idx = colliding[start:start + LP_BLOCK]
            m, s, ok = solve_lp_block(local[idx], classical[idx], quantum[idx], feasible[idx])
            modes[idx[ok]], servers[idx[ok]] = m[ok], s[ok]
            for i in idx[~ok]:
                modes[i], servers[i] = solve_mip(local[i], classical[i], quantum[i], feasible[i])
        colliding = colliding[:0]
    for i in colliding:
        modes[i], servers[i] = solve_mip(local[i], classical[i], quantum[i], feasible[i], relax_first)
    chosen = np.select([modes == CLASSICAL, modes == QUANTUM],
                       [np.take_along_axis(classical, servers[..., None], -1)[..., 0],
                        np.take_along_axis(quantum, servers[..., None], -1)[..., 0]], local)
    values = np.sum(chosen, axis=-1)
    return values.reshape(batch), modes.reshape(batch + (U,)), servers.reshape(batch + (U,))


@functools.lru_cache(maxsize=32)
def _jitted_table(config: SystemConfig):
    return jax.jit(lambda sc, tk: option_table(config, sc, tk))


def oracle_cost(config: SystemConfig, scenario: Scenario, tasks: Tasks) -> float:
    """The exact minimum slot cost over all joint actions and QPU winners (spec 11), one instance."""
    t = _jitted_table(config)(scenario, tasks)
    value, _, _ = solve_slot(t.local, t.classical, t.quantum, t.feasible, config.oracle_lp_first)
    return value


def decisions_to_action(table: OptionTable, mode, server):
    """Turn the planner's (mode, server) into an env action (server, phi, preferred) in JAX."""
    U = mode.shape[-1]
    users = jnp.arange(U)
    phi_c = table.phi_classical[users, server]
    phi_q = table.phi_quantum[users, server]
    phi = jnp.where(mode == CLASSICAL, phi_c, jnp.where(mode == QUANTUM, phi_q, 1.0))
    return server, phi, mode == QUANTUM


def oracle_act(config: SystemConfig, env_state):
    """The oracle as a policy (one instance, traceable): the option table in JAX, the MIP on the
    host through `jax.pure_callback` (batched over instances under vmap), the action back in JAX."""
    cond = dynamics.conditions(env_state.carry, config, env_state.scenario, env_state.tasks)  # None: paper
    table = option_table(config, env_state.scenario, env_state.tasks, cond)
    U, E = table.classical.shape

    def host(local, classical, quantum, feasible):
        _, mode, server = solve_batch(local, classical, quantum, feasible, config.oracle_lp_first)
        return mode, server

    shapes = (jax.ShapeDtypeStruct((U,), jnp.int32), jax.ShapeDtypeStruct((U,), jnp.int32))
    mode, server = jax.pure_callback(host, shapes, table.local, table.classical, table.quantum, table.feasible,
                                     vmap_method="broadcast_all")
    return decisions_to_action(table, mode, server)


__all__ = ["HOLD_PHI", "assignment_value", "check_assignment", "oracle_act", "oracle_cost", "solve_batch", "solve_lp_block",
           "solve_mip", "solve_slot", "valid_batch"]
