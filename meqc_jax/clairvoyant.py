"""The clairvoyant lower bound (dynamics-spec section 7): the least total cost over a horizon of H slots
from a given state, with every task, gain, arrival order and harvest of the horizon known in advance,
as a mixed-integer program solved exactly by HiGHS. No online policy can do better on the same draws.

    data = horizon_data(env, state, keys)          # what the env will draw in the next H slots (CRN)
    bound = solve(env.config, data)                # Bound(value, per_slot, status)

Decisions per slot t and user u with a task: a fraction l kept local, fractions y[e, m] offloaded to
server e in mode m (its CPUs, or its QPU), binaries x[e, m] (joins that queue) and d (dropped):

    l + sum y + d = 1,   y[e, m] <= x[e, m],   sum x + d <= 1

Under `latency_model="sum"` every term of Eq. 12 is linear in the fractions (spec 5, 7):
cost = l c_local + sum y c_off[e, m] + lam_d (wait paid if x = 1) + d lam_d drop_penalty, device
energy l e_local + sum y e_off[e]. The carried state follows the dynamics' recursions exactly:

* queues (section 2): the wait of u at (e, m) is W = Q_m[e] + the work of the slot's earlier arrivals
  at that queue; z >= W - M (1 - x) prices it, W <= max_wait + M (1 - x) admits it, and
  Q_m[e]' >= Q_m[e] + arrivals - tau, Q' >= 0 is exact as two inequalities because cost grows with
  the backlog. The mode at e is the QPU where the task is feasible, else the CPUs (section 2).
* battery (section 3): sum energy <= B[u], B' <= B - energy + h, B' <= battery_j (a higher charge
  never hurts, so the bound takes the min exactly).
* without queues, Eq. 13b holds: one QPU task per server and a feasible user on e's CPUs only if
  someone else holds e's QPU (the oracle's constraints); the planner picks the winners, which under
  `arrival` is a relaxation (the env draws them), so the value stays a lower bound.

The planner may also drop a task it could serve (d = 1): another relaxation, never used when serving
is cheaper. `phi_grid` restricts the local fraction of an offloaded task to a finite set (the
brute-force tests enumerate the same set); None (the default) leaves it continuous, the bound.
Only `latency_model="sum"` is supported (a one-line ValueError otherwise); instances are meant to be
small (the tests: U, E <= 2, H <= 3; the experiments: U = E = 3..5, H = 5..20).
"""

from __future__ import annotations

import dataclasses
import functools

import highspy
import jax
import jax.numpy as jnp
import numpy as np

from meqc_jax import dynamics
from meqc_jax.config import SystemConfig
from meqc_jax.cost import HOLD_PHI, arrival_priority, option_costs, option_loads
from meqc_jax.env import MEQCEnv
from meqc_jax.highs import new_highs


@dataclasses.dataclass(frozen=True)
class HorizonData:
    """Everything the clairvoyant planner knows about H slots from a state (NumPy, float64)."""

    has_task: np.ndarray  # [H, U] bool
    order: np.ndarray  # [H, U] arrival priority (lower arrives first)
    lam_d: np.ndarray  # [U]
    c_local: np.ndarray  # [H, U] cost of keeping the whole task local
    e_local: np.ndarray  # [H, U] its device energy
    c_cpu: np.ndarray  # [H, U, E] cost of offloading it all to e's CPUs (no wait)
    c_qpu: np.ndarray  # [H, U, E] ... to e's QPU (meaningful where feasible)
    e_off: np.ndarray  # [H, U, E] device energy of offloading it all to e
    work_cpu: np.ndarray  # [H, U, E] seconds of e's CPU time it needs
    work_qpu: np.ndarray  # [H, U, E] seconds of e's QPU time
    feasible: np.ndarray  # [H, U, E] bool, Eq. 11
    harvest: np.ndarray  # [H, U] J harvested at the end of each slot (zeros without a battery)
    cpu_backlog0: np.ndarray  # [E] s of CPU work waiting at the start
    qpu_backlog0: np.ndarray  # [E] s of QPU work waiting at the start
    battery0: np.ndarray  # [U] J at the start (inf without a battery)


@dataclasses.dataclass(frozen=True)
class Plan:
    """The clairvoyant plan as env actions, per slot and user ([H, U] each): replaying it in the env on the
    same draws charges each served user its `per_user` cost (tested). A task the plan drops (d = 1, a
    relaxation: the env never drops a task it can serve) has no env action; `phi` keeps it local."""

    server: np.ndarray  # int, the server its offloaded part goes to (0 when it keeps the task local)
    phi: np.ndarray  # the local fraction, 1 - the offloaded share (HOLD_PHI: it holds a QPU sending nothing)
    quantum: np.ndarray  # bool, the part runs on the server's QPU (the env action's `preferred`)
    dropped: np.ndarray  # bool, the plan drops the task (d = 1)
    per_user: np.ndarray  # each user's cost in the plan (its terms of the MIP's objective); sums to per_slot


@dataclasses.dataclass(frozen=True)
class Bound:
    value: float  # the minimum total cost over the horizon (with a time limit: the best plan found)
    per_slot: np.ndarray  # [H] that plan's cost per slot
    status: str
    lower: float = float("nan")  # proven lower bound: = value when optimal, HiGHS's dual bound when time ran out
    plan: Plan | None = None  # the actions of the plan that achieves `value` (None: no plan found in time)

    @property
    def optimal(self) -> bool:
        return self.status == "Optimal"


@functools.lru_cache(maxsize=16)
def _tables(config: SystemConfig):
    @jax.jit
    def tables(state, key):
        sc, tk = state.scenario, state.tasks
        U = tk.g.shape[0]
        ones, zeros = jnp.ones(U), jnp.zeros(U)
        at0 = option_costs(config, sc, tk, zeros)
        loads0 = option_loads(config, sc, tk, zeros)
        k_arb = jax.random.split(key, 4)[0]  # the env's arbitration / arrival-order key (MEQCEnv.step)
        return dict(c_local=option_costs(config, sc, tk, ones).classical[:, 0],
                    e_local=option_loads(config, sc, tk, ones).device_energy[:, 0],
                    c_cpu=at0.classical, c_qpu=at0.quantum, feasible=at0.feasible, e_off=loads0.device_energy,
                    work_cpu=loads0.cpu_seconds, work_qpu=loads0.qpu_seconds,
                    order=arrival_priority(config.arbitration, k_arb, U))
    return tables


@functools.lru_cache(maxsize=16)
def _stepper(config: SystemConfig):
    return jax.jit(MEQCEnv(config).step)  # the draws do not depend on the env's reward


def horizon_data(env: MEQCEnv, state, keys) -> HorizonData:
    """The H = len(keys) slots that `env.step(keys[t], ...)` will draw from `state` (one instance).
    Tasks, arrivals, orders and harvests do not depend on the actions (common random numbers), so
    they are read off a rollout that keeps every task local. The horizon must stay in one episode."""
    config = env.config
    H = len(keys)
    if config.latency_model != "sum":
        raise ValueError(f"clairvoyant: SystemConfig.latency_model={config.latency_model!r} is unsupported: "
                         "allowed sum")
    if int(state.t) + H > config.slots_per_episode:
        raise ValueError(f"clairvoyant: a horizon of {H} slots from slot {int(state.t)} crosses the episode's end "
                         f"(slots_per_episode={config.slots_per_episode}); allowed H <= {config.slots_per_episode - int(state.t)}")
    U, E = config.num_users, config.num_servers
    hold = (jnp.zeros(U, jnp.int32), jnp.ones(U))
    step, tables = _stepper(config), _tables(config)
    def inputs(state) -> dict:
        """What the active dynamics' carries give the MIP (`Dynamic.horizon_inputs`), computed in float64 NumPy
        (the hooks are array-generic: the MIP's inputs are not rounded to the env's float32)."""
        as64 = lambda x: np.asarray(x, np.float64) if np.asarray(x).dtype.kind == "f" else np.asarray(x)  # noqa: E731
        return dict(dynamics.horizon_inputs(jax.tree.map(as64, state.carry), jax.tree.map(as64, state.scenario)))

    rows, harvest, has_task = [], [], []
    start = inputs(state)
    for t in range(H):
        rows.append(jax.tree.map(np.asarray, tables(state, keys[t])))
        has_task.append(inputs(state).get("has_task", np.ones(U, bool)))  # the slot's arrivals, drawn before it
        _, state, _, _, _ = step(keys[t], state, hold)
        harvest.append(inputs(state).get("harvest", np.zeros(U)))  # drawn at its end
    stack = {k: np.stack([r[k] for r in rows]).astype(np.float64 if k not in ("feasible",) else bool) for k in rows[0]}
    f64 = functools.partial(np.asarray, dtype=np.float64)
    return HorizonData(
        has_task=np.stack(has_task).astype(bool), lam_d=np.asarray(state.scenario.lam_d, np.float64),
        harvest=np.stack(harvest).astype(np.float64),
        cpu_backlog0=f64(start["cpu_backlog0"]) if "cpu_backlog0" in start else np.zeros(E),
        qpu_backlog0=f64(start["qpu_backlog0"]) if "qpu_backlog0" in start else np.zeros(E),
        battery0=f64(start["battery0"]) if "battery0" in start else np.full(U, np.inf),
        **stack)


class _Model:
    """A sparse MIP under construction: columns with bounds, cost and integrality; rows lo <= a x <= hi."""

    def __init__(self):
        self.cost, self.lo, self.hi, self.integer = [], [], [], []
        self.rows, self.cols, self.vals, self.row_lo, self.row_hi = [], [], [], [], []

    def var(self, cost=0.0, lo=0.0, hi=highspy.kHighsInf, integer=False) -> int:
        self.cost.append(cost)
        self.lo.append(lo)
        self.hi.append(hi)
        self.integer.append(integer)
        return len(self.cost) - 1

    def row(self, terms, lo=-highspy.kHighsInf, hi=highspy.kHighsInf):
        r = len(self.row_lo)
        for c, v in terms:
            self.rows.append(r)
            self.cols.append(c)
            self.vals.append(float(v))
        self.row_lo.append(lo)
        self.row_hi.append(hi)

    def solve(self, time_limit: float | None = None):
        h = new_highs()
        if time_limit is not None:
            h.setOptionValue("time_limit", float(time_limit))
        h.setOptionValue("mip_rel_gap", 1e-9)
        h.setOptionValue("mip_abs_gap", 0.0)
        h.setOptionValue("threads", 1)
        n = len(self.cost)
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = n, len(self.row_lo)
        lp.col_cost_ = np.asarray(self.cost, float)
        lp.col_lower_, lp.col_upper_ = np.asarray(self.lo, float), np.asarray(self.hi, float)
        lp.row_lower_, lp.row_upper_ = np.asarray(self.row_lo, float), np.asarray(self.row_hi, float)
        rows, cols = np.asarray(self.rows, np.int32), np.asarray(self.cols, np.int32)
        order = np.lexsort((rows, cols))
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = np.searchsorted(cols[order], np.arange(n + 1)).astype(np.int32)
        lp.a_matrix_.index_ = rows[order]
        lp.a_matrix_.value_ = np.asarray(self.vals, float)[order]
        lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                           for i in self.integer]
        h.passModel(lp)
        h.run()
        ms = h.getModelStatus()
        status = h.modelStatusToString(ms)
        if ms not in (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kTimeLimit):
            raise RuntimeError(f"clairvoyant: HiGHS did not solve the horizon's MIP: {status}")
        info = h.getInfo()
        # every cost is >= 0, so 0 is a proven bound even before HiGHS has one
        lower = float(info.objective_function_value) if ms == highspy.HighsModelStatus.kOptimal else max(
            float(info.mip_dual_bound), 0.0)
        sol = h.getSolution()
        x = np.asarray(sol.col_value) if sol.value_valid else None  # no plan found in time: None
        return x, status, lower


def solve(config: SystemConfig, data: HorizonData, phi_grid: tuple[float, ...] | None = None,
          time_limit: float | None = None) -> Bound:
    """The clairvoyant minimum total cost over the horizon of `data` (module docstring). With `time_limit`
    (seconds) HiGHS may stop early: `Bound.lower` is then its proven lower bound (still no online policy
    can beat it) and `value` the best plan found; without one it solves to optimality (`lower` = `value`)."""
    queued = "queues" in config.dynamics
    battery = "battery" in config.dynamics
    H, U, E = data.c_cpu.shape
    tau, max_wait, penalty = float(config.slot_s), config.max_wait, config.drop_penalty
    if phi_grid is not None and not all(0.0 <= g < 1.0 for g in phi_grid):
        raise ValueError(f"clairvoyant: phi_grid={phi_grid!r} is invalid: allowed local fractions in [0, 1)")
    m = _Model()
    modes = ("cpu", "qpu")
    # queue levels Q[t][m][e], t = 0..H (t = 0 fixed to the start), in seconds of work
    Q = None
    if queued:
        start = {"cpu": data.cpu_backlog0, "qpu": data.qpu_backlog0}
        Q = [{md: [m.var(lo=start[md][e], hi=start[md][e]) if t == 0 else m.var() for e in range(E)] for md in modes}
             for t in range(H + 1)]
        big_m = max_wait + float(np.max(data.cpu_backlog0, initial=0) + np.max(data.qpu_backlog0, initial=0)) \
            + float(np.sum(np.maximum(data.work_cpu, data.work_qpu))) + 1.0
    B = None
    if battery:
        B = [[m.var(lo=data.battery0[u], hi=data.battery0[u]) if t == 0 else m.var(hi=config.battery_j)
              for u in range(U)] for t in range(H + 1)]
    slot_terms = [[] for _ in range(H)]  # (column, cost, user) per slot, for the per-slot and per-user values
    plan_cols = []  # (t, u, l, d, opts) per user with a task, for the plan's actions
    for t in range(H):
        arrivals = {md: [[] for _ in range(E)] for md in modes}  # (column, work) per queue
        users = []
        for u in range(U):
            if not data.has_task[t, u]:
                continue
            lam = data.lam_d[u]
            l_col = m.var(cost=data.c_local[t, u], hi=1.0)
            d_col = m.var(cost=lam * penalty, hi=1.0, integer=True)
            slot_terms[t] += [(l_col, data.c_local[t, u], u), (d_col, lam * penalty, u)]
            opts = []  # (e, mode, y column, x column)
            for e in range(E):
                feas = bool(data.feasible[t, u, e])
                for md in (("qpu" if feas else "cpu",) if queued else (("cpu", "qpu") if feas else ("cpu",))):
                    c_off = data.c_qpu[t, u, e] if md == "qpu" else data.c_cpu[t, u, e]
                    y = m.var(cost=c_off, hi=1.0)
                    x = m.var(hi=1.0, integer=True)
                    slot_terms[t].append((y, c_off, u))
                    if phi_grid is None:
                        m.row([(y, 1.0), (x, -1.0)], hi=0.0)  # y <= x
                    else:  # y = sum_k (1 - g_k) s_k with sum_k s_k = x: the offloaded share is on the grid
                        ss = [m.var(hi=1.0, integer=True) for _ in phi_grid]
                        m.row([(y, 1.0)] + [(s, -(1.0 - g)) for s, g in zip(ss, phi_grid)], lo=0.0, hi=0.0)
                        m.row([(x, -1.0)] + [(s, 1.0) for s in ss], lo=0.0, hi=0.0)
                    opts.append((e, md, y, x))
            m.row([(l_col, 1.0), (d_col, 1.0)] + [(y, 1.0) for _, _, y, _ in opts], lo=1.0, hi=1.0)
            m.row([(d_col, 1.0)] + [(x, 1.0) for _, _, _, x in opts], hi=1.0)
            if battery:  # the device must afford its action (section 3)
                energy = [(l_col, data.e_local[t, u])] + [(y, data.e_off[t, u, e]) for e, _, y, _ in opts]
                m.row(energy + [(B[t][u], -1.0)], hi=0.0)
                m.row([(B[t + 1][u], 1.0), (B[t][u], -1.0)] + energy, hi=float(data.harvest[t, u]))
            users.append((u, opts))
            plan_cols.append((t, u, l_col, d_col, opts))
            for e, md, y, x in opts:
                work = data.work_qpu[t, u, e] if md == "qpu" else data.work_cpu[t, u, e]
                arrivals[md][e].append((u, y, x, work))
        if battery:
            for u in range(U):
                if not data.has_task[t, u]:  # no task: the charge only harvests
                    m.row([(B[t + 1][u], 1.0), (B[t][u], -1.0)], hi=float(data.harvest[t, u]))
        if queued:
            for md in modes:
                for e in range(E):
                    here = arrivals[md][e]
                    for u, y, x, work in here:  # FIFO: the earlier arrivals at this queue are ahead of u
                        ahead = [(y2, w2) for u2, y2, _, w2 in here
                                 if (data.order[t, u2], u2) < (data.order[t, u], u)]
                        z = m.var(cost=data.lam_d[u])
                        slot_terms[t].append((z, data.lam_d[u], u))
                        wait = [(Q[t][md][e], 1.0)] + [(y2, w2) for y2, w2 in ahead]
                        # z >= W - M (1 - x)
                        m.row([(z, 1.0)] + [(c, -v) for c, v in wait] + [(x, -big_m)], lo=-big_m)
                        # admitted only within max_wait: W <= max_wait + M (1 - x)
                        m.row(wait + [(x, big_m)], hi=max_wait + big_m)
                    # Q' >= Q + arrivals - tau
                    m.row([(Q[t + 1][md][e], 1.0), (Q[t][md][e], -1.0)] + [(y, -w) for _, y, _, w in here], lo=-tau)
        else:  # Eq. 13b: one QPU task per server, a feasible user on the CPUs only behind a QPU holder
            for e in range(E):
                holders = [(u, x) for u, opts in users for e2, md, _, x in opts if e2 == e and md == "qpu"]
                if holders:
                    m.row([(x, 1.0) for _, x in holders], hi=1.0)
                for u, opts in users:
                    for e2, md, _, x in opts:
                        if e2 == e and md == "cpu" and data.feasible[t, u, e]:
                            m.row([(x, 1.0)] + [(x2, -1.0) for u2, x2 in holders if u2 != u], hi=0.0)
    x, status, lower = m.solve(time_limit)
    if x is None:
        return Bound(value=float("inf"), per_slot=np.full(H, np.nan), status=status, lower=lower)
    per_user = np.zeros((H, U))
    for t, terms in enumerate(slot_terms):
        for c, v, u in terms:
            per_user[t, u] += x[c] * v
    per_slot = per_user.sum(1)
    value = float(per_slot.sum())
    return Bound(value=value, per_slot=per_slot, status=status, lower=value if status == "Optimal" else lower,
                 plan=_plan(x, plan_cols, per_user))


def _plan(x, plan_cols, per_user) -> Plan:
    """The solution's actions: the offload (at most one (e, mode) has x = 1) and its share 1 - phi."""
    H, U = per_user.shape
    server, phi = np.zeros((H, U), np.int32), np.ones((H, U))
    quantum, dropped = np.zeros((H, U), bool), np.zeros((H, U), bool)
    for t, u, _, d_col, opts in plan_cols:
        dropped[t, u] = x[d_col] > 0.5
        for e, md, y, xc in opts:
            if x[xc] > 0.5:
                server[t, u], quantum[t, u] = e, md == "qpu"
                share = min(max(float(x[y]), 0.0), 1.0)
                # a QPU holder that sends (almost) nothing still requests the QPU: phi just below 1
                phi[t, u] = HOLD_PHI if md == "qpu" and share < 1.0 - HOLD_PHI else 1.0 - share
    return Plan(server=server, phi=phi, quantum=quantum, dropped=dropped, per_user=per_user)


__all__ = ["Bound", "HorizonData", "Plan", "horizon_data", "solve"]
