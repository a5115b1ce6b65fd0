"""Paired policy evaluation: every policy sees the same slots (common random numbers).

    result = evaluate(config, ["local", "greedy", "oracle"], num_envs=100, num_slots=100, seed=0)
    result.summary["greedy"]["mean_cost"], result.summary["greedy"]["ratio_to_oracle"]

`num_envs` independent instances are stepped `num_slots` slots each (num_envs x num_slots slots in
all). The environment's randomness (scenarios, tasks, channels, arrival orders) comes from one key
stream shared by all policies, and tasks never depend on actions, so every policy is priced on the
identical sequence of slots; a policy's own randomness comes from a separate stream.
Each policy runs as one jitted `lax.scan` over a chunk of slots, vmapped over instances; the
oracle's MIPs run on the host inside the same scan through `jax.pure_callback`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from meqc_jax.baselines import Policy, make_policy
from meqc_jax.config import SystemConfig
from meqc_jax.env import MEQCEnv

METRICS = ("cost", "latency", "energy", "quantum_share", "feasible_share")


@dataclasses.dataclass
class EvalResult:
    """Per-slot metrics ([num_slots, num_envs] per policy and metric) and a summary per policy."""

    per_slot: dict[str, dict[str, np.ndarray]]
    summary: dict[str, dict[str, float]]
    config: SystemConfig
    num_envs: int
    num_slots: int
    seed: int
    wall_s: dict[str, float]


def _make_chunk_runner(env: MEQCEnv, policy: Policy, chunk: int):
    """jit(scan over `chunk` slots of vmap(policy.act) + vmap(env.step)); returns state and metrics."""
    step = jax.vmap(env.step)
    act = jax.vmap(policy.act)

    def one_slot(carry, slot_key):
        obs, state = carry
        k_env, k_act = jax.random.split(slot_key)  # same k_env for every policy: paired slots
        n = obs.shape[0]
        action = act(jax.random.split(k_act, n), state, obs)
        obs, state, _, _, info = step(jax.random.split(k_env, n), state, action)
        c = info["cost"]
        metrics = {
            "cost": c.total,
            "latency": jnp.mean(c.latency, axis=-1),
            "energy": jnp.mean(c.energy, axis=-1),
            "quantum_share": jnp.mean(c.quantum.astype(float), axis=-1),
            "feasible_share": jnp.mean(jnp.any(c.feasible, axis=-1).astype(float), axis=-1),
        }
        return (obs, state), metrics

    @jax.jit
    def run(obs, state, slot_keys):
        return jax.lax.scan(one_slot, (obs, state), slot_keys)

    return run


def _summarize(per_slot: dict[str, np.ndarray]) -> dict[str, float]:
    cost = per_slot["cost"].astype(np.float64)  # [T, N]
    T, N = cost.shape
    # Slots of one instance share its scenario, so they are not independent: the 95 % interval is
    # taken over the N per-instance means (over the T slots when there is a single instance).
    units = cost.mean(axis=0) if N > 1 else cost[:, 0]
    half = 1.96 * units.std(ddof=1) / math.sqrt(len(units)) if len(units) > 1 else float("nan")
    out = {"mean_cost": float(cost.mean()), "ci95": float(half), "slots": int(T * N)}
    for m in ("latency", "energy", "quantum_share", "feasible_share"):
        out["mean_" + m if m in ("latency", "energy") else m] = float(per_slot[m].astype(np.float64).mean())
    return out


def evaluate(
    config: SystemConfig,
    policies: Sequence[str | Policy],
    num_envs: int,
    num_slots: int,
    seed: int = 0,
    chunk: int = 50,
    progress: bool = False,
) -> EvalResult:
    """Evaluate `policies` on the same `num_envs` x `num_slots` slots; see the module docstring.

    Returns per-slot metrics and, per policy: mean slot cost with a 95 % confidence interval,
    mean per-user latency (s) and energy (J), the share of users served by a QPU, the share of
    user-slots with a feasible server, and -- when "oracle" is among the policies -- each policy's
    ratio of mean cost to the oracle's (`ratio_to_oracle`) with the share of slots where it is
    within 1e-4 of the optimum.
    """
    for name, v in (("num_envs", num_envs), ("num_slots", num_slots), ("chunk", chunk)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"evaluate: {name}={v!r} is invalid: allowed an integer >= 1")
    pols = [make_policy(p, config) if isinstance(p, str) else p for p in policies]
    names = [p.name for p in pols]
    if len(set(names)) != len(names):
        raise ValueError(f"evaluate: policy names must be unique, got {names}")
    env = MEQCEnv(config)
    chunk = min(chunk, num_slots)
    n_chunks = math.ceil(num_slots / chunk)
    k_reset, k_run = jax.random.split(jax.random.key(seed))
    reset = jax.jit(jax.vmap(env.reset))
    chunk_keys = jax.random.split(k_run, n_chunks * chunk).reshape(n_chunks, chunk)

    per_slot, wall = {}, {}
    bar = _progress(progress, len(pols) * n_chunks)
    for pol in pols:
        t0 = time.perf_counter()
        run = _make_chunk_runner(env, pol, chunk)
        obs, state = reset(jax.random.split(k_reset, num_envs))
        pieces = []
        for c in range(n_chunks):
            (obs, state), metrics = run(obs, state, chunk_keys[c])
            pieces.append(jax.device_get(metrics))
            bar.advance(pol.name)
        per_slot[pol.name] = {m: np.concatenate([p[m] for p in pieces])[:num_slots] for m in METRICS}
        wall[pol.name] = time.perf_counter() - t0
    bar.close()

    summary = {name: _summarize(per_slot[name]) for name in names}
    if "oracle" in per_slot:
        opt = per_slot["oracle"]["cost"].astype(np.float64)
        for name in names:
            cost = per_slot[name]["cost"].astype(np.float64)
            summary[name]["ratio_to_oracle"] = float(cost.mean() / opt.mean())
            summary[name]["share_at_optimum"] = float(np.mean(cost <= opt * (1 + 1e-4)))
    return EvalResult(per_slot, summary, config, num_envs, num_slots, seed, wall)


class _progress:
    """A rich progress bar over evaluation chunks, or nothing."""

    def __init__(self, enabled: bool, total: int):
        self._p = None
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._p = Progress(TextColumn("{task.description:<20}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                               TimeElapsedColumn(), TimeRemainingColumn(), transient=True)
            self._task = self._p.add_task("", total=total)
            self._p.start()

    def advance(self, label: str):
        if self._p is not None:
            self._p.update(self._task, advance=1, description=label)

    def close(self):
        if self._p is not None:
            self._p.stop()
