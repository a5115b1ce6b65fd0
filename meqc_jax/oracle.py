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
(opt-in) it solves their LP relaxation first and the MIP only when the relaxation's optimum is
fractional (rarely: 2 of 160 colliding slots), the same optimum about 3x faster.
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


def solve_mip(local, classical, quantum, feasible, relax_first: bool = False):
    """The spec-11 MIP of the module docstring with HiGHS; returns (mode [U], server [U]).
    `relax_first` (`SystemConfig.oracle_lp_first`): try the LP relaxation first (below); the same optimal
    value, though among equal-cost assignments it may return another than the MIP would."""
    U, E = classical.shape
    n = U * E
    # variable j: x_c[u,e] at j = u*E + e, x_q[u,e] at j = n + u*E + e
    d_c = (classical - local[:, None]).ravel()
    d_q = (quantum - local[:, None]).ravel()
    # A QPU held at phi -> 1 (quantum == local) is replayed a hair above the local cost; a tiny
    # tie-breaker keeps the solver from picking such holders when nobody needs them.
    hold = np.isclose(d_q, 0.0, rtol=0.0, atol=1e-12 * np.maximum(np.abs(local), 1.0).repeat(E))
    cost = np.concatenate([d_c, d_q + hold * 1e-9 * np.maximum(np.abs(local), 1.0).repeat(E)])
    upper = np.concatenate([(d_c < 0).astype(float), feasible.ravel().astype(float)])

    rows, cols, vals, row_upper = [], [], [], []
    r = 0
    for u in range(U):  # one option per user
        idx = np.arange(u * E, (u + 1) * E)
        rows += [r] * (2 * E)
        cols += list(idx) + list(n + idx)
        vals += [1.0] * (2 * E)
        row_upper.append(1.0)
        r += 1
    for e in range(E):  # one QPU task per server
        rows += [r] * U
        cols += list(n + np.arange(U) * E + e)
        vals += [1.0] * U
        row_upper.append(1.0)
        r += 1
    for u, e in zip(*np.nonzero(feasible & (d_c.reshape(U, E) < 0))):  # classical at e needs a holder
        rows += [r] * (U + 1)
        cols += [u * E + e] + list(n + np.arange(U) * E + e)
        vals += [1.0] + [-1.0] * U
        row_upper.append(0.0)
        r += 1

    h = new_highs()
    h.setOptionValue("mip_rel_gap", 1e-9)
    h.setOptionValue("mip_abs_gap", 0.0)
    h.setOptionValue("threads", 1)
    lp = highspy.HighsLp()
    lp.num_col_ = 2 * n
    lp.num_row_ = r
    lp.col_cost_ = cost
    lp.col_lower_ = np.zeros(2 * n)
    lp.col_upper_ = upper
    lp.row_lower_ = np.full(r, -highspy.kHighsInf)
    lp.row_upper_ = np.asarray(row_upper)
    order = np.lexsort((np.asarray(rows), np.asarray(cols)))  # column-wise (CSC)
    cols_sorted = np.asarray(cols)[order]
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.searchsorted(cols_sorted, np.arange(2 * n + 1)).astype(np.int32)
    lp.a_matrix_.index_ = np.asarray(rows, dtype=np.int32)[order]
    lp.a_matrix_.value_ = np.asarray(vals)[order]
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
        x_real = np.asarray(h.getSolution().col_value)
        x = np.round(x_real).astype(int)
        xc, xq = x[:n].reshape(U, E), x[n:].reshape(U, E)
        mode = np.where(xq.any(1), QUANTUM, np.where(xc.any(1), CLASSICAL, LOCAL))
        server = np.where(mode == QUANTUM, xq.argmax(1), np.where(mode == CLASSICAL, xc.argmax(1), 0))
        if integer or (np.all(np.abs(x_real - x) <= 1e-7) and np.all(xc.sum(1) + xq.sum(1) <= 1)
                       and check_assignment(mode, server, feasible)):
            return mode, server
    raise AssertionError("unreachable")


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
    at = servers[..., None] == np.arange(E)  # [B, U, E]
    holders = np.sum(at & (modes == QUANTUM)[..., None], axis=1)  # [B, E] QPU tasks per server
    needs_holder = (modes == CLASSICAL) & np.take_along_axis(feasible, servers[..., None], -1)[..., 0]
    unheld = np.take_along_axis(holders, servers, -1) == 0
    for i in np.flatnonzero(np.any(holders > 1, axis=-1) | np.any(needs_holder & unheld, axis=-1)):
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


__all__ = ["HOLD_PHI", "assignment_value", "check_assignment", "oracle_act", "oracle_cost", "solve_batch", "solve_mip",
           "solve_slot"]
