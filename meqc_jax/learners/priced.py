"""Value-priced drift-plus-penalty: the per-slot solver under prices learned from whole episodes
(issue 34, direction (a); dynamics-spec section 7).

Drift-plus-penalty (`baselines.lyapunov_policy`) places each slot's users with greedy's solver on

    V x cost + sum over queues of  w_e x (work added to e)  -  sum over devices of  (b_u - theta) x e_dev

where w_e (s) is queue e's backlog wait and b_u (J) device u's charge: the gradient of the quadratic
Lyapunov function L = (sum w_e^2 + sum (b_u - theta)^2) / 2 of the post-decision carry. That price is
linear in the carry and one V serves every state. This learner keeps the solver and learns the value of
the post-decision carry instead, as the marginal prices it gives the solver:

    cpu_price(w) = a0 W + a1 w + a2 w^2 / W          (per second of work added to a CPU queue; W = slot_s)
    qpu_price(w) = the same with its own (a0, a1, a2)
    battery_price(b) = b1 (b - theta) + B r(b / B)   (per joule; B = battery_j, r piecewise linear
                                                      through r_0..r_4 at charges 0, B/4, ..., B)
    spending e J is priced  battery_price(b) e - c e^2 / 2   (c: the value's curvature, per J^2)
    v = V exp(log_v),  theta = share x B

i.e. a value that is a cubic in each backlog and any piecewise-quadratic function of each charge, not
only DPP's quadratics. It starts *at* the best drift-plus-penalty of its grid (a1 = b1 = 1, the rest 0,
V and theta the grid's best on the learner's own training episodes), so its first policy is that DPP
exactly, and refines the fifteen numbers by evolution strategies (antithetic Gaussian perturbations, centred-rank fitness, Adam) on
whole episodes, every candidate on the same episodes (common random numbers). The policy is elitist:
it takes the search's centre only when the centre beats the prices it holds on the step's episodes, so
a noisy step never hands back prices worse than those it measured. The policy is
centralized, like DPP: it reads every queue and battery and places the users one at a time.

It applies wherever state carries between slots (`dynamics.carries_state`), as `lyapunov` does. With
exogenous dynamics only (`MEQC-Drift-v0`: no queue and no battery) every price is 0 and it is
greedy, which is that scenario's optimum online rule (docs/learning.md).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from meqc_jax import dynamics
from meqc_jax.baselines import Policy
from meqc_jax.compilation import ProgramCache
from meqc_jax.config import FieldChecker, SystemConfig, dataclass_to_dict
from meqc_jax.env import MEQCEnv
from meqc_jax.learners.interface import LearnerSpec, ScanLearner
from meqc_jax.slot_solver import Weights, slot_action

# the layout of the learned vector x (what each entry prices; module docstring)
LOG_V, THETA, CPU, QPU, BATTERY, CURVATURE = 0, 1, slice(2, 5), slice(5, 8), slice(8, 14), 14
NUM_PRICES = 15
# drift-plus-penalty's grid the start is chosen from: the best V is interior in every dynamics scenario at U = E = 10,
# theta in Battery; in Sustainable the best theta is the grid's top (6 x; 2 x was too: benchmarks/beat_dpp.py, which
# measures the yardstick on the same grid)
V_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
THETA_GRID = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # shares of battery_j (theta > capacity: every joule is dear)
CHARGE_KNOTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # where r is given, shares of battery_j (BATTERY[1:])


def start_vector(theta_share: float) -> np.ndarray:
    """x of drift-plus-penalty itself (at the base V, battery target theta_share x capacity)."""
    x = np.zeros(NUM_PRICES)
    x[THETA] = theta_share
    x[CPU.start + 1] = x[QPU.start + 1] = x[BATTERY.start] = 1.0
    return x


@dataclasses.dataclass(frozen=True)
class PricedConfig:
    """Settings of the value-priced drift-plus-penalty learner (validated)."""

    epochs: int = 40  # ES steps, each on `num_envs` fresh whole episodes
    num_envs: int = 16  # episodes per candidate per step (the same for every candidate)
    population: int = 8  # antithetic pairs per step (2 x population + 1 candidates, the centre included)
    sigma: float = 0.1  # perturbation of each learned entry
    lr: float = 0.03  # Adam's step on the entries
    v_grid: tuple[float, ...] = V_GRID  # the start's V grid
    theta_grid: tuple[float, ...] = THETA_GRID  # the start's theta, shares of battery_j

    def __post_init__(self):
        c = FieldChecker(self, "PricedConfig")
        c.integer("epochs", 1, 10**6)
        c.integer("num_envs", 1, 2**16)
        c.integer("population", 1, 2**12)
        c.real("sigma", 0.0, 10.0)
        c.real("lr", 0.0, 10.0)
        c.values("v_grid", 1e-9, 1e9)
        c.values("theta_grid", 0.0, 10.0)

    def to_dict(self) -> dict:
        return dataclass_to_dict(self)


@struct.dataclass
class PricedState:
    params: dict  # {"v": [] the base V, "x": [NUM_PRICES] the prices it acts with: the best centre so far}
    centre: jnp.ndarray  # [NUM_PRICES] the ES search's centre
    start: jnp.ndarray  # [NUM_PRICES] x of the start (the grid's best DPP): priced every step as a yardstick
    opt_state: tuple
    env_params: object
    key: jnp.ndarray  # raw key data
    epoch: jnp.ndarray  # [] int32


@struct.dataclass
class PricedMetrics:
    """Per ES step, mean costs per slot (Eq. 12) on the step's episodes: the policy's (the better of the centre
    and the prices kept so far, which it keeps), the best candidate's, the start's (the grid's best DPP); the
    policy's over the start's (the learning curve: paired, so free of the episodes' own spread); and > 0 where
    anything was NaN or inf."""

    cost: jnp.ndarray
    best_candidate_cost: jnp.ndarray
    start_cost: jnp.ndarray
    over_start: jnp.ndarray
    nonfinite: jnp.ndarray


STATE_BATCH_AXES = PricedState(params=1, centre=1, start=1, opt_state=1, env_params=1, key=1, epoch=1)


class PricedLearner(ScanLearner):
    name = "priced"
    metrics_type = PricedMetrics

    def __init__(self, system: SystemConfig, config: PricedConfig):
        if not dynamics.carries_state(system):
            raise ValueError(f"priced: SystemConfig.dynamics={system.dynamics!r} is invalid: the learner prices the "
                             "state carried between slots; allowed a scenario with queues, batteries or drift")
        if dynamics.contended(system):
            raise ValueError(f"priced: SystemConfig.dynamics={system.dynamics!r} is invalid: contention is priced "
                             "by the joint planners (droo, joint_optimum); allowed without 'contention'")
        self.system, self.config = system, config
        self.U, self.E = system.num_users, system.num_servers
        self.T = system.slots_per_episode
        self.epochs, self.num_envs = config.epochs, config.num_envs
        self.state_batch_axes = STATE_BATCH_AXES
        self.env = MEQCEnv(system)
        self.tx = optax.adam(config.lr)
        # which entries price something here: a queue or battery this scenario does not have leaves its entries
        # fixed (and without any, nothing is learned: the policy is greedy)
        terms = jax.eval_shape(lambda s: dynamics.drift_terms(s.carry, s.scenario, 0.0),
                               jax.eval_shape(lambda k: self.env.reset(k)[1], jax.random.key(0)))
        mask = np.zeros(NUM_PRICES)
        mask[CPU] = "cpu_queue" in terms
        mask[QPU] = "qpu_queue" in terms
        mask[BATTERY] = mask[THETA] = mask[CURVATURE] = "battery" in terms
        mask[LOG_V] = bool(terms)
        self.mask = jnp.asarray(mask)
        self.learns = bool(mask.any())  # False: nothing carries a price (exogenous drift only); greedy, one candidate
        self.has_battery = "battery" in terms
        self.build_programs()

    # ------------------------------------------------------------------ the prices (one instance)
    def weights(self, params, env_state) -> Weights:
        """The solver's score under the learned prices (module docstring) for this carry: dynamics-spec section 7's
        drift-plus-penalty weights (`slot_solver.lyapunov_weights`) at the start, each a learned function after."""
        x, sc = params["x"], env_state.scenario
        W, B = float(self.system.slot_s), float(self.system.battery_j)
        terms = dynamics.drift_terms(env_state.carry, sc, x[THETA] * B)
        zero_e, zero_u = jnp.zeros(self.E), jnp.zeros(self.U)

        def queue_price(w, a):
            return a[0] * W + a[1] * w + a[2] * w * w / W

        d = terms.get("battery", zero_u)
        b = x[BATTERY]
        charge = d + x[THETA] * B  # the charge itself (the drift term is its distance to theta)
        residual = B * jnp.interp(charge / B, jnp.asarray(CHARGE_KNOTS), b[1:])
        return Weights(v=params["v"] * jnp.exp(x[LOG_V]),
                       cpu_queue=queue_price(terms["cpu_queue"], x[CPU]) if "cpu_queue" in terms else zero_e,
                       qpu_queue=queue_price(terms["qpu_queue"], x[QPU]) if "qpu_queue" in terms else zero_e,
                       battery=b[0] * d + residual if "battery" in terms else zero_u,
                       battery_curvature=jnp.full(self.U, x[CURVATURE]) if "battery" in terms else None)

    def act(self, params, key, env_state, obs):
        return slot_action(self.system, env_state, self.weights(params, env_state))

    # ------------------------------------------------------------------ training
    def _episode_costs(self, vs, xs, key, env_params):
        """Mean cost per slot of each candidate (vs [C], xs [C, NUM_PRICES]) over the same `num_envs` episodes."""
        keys = jax.random.split(key, self.num_envs)

        def episode(v, x, k):
            k_reset, k_run = jax.random.split(k)
            _, s = self.env.reset(k_reset, env_params)

            def slot(s, k_env):
                action = self.act({"v": v, "x": x}, None, s, None)
                _, s, _, _, info = self.env.step(k_env, s, action)
                return s, info["cost"].total

            return jnp.mean(jax.lax.scan(slot, s, jax.random.split(k_run, self.T))[1])

        return jax.vmap(lambda v, x: jnp.mean(jax.vmap(lambda k: episode(v, x, k))(keys)))(vs, xs)

    def init(self, key, env_params=None) -> PricedState:
        env_params = self.env.default_params() if env_params is None else env_params
        k_grid, k_run = jax.random.split(key)
        c = self.config
        thetas = c.theta_grid if self.has_battery else (1.0,)
        v_grid = c.v_grid if self.learns else c.v_grid[:1]  # without a price every V is the same policy
        vs = jnp.asarray([v for v in v_grid for _ in thetas], float)
        xs = jnp.asarray(np.stack([start_vector(th) for _ in v_grid for th in thetas]))
        costs = self._episode_costs(vs, xs, k_grid, env_params)  # the start: the grid's best DPP
        best = jnp.argmin(costs)
        params = {"v": vs[best], "x": xs[best]}
        return PricedState(params=params, centre=xs[best], start=xs[best], opt_state=self.tx.init(params["x"]), env_params=env_params,
                           key=jax.random.key_data(k_run), epoch=jnp.int32(0))

    def epoch(self, state: PricedState, _=None):
        c = self.config
        key = jax.random.wrap_key_data(state.key)
        key, k_eps, k_noise = jax.random.split(key, 3)
        x, v, kept = state.centre, state.params["v"], state.params["x"]
        if not self.learns:  # nothing to perturb: the step only prices its (greedy) policy on fresh episodes
            cost = self._episode_costs(v[None], x[None], k_eps, state.env_params)[0]
            new = state.replace(key=jax.random.key_data(key), epoch=state.epoch + 1)
            return new, PricedMetrics(cost=cost, best_candidate_cost=cost, start_cost=cost, over_start=jnp.ones(()),
                                      nonfinite=(~jnp.isfinite(cost)).astype(jnp.float32))
        noise = jax.random.normal(k_noise, (c.population, NUM_PRICES)) * self.mask
        xs = jnp.concatenate([x + c.sigma * noise, x - c.sigma * noise, x[None], kept[None], state.start[None]])
        costs = self._episode_costs(jnp.full(xs.shape[0], v), xs, k_eps, state.env_params)
        plus, minus = costs[:c.population], costs[c.population:2 * c.population]
        # centred ranks over every perturbed candidate (in [-0.5, 0.5]): robust to the episodes' scale
        ranks = jnp.argsort(jnp.argsort(jnp.concatenate([plus, minus]))) / (2 * c.population - 1) - 0.5
        grad = jnp.mean((ranks[:c.population] - ranks[c.population:])[:, None] * noise, axis=0) / c.sigma
        updates, opt_state = self.tx.update(grad * self.mask, state.opt_state, x)
        # elitist: the policy moves to the centre only when the centre beats it on the same episodes (paired), so
        # the noisy search never hands back something worse than what it measured; the start is the first kept
        centre_cost, kept_cost, start_cost = costs[-3], costs[-2], costs[-1]
        kept = jnp.where(centre_cost < kept_cost, x, kept)
        played = jnp.minimum(centre_cost, kept_cost)
        x = optax.apply_updates(x, updates)
        finite = jnp.all(jnp.isfinite(costs)) & jnp.all(jnp.isfinite(x))
        new = PricedState(params={"v": v, "x": kept}, centre=x, start=state.start, opt_state=opt_state,
                          env_params=state.env_params, key=jax.random.key_data(key), epoch=state.epoch + 1)
        return new, PricedMetrics(cost=played, best_candidate_cost=jnp.min(costs[:-1]), start_cost=start_cost,
                                  over_start=played / jnp.maximum(start_cost, 1e-12),
                                  nonfinite=(~finite).astype(jnp.float32))

    # ------------------------------------------------------------------ the Learner interface, rest
    chunk_lower = "the episodes per step (num_envs), the population, or the runs trained at once"

    def chunk_description(self, runs: int, num_epochs: int) -> str:
        return (f"priced training of {runs} run(s) at U={self.U}, E={self.E}: {2 * self.config.population + 3} "
                f"candidates x {self.num_envs} episodes of {self.T} slots per step")

    def policy(self, params, name: str = "priced") -> Policy:
        return Policy(name, functools.partial(self.act, params), centralized=True)

    def sweep_policy(self, stacked_params, name: str = "priced") -> Policy:
        return Policy(name, None, centralized=True, params=stacked_params, act_with=self.act)

    def param_counts(self) -> dict:
        n = int(np.sum(np.asarray(self.mask) > 0))
        return {"per_agent": n, "agents": 1, "central_critic": 0, "total": n}

    def describe(self) -> dict:
        c = self.config
        grid = (len(c.v_grid) if self.learns else 1) * (len(c.theta_grid) if self.has_battery else 1)
        candidates = 2 * c.population + 3 if self.learns else 1
        return {"learner": self.name, **c.to_dict(), "episodes_per_step": self.num_envs,
                "candidates_per_step": candidates, "start_candidates": grid, "learned_prices": self.learns,
                # environment steps (slots of one instance) a run takes: per ES step, and once for the start
                "env_steps_per_epoch": candidates * self.num_envs * self.T,
                "env_steps_start": grid * self.num_envs * self.T}


def make_train(system: SystemConfig, config: PricedConfig | None = None) -> PricedLearner:
    """The value-priced DPP learner for `system` (cached by the frozen configurations: programs are shared)."""
    config = PricedConfig() if config is None else config
    return _LEARNERS.get((system, config), lambda: PricedLearner(system, config))


_LEARNERS = ProgramCache("priced learners", maxsize=8)
PRESETS = {"default": {}}
LEARNER = LearnerSpec("priced", make_train, PricedConfig, PRESETS, "default",
                      "drift-plus-penalty's solver under learned prices of the carry (ES from the best grid V)")

__all__ = ["LEARNER", "NUM_PRICES", "PRESETS", "PricedConfig", "PricedLearner", "PricedMetrics", "PricedState",
           "make_train", "start_vector"]
