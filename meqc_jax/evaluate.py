"""Paired policy evaluation: every policy sees the same slots (common random numbers).

    result = evaluate(config, ["local", "greedy", "oracle"], num_envs=100, num_slots=100, seed=0)
    result.summary["greedy"]["mean_cost"], result.summary["greedy"]["ratio_to_oracle"]

`num_envs` independent instances are stepped `num_slots` slots each (num_envs x num_slots slots in
all). Common random numbers: the environment's randomness (scenarios, tasks, channels, arrival
orders, and every dynamic's draws) comes from one key stream shared by all policies; a policy's
own randomness comes from a separate stream. Two programs, chosen automatically (`transitions`):

* `per_policy` -- every policy runs its own trajectory of states (its carry, e.g. a queue, evolves
  with its own actions), each stepped with the same keys in the same slot. Needed as soon as
  actions change the future (`MEQCEnv.memoryless` is False).
* `shared` -- the fast path for memoryless models (the paper's): tasks never depend on actions,
  so one transition serves every policy; each is priced on the same state with the same draws.
  Both paths give identical numbers there
  (tests/test_dynamics.py::test_shared_and_per_policy_transitions_agree_exactly_on_the_paper_model).

All policies run in one jitted `lax.scan` over a chunk of slots, vmapped over instances; the
oracle's MIPs run on the host inside the same scan through `jax.pure_callback`. Compiled programs
are cached, so repeated evaluations of the same configuration and policies compile once.

Sweeps: with `env_params` (EnvParams stacked over P sweep points, see `MEQCEnv.params_for`) every
point gets its own `num_envs` instances, all points run in the same compiled program, and
`result.points[p]` holds the summary per policy at point p. A policy with `params` (stacked over the
same P points, e.g. one trained network per point) acts at each point with that point's parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from meqc_jax import dynamics, sharding
from meqc_jax.baselines import Policy, make_policy
from meqc_jax.compilation import ProgramCache, bytes_per_device, refuse_if_over
from meqc_jax.config import SystemConfig
from meqc_jax.env import MEQCEnv
from meqc_jax.progress import ProgressBar

METRICS = ("cost", "latency", "energy", "quantum_share", "qpu_offload_share", "feasible_share", "drop_share")
# with carried state, per slot and instance: the mean over servers of the waits ahead at the slot's
# start (queues), the mean device charge (battery); recorded only when that dynamic is on
# every policy's per-slot metrics (`slot_metrics`); the active dynamics add their own (`Dynamic.metrics`)
SLOT_METRICS = ("cost", "latency", "energy", "quantum_share", "qpu_offload_share", "feasible_share", "drop_share")
TRANSITIONS = ("auto", "shared", "per_policy")
# A user "served by a QPU" for `qpu_offload_share` holds a QPU *and* offloads at least this much of
# its task: the oracle may hold a QPU at phi ~ 1 (a tie with local execution), which is not service.
QPU_OFFLOAD_MIN = 0.01


@dataclasses.dataclass
class EvalResult:
    """Per-slot metrics ([num_slots, num_envs] per policy and metric) and a summary per policy."""

    per_slot: dict[str, dict[str, np.ndarray]]  # [num_slots, num_envs], or [num_slots, P, num_envs]
    summary: dict[str, dict[str, float]]  # over all slots (and points)
    config: SystemConfig
    num_envs: int
    num_slots: int
    seed: int
    wall_s: dict[str, float]  # {"all": seconds}: all policies run in one program
    points: list[dict[str, dict[str, float]]] | None = None  # per sweep point, when env_params given
    placement: dict | None = None  # devices and mesh the [P, N] instances were split over
    transitions: str = "shared"  # the program used: one shared transition, or one trajectory per policy


# the jitted evaluation programs by (config, policies, chunk, path, ...): repeated evaluations trace once
_RUNNERS = ProgramCache("evaluation programs", maxsize=16)


# the held-out evaluation after a training draws its slots from seed + this (`meqc train`, the reproduction's
# parts): far from any training seed, so a learner is never scored on the slots it trained on
HELD_OUT_SEED_OFFSET = 1_000_003


def slot_metrics(c) -> dict:
    """The per-slot metrics of a priced slot (`CostBreakdown` over [P, N] instances)."""
    return {
        "cost": c.total,
        "latency": jnp.mean(c.latency, axis=-1),
        "energy": jnp.mean(c.energy, axis=-1),
        "quantum_share": jnp.mean(c.quantum.astype(float), axis=-1),
        "qpu_offload_share": jnp.mean((c.quantum & (c.phi <= 1.0 - QPU_OFFLOAD_MIN)).astype(float), axis=-1),
        "feasible_share": jnp.mean(jnp.any(c.feasible, axis=-1).astype(float), axis=-1),
        "drop_share": jnp.mean(c.dropped.astype(float), axis=-1),
    }


def carry_metrics(config: SystemConfig, state, c) -> dict:
    """Each active dynamic's metrics (`Dynamic.metrics`) of the [P, N] instances at a slot's start, with the
    slot's priced `c`: e.g. the queues' waits and CPU load, the batteries' charge; {} for the paper."""
    def one(carry, scenario, outcome):
        return dynamics.metrics(carry, config, scenario, outcome)

    return jax.vmap(jax.vmap(one))(state.carry, state.scenario, c)


def chunk_runner(env: MEQCEnv, pols: Sequence[Policy], chunk: int, transitions: str, compiler_options=None,
                 counts: Sequence[int] | None = None, transition: bool = True):
    """One jitted program for all policies: a `lax.scan` over `chunk` slots, vmapped over [P, N]
    instances. `transitions="shared"`: every policy acts on the same state and is priced on the same
    slot, then one env transition serves them all (valid while tasks never depend on actions);
    `"per_policy"`: the scan carries one (obs, state) per policy, each stepped with the same keys.
    `counts` (shared transitions only): the carry holds max(counts) instances and policy i acts on the first
    counts[i] of them (`evaluate`'s `more_instances`).
    `transition=False` (shared transitions, a one-slot evaluation): no env transition after the slot is priced
    (the program is then a third smaller; the carry comes back as it went in).
    Cached by (config, policy functions, chunk, path) so that repeated evaluations compile once."""
    counts = None if counts is None else tuple(int(c) for c in counts)
    cache_key = (env.config, tuple((p.name, p.act, p.act_with) for p in pols), chunk, transitions, compiler_options,
                 counts, transition)
    return _RUNNERS.get(cache_key, lambda: _build_runner(env, pols, chunk, transitions, compiler_options, counts,
                                                         transition))


def _build_runner(env, pols, chunk, transitions, compiler_options, counts, transition):
    def lift(pol):
        if pol.params is None:
            one = lambda p, k, s, o: pol.act(k, s, o)  # noqa: E731
            return jax.vmap(jax.vmap(one, in_axes=(None, 0, 0, 0)), in_axes=(None, 0, 0, 0))
        return jax.vmap(jax.vmap(pol.act_with, in_axes=(None, 0, 0, 0)), in_axes=(0, 0, 0, 0))

    acts = [lift(p) for p in pols]
    price = jax.vmap(jax.vmap(env.price))
    step = functools.partial(env.batch_step, depth=2)  # over [P, N]: the reset drawn only where an episode ends

    def split2(key, shape):
        # [P, N] keys from one key (equal across the P sweep points: every point sees the same slots),
        # or from one key per point ([P], `evaluate(point_seeds=...)`: each point its own stream)
        if key.ndim == 0:
            return jnp.broadcast_to(jax.random.split(key, shape[1])[None], shape)
        return jax.vmap(lambda k: jax.random.split(k, shape[1]))(key)

    def split_slot(slot_key):
        if slot_key.ndim == 0:
            return jax.random.split(slot_key)
        pair = jax.vmap(jax.random.split)(slot_key)
        return pair[:, 0], pair[:, 1]

    def fold(key, i):
        return jax.random.fold_in(key, i) if key.ndim == 0 else jax.vmap(lambda k: jax.random.fold_in(k, i))(key)

    def first(tree, n):  # the first n instances of [P, N, ...] leaves
        return jax.tree.map(lambda x: x[:, :n], tree)

    def shared_slot(carry, slot_key, pol_params):
        obs, state = carry
        k_env, k_act = split_slot(slot_key)
        shape = obs.shape[:2]
        env_keys = split2(k_env, shape)  # the same slot and arbitration draws for every policy
        # with `counts`, policy i sees the first counts[i] instances; split keys are prefix-stable (a count's
        # first n keys are split(key, n)), so it sees what an evaluation of that many instances would show it
        views = {shape[1]: (obs, state, env_keys)}
        metrics = []
        for i, act in enumerate(acts):
            n = shape[1] if counts is None else counts[i]
            if n not in views:
                views[n] = first((obs, state, env_keys), n)
            o, s, k = views[n]
            action = act(pol_params[i], split2(fold(k_act, i), (shape[0], n)), s, o)
            metrics.append(slot_metrics(price(k, s, action)))
        # the transition does not depend on the action: step with any one (here: local's shape)
        U = state.scenario.f_local.shape[-1]
        if not transition:  # a one-slot evaluation: the next slot is never priced, so never drawn
            return (obs, state), metrics
        hold = (jnp.zeros(shape + (U,), jnp.int32), jnp.ones(shape + (U,)))
        obs, state, _, _, _ = step(env_keys, state, hold)
        return (obs, state), metrics

    def per_policy_slot(carry, slot_key, pol_params):
        k_env, k_act = split_slot(slot_key)
        shape = carry[0][0].shape[:2]
        env_keys = split2(k_env, shape)  # common random numbers: the same keys for every trajectory
        new, metrics = [], []
        for i, (act, (obs, state)) in enumerate(zip(acts, carry)):
            action = act(pol_params[i], split2(fold(k_act, i), shape), state, obs)
            before = state
            obs, state, _, _, info = step(env_keys, state, action)
            new.append((obs, state))
            metrics.append({**slot_metrics(info["cost"]), **carry_metrics(env.config, before, info["cost"])})
        return tuple(new), metrics

    one_slot = shared_slot if transitions == "shared" else per_policy_slot

    def scan(carry, slot_keys, pol_params):
        return jax.lax.scan(lambda c, k: one_slot(c, k, pol_params), carry, slot_keys)

    return jax.jit(scan, compiler_options=sharding.jit_options(compiler_options))


# the evaluation programs compiled ahead of time and checked against the device (`checked_program`); each entry
# keeps its jitted `run` alive too, so that the id in its key is never reused while it is cached
_CHECKED = ProgramCache("checked evaluation programs", maxsize=16)


def checked_program(run, args, what: str, lower: str):
    """`run` compiled ahead of time for `args` and refused (`compilation.check_fits`) when its memory plan
    exceeds the device; the compiled program is kept per argument layout, so later calls with the same
    shapes neither compile nor check again."""
    from meqc_jax.compilation import check_fits

    sig = (id(run), str(jax.tree.map(lambda x: (x.shape, str(x.dtype), getattr(x, "sharding", None)), args)))

    def build():
        compiled = run.lower(*args).compile()
        _COMPILED[0] += 1  # counted before the check: a refused program was still compiled
        check_fits(compiled, what, lower)
        return run, compiled

    return _CHECKED.get(sig, build)[1]


_COMPILED = [0]  # programs `checked_program` compiled in this process, refused ones included


def checked_compiles() -> int:
    """How many evaluation programs `evaluate(fit_hint=...)` has compiled in this process so far."""
    return _COMPILED[0]


def cached_runners() -> list:
    """The compiled evaluation programs currently cached (e.g. to count their compiles)."""
    return _RUNNERS.values()


def _summarize(per_slot: dict[str, np.ndarray]) -> dict[str, float]:
    cost = per_slot["cost"].astype(np.float64)  # [T, N]
    T, N = cost.shape
    # Slots of one instance share its scenario, so they are not independent: the 95 % interval is
    # taken over the N per-instance means (over the T slots when there is a single instance).
    units = cost.mean(axis=0) if N > 1 else cost[:, 0]
    half = 1.96 * units.std(ddof=1) / math.sqrt(len(units)) if len(units) > 1 else float("nan")
    out = {"mean_cost": float(cost.mean()), "ci95": float(half), "slots": int(T * N)}
    for m in SLOT_METRICS[1:]:
        out["mean_" + m if m in ("latency", "energy") else m] = float(per_slot[m].astype(np.float64).mean())
    for m in sorted(set(per_slot) - set(SLOT_METRICS)):  # the dynamics' own (`Dynamic.metrics`)
        out["mean_" + m] = float(per_slot[m].astype(np.float64).mean())
        out["final_" + m] = float(per_slot[m][-1].astype(np.float64).mean())  # at the last slot: a trend?
    return out


def paired_comparison(per_slot: dict[str, dict[str, np.ndarray]], a: str, b: str) -> dict[str, float]:
    """Policy `a` against `b` on the same slots (common random numbers): `excess`, the mean per-instance
    difference over `b`'s mean cost; `ratio`, the two mean costs' quotient; `ci95`, the half-width of the
    95 % interval of the excess, taken over the per-instance differences (the instances are independent;
    the slots of one instance share its scenario, as in `_summarize`). NaN with a single instance."""
    pa = np.asarray(per_slot[a]["cost"], np.float64).mean(axis=0)  # [N] per-instance means
    pb = np.asarray(per_slot[b]["cost"], np.float64).mean(axis=0)
    d = (pa - pb) / pb.mean()
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    return {"excess": float(d.mean()), "ratio": float(pa.mean() / pb.mean()), "ci95": float(half)}


def evaluate(
    config: SystemConfig,
    policies: Sequence[str | Policy],
    num_envs: int,
    num_slots: int,
    seed: int = 0,
    chunk: int = 50,
    progress: bool = False,
    env_params=None,
    compiler_options: tuple[tuple[str, object], ...] | None = None,
    devices=None,
    transitions: str = "auto",
    point_seeds: Sequence[int] | None = None,
    fit_hint: str | None = None,
    more_instances: dict[str, int] | None = None,
) -> EvalResult:
    """Evaluate `policies` on the same `num_envs` x `num_slots` slots; see the module docstring.

    Returns per-slot metrics and, per policy: mean slot cost with a 95 % confidence interval,
    mean per-user latency (s) and energy (J), the share of users served by a QPU, the share of
    user-slots with a feasible server, and -- when "oracle" is among the policies -- each policy's
    ratio of mean cost to the oracle's (`ratio_to_oracle`) with the share of slots where it is
    within 1e-4 of the optimum.

    Devices: the [P, N] instance axes are split over `devices` (default: all visible devices; see
    `meqc_jax.sharding`); every instance's numbers are the same as on one device.
    `transitions`: "auto" (per-policy trajectories unless the model is memoryless), "shared" (one
    transition for all policies; refused when actions change the future) or "per_policy".
    `point_seeds` (one per sweep point, with `env_params`): point p draws its instances and slots from
    its own seed instead of all points sharing `seed`, and its numbers are those of `evaluate(...,
    seed=point_seeds[p])` at that point alone (a seeds axis folded into the points, `meqc_jax.sweep`).
    `fit_hint`: compile the program ahead of running it and refuse it (`compilation.ProgramTooLarge`,
    one line ending "lower <fit_hint>") when its memory plan exceeds the device.
    `more_instances` ({policy name: factor}, shared transitions only): that policy is evaluated on factor x
    `num_envs` instances in the same program, the first `num_envs` being the shared ones (its numbers there are
    what a plain evaluation would give it) -- narrower intervals for a noisy, cheap policy without a second
    program. Its `per_slot` arrays are that much wider and its summary covers all of its instances, except
    `ratio_to_oracle` and `share_at_optimum`, taken on the shared ones (paired with the oracle's slots).
    """
    for name, v in (("num_envs", num_envs), ("num_slots", num_slots), ("chunk", chunk)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"evaluate: {name}={v!r} is invalid: allowed an integer >= 1")
    pols = [make_policy(p, config) if isinstance(p, str) else p for p in policies]
    names = [p.name for p in pols]
    if len(set(names)) != len(names):
        raise ValueError(f"evaluate: policy names must be unique, got {names}")
    if transitions not in TRANSITIONS:
        raise ValueError(f"evaluate: transitions={transitions!r} is invalid: allowed one of {', '.join(TRANSITIONS)}")
    env = MEQCEnv(config)
    if transitions == "auto":
        transitions = "shared" if env.memoryless else "per_policy"
    elif transitions == "shared" and not env.memoryless:
        raise ValueError(f"evaluate: transitions='shared' is invalid for dynamics {config.dynamics!r}: actions change "
                         "later slots there; allowed: auto, per_policy")
    factors = _instance_factors(more_instances, names, transitions)
    total_envs = num_envs * max(factors)
    swept = env_params is not None
    if not swept:
        env_params = MEQCEnv.stack_params([env.default_params()])
    P = int(jax.tree.leaves(env_params)[0].shape[0])
    for pol in pols:
        if pol.params is not None and int(jax.tree.leaves(pol.params)[0].shape[0]) != P:
            raise ValueError(f"evaluate: policy {pol.name!r} has parameters for "
                             f"{jax.tree.leaves(pol.params)[0].shape[0]} points, env_params for {P}")
    chunk = min(chunk, num_slots)
    n_chunks = math.ceil(num_slots / chunk)
    if point_seeds is None:
        k_reset, k_run = jax.random.split(jax.random.key(seed))
        # every sweep point gets the same instances (common random numbers across points too), so a
        # curve over the points shows the effect of the swept parameter, not of different draws
        reset_keys = jnp.broadcast_to(jax.random.split(k_reset, total_envs)[None], (P, total_envs))
        chunk_keys = jax.random.split(k_run, n_chunks * chunk).reshape(n_chunks, chunk)
    else:
        point_seeds = [int(s) for s in point_seeds]
        if len(point_seeds) != P or not swept:
            raise ValueError(f"evaluate: point_seeds has {len(point_seeds)} entries; allowed: one per sweep point "
                             f"of env_params ({P if swept else 'none given'})")
        # per point exactly the keys `evaluate(seed=s)` derives, stacked: [P, N] resets, [chunks, chunk, P] slots
        pairs = jax.vmap(lambda s: jax.random.split(jax.random.key(s)))(jnp.asarray(point_seeds))
        reset_keys = jax.vmap(lambda k: jax.random.split(k, total_envs))(pairs[:, 0])
        slot_keys = jax.vmap(lambda k: jax.random.split(k, n_chunks * chunk))(pairs[:, 1])  # [P, chunks x chunk]
        chunk_keys = jnp.moveaxis(slot_keys.reshape(P, n_chunks, chunk), 0, -1)

    mesh = sharding.batch_mesh(("points", "envs"), (P, total_envs), devices)
    reset_keys, env_params = sharding.place((reset_keys, env_params), mesh, (2, 1))
    pol_params = sharding.place(tuple(p.params for p in pols), mesh)  # per-point parameters [P, ...]
    # the slot keys replicated on the mesh (a multi-host program takes only arrays that span its devices)
    chunk_keys = sharding.place(chunk_keys, mesh, 0)

    t0 = time.perf_counter()
    run = chunk_runner(env, pols, chunk, transitions, compiler_options,
                       [num_envs * f for f in factors] if total_envs > num_envs else None, transition=num_slots > 1)
    reset = reset_batched(config)
    if fit_hint is not None:  # checked from shapes, before the instances' states exist or anything is dispatched
        what = _what(config, P, total_envs, len(pols))
        carry = _abstract_carry(reset, reset_keys, env_params, mesh, transitions == "per_policy", len(pols))
        _refuse_carry(carry, what, fit_hint, total_envs)
        run = checked_program(run, (carry, chunk_keys[0], pol_params), what, fit_hint)
    carry = sharding.place(reset(reset_keys, env_params), mesh, 2)  # (obs, state)
    if transitions == "per_policy":
        carry = tuple(carry for _ in pols)  # every policy starts from the same states
    pieces = []
    bar = ProgressBar(progress, n_chunks)
    for c in range(n_chunks):
        carry, metrics = run(carry, chunk_keys[c], pol_params)
        # the compiler may hand the carry back laid out otherwise; put it back on the mesh so that
        # every chunk meets the input shardings of the first one (else: one more compile)
        carry = sharding.place(carry, mesh, 2)
        pieces.append(jax.tree.map(sharding.to_host, metrics))
        bar.advance(f"slots {min((c + 1) * chunk, num_slots)}/{num_slots}")
    bar.close()
    per_slot = {pol.name: {m: np.concatenate([p[i][m] for p in pieces])[:num_slots] for m in pieces[0][i]}
                for i, pol in enumerate(pols)}
    wall = {"all": time.perf_counter() - t0}

    flat = {n: {m: v.reshape(v.shape[0], -1) for m, v in per_slot[n].items()} for n in names}  # [T, P N]
    summary = _summaries(flat, names, num_envs, P)
    points = None
    if swept:
        points = [_summaries({n: {m: v[:, p] for m, v in per_slot[n].items()} for n in names}, names, num_envs)
                  for p in range(P)]
    else:
        per_slot = {n: {m: v[:, 0] for m, v in per_slot[n].items()} for n in names}
    return EvalResult(per_slot, summary, config, num_envs, num_slots, seed, wall, points, sharding.describe(mesh),
                      transitions)


def _what(config: SystemConfig, points: int, instances: int, policies: int) -> str:
    return (f"evaluating {points} point(s) x {instances} instances x {policies} policies "
            f"(U={config.num_users}, E={config.num_servers})")


def _abstract_carry(reset, reset_keys, env_params, mesh, per_policy: bool, policies: int):
    """The evaluation's first carry, (obs, state) of every instance (per policy with per-policy trajectories), as
    shapes and shardings only (`jax.eval_shape`: no instance is reset)."""
    carry = sharding.abstract(reset.eval_shape(reset_keys, env_params), mesh, 2)
    return tuple(carry for _ in range(policies)) if per_policy else carry


def _refuse_carry(carry, what: str, lower: str, instances: int) -> None:
    """Refuse when the instances' states in and out alone exceed the device; the line says how many instances
    per point would leave room for them (they grow in proportion)."""
    from meqc_jax.compilation import device_memory_bytes

    need, have = 2 * bytes_per_device(carry), device_memory_bytes()
    if have is not None and need > have:
        fits = max(0, instances * have // max(need, 1))
        lower = f"{lower} (at most about {fits} instances per point pass this bound here)"
    refuse_if_over(need, what, lower, "the instances' states in and out, from the shapes alone", have, at_least=True)


def check_instances_fit(config: SystemConfig, env_params, num_envs: int, num_policies: int, lower: str,
                        devices=None) -> None:
    """Refuse (`compilation.ProgramTooLarge`, one line ending "lower <lower>") an `evaluate(config, <num_policies
    policies>, num_envs, env_params=env_params, devices=devices)` whose instances' states alone would not fit the
    device, from shapes only (nothing is reset or compiled): e.g. before training the policies it would evaluate."""
    import warnings

    env = MEQCEnv(config)
    P = int(jax.tree.leaves(env_params)[0].shape[0])
    keys = jax.ShapeDtypeStruct((P, num_envs), jax.random.key(0).dtype)
    with warnings.catch_warnings():  # evaluate itself warns about an uneven placement
        warnings.simplefilter("ignore")
        mesh = sharding.batch_mesh(("points", "envs"), (P, num_envs), devices)
    carry = _abstract_carry(reset_batched(config), keys, env_params, mesh, not env.memoryless, num_policies)
    _refuse_carry(carry, _what(config, P, num_envs, num_policies), lower, num_envs)


def _summaries(per_slot: dict[str, dict[str, np.ndarray]], names, shared_envs: int | None = None, points: int = 1
               ) -> dict[str, dict[str, float]]:
    """Per policy: `_summarize`, plus its ratio to the oracle when the oracle was evaluated. Costs are
    [T, N] (or [T, P N] over `points`, points major); a policy on more instances (`more_instances`) is
    compared with the oracle on the first `shared_envs` instances of each point, the slots they share (paired)."""
    summary = {name: _summarize(per_slot[name]) for name in names}

    def shared(cost):  # [T, P x M] -> its shared [T, P x shared_envs]
        if shared_envs is None or cost.shape[1] == points * shared_envs:
            return cost
        return cost.reshape(cost.shape[0], points, -1)[:, :, :shared_envs].reshape(cost.shape[0], -1)

    if "oracle" in per_slot:
        opt = shared(per_slot["oracle"]["cost"].astype(np.float64))
        for name in names:
            cost = shared(per_slot[name]["cost"].astype(np.float64))
            summary[name]["ratio_to_oracle"] = float(cost.mean() / opt.mean())
            summary[name]["share_at_optimum"] = float(np.mean(cost <= opt * (1 + 1e-4)))
    return summary


def _instance_factors(more_instances, names: list[str], transitions: str) -> list[int]:
    """Each policy's instance factor from `evaluate`'s `more_instances` (validated: one-line ValueError). Only
    the estimates change: every policy is priced by the same slot cost (Eq. 12) on the same slots as the oracle
    (model-spec section 11), a widened one on more of them."""
    if more_instances is not None and not isinstance(more_instances, dict):
        raise ValueError(f"evaluate: more_instances={more_instances!r} is invalid: allowed a dict of policy name -> "
                         "integer factor in [1, 1000]")
    more = dict(more_instances or {})
    for name, f in more.items():
        if name not in names:
            raise ValueError(f"evaluate: more_instances names {name!r}, not an evaluated policy; allowed: {', '.join(names)}")
        if not isinstance(f, int) or isinstance(f, bool) or not 1 <= f <= 1000:
            raise ValueError(f"evaluate: more_instances[{name!r}]={f!r} is invalid: allowed an integer in [1, 1000]")
    factors = [more.get(n, 1) for n in names]
    if max(factors) > 1 and transitions != "shared":
        raise ValueError("evaluate: more_instances is invalid with per-policy trajectories (actions change later "
                         "slots): allowed only where one transition serves every policy (a memoryless model)")
    return factors


@functools.lru_cache(maxsize=16)
def reset_batched(config: SystemConfig):
    """`MEQCEnv(config).reset` over [P, N] (keys [P, N], EnvParams [P]), jitted once per configuration;
    it runs once per evaluation, so compile time is what matters (`sharding.FAST_COMPILE`)."""
    return jax.jit(jax.vmap(jax.vmap(MEQCEnv(config).reset, in_axes=(0, None))),
                   compiler_options=dict(sharding.FAST_COMPILE))
