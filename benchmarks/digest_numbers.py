"""Are the numbers bit-identical? A digest of every registered scenario's per-slot numbers, per policy.

    python benchmarks/digest_numbers.py --out before.json            # on the old commit
    python benchmarks/digest_numbers.py --against before.json        # on the new one: SAME / DIFFERENT

For every registered scenario (`scenarios.names()`) at a small size (U = 6, E = 3 unless told) every
policy that applies to it (`baselines.policy_names`) is evaluated on the same instances and slots
(`evaluate`, seed 0): the SHA-256 of each per-slot metric array ([slots, instances]: cost, latency,
energy, QPU share, drops, ...) is the digest of that (scenario, policy). For every scenario whose state
carries (queues, battery, ...) the clairvoyant bound's inputs and per-slot plan costs on a few states
(U = 3, E = 2, 4-slot horizons) are digested too, as policy "clairvoyant". A refactoring that claims
"no number moved" is checked by comparing the digests of its two commits side by side; a fix that
moves numbers shows which scenarios and policies it moved. Saved atomically as JSON with the mean
costs, so a difference can also be read as a size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import numpy as np

from meqc_jax import scenarios
from meqc_jax.baselines import policy_names
from meqc_jax.evaluate import evaluate
from meqc_jax.io import atomic_write_json


def digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the metrics' names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(np.asarray(arrays[name]))
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def digests(users: int, servers: int, envs: int, slots: int, seed: int, only=None) -> dict:
    out = {}
    for name in scenarios.names():
        if only and name not in only:
            continue
        config = scenarios.scenario_config(name, num_users=users, num_servers=servers)
        pols = policy_names(config)
        t0 = time.perf_counter()
        res = evaluate(config, list(pols), num_envs=envs, num_slots=slots, seed=seed, progress=False)
        out[name] = {p: {"digest": digest(res.per_slot[p]), "mean_cost": float(res.summary[p]["mean_cost"])}
                     for p in pols}
        bound = clairvoyant_digest(name)
        if bound is not None:
            out[name]["clairvoyant"] = bound
        print(f"{name}: {len(pols)} policies in {time.perf_counter() - t0:.1f} s", flush=True)
    return out


def clairvoyant_digest(name: str, seeds: int = 2, horizon: int = 4) -> dict | None:
    """The clairvoyant MIP's inputs (`horizon_data`) and its per-slot plan costs from `seeds` states after 3
    slots of random offloading, at U = 3, E = 2; None where the scenario carries no state or prices jointly."""
    import jax
    import jax.numpy as jnp

    from meqc_jax import clairvoyant, dynamics

    config = scenarios.scenario_config(name, num_users=3, num_servers=2, slots_per_episode=40)
    if not dynamics.carries_state(config) or dynamics.contended(config):
        return None
    env = scenarios.make(name, num_users=3, num_servers=2, slots_per_episode=40)
    step = jax.jit(env.step)
    h, total = hashlib.sha256(), 0.0
    for seed in range(seeds):
        _, state = env.reset(jax.random.key(seed))
        for t in range(3):
            offload = (jax.random.randint(jax.random.key(50 + t), (3,), 0, 2), jnp.zeros(3))
            _, state, *_ = step(jax.random.key(seed * 10 + t), state, offload)
        data = clairvoyant.horizon_data(env, state, jax.random.split(jax.random.key(70 + seed), horizon))
        for field in sorted(vars(data)):
            h.update(field.encode())
            h.update(np.ascontiguousarray(getattr(data, field)).tobytes())
        bound = clairvoyant.solve(env.config, data)
        h.update(np.asarray(bound.per_slot, np.float64).tobytes())
        total += float(bound.value)
    return {"digest": h.hexdigest(), "mean_cost": total / (seeds * horizon)}


def compare(now: dict, before: dict) -> list[str]:
    """One line per (scenario, policy) in either: SAME, DIFFERENT (with the mean costs) or only on one side."""
    lines = []
    for scen in sorted(set(now) | set(before)):
        a, b = before.get(scen, {}), now.get(scen, {})
        for pol in sorted(set(a) | set(b)):
            if pol not in a or pol not in b:
                lines.append(f"ONLY-{'NOW' if pol in b else 'BEFORE'}  {scen} {pol}")
            elif a[pol]["digest"] == b[pol]["digest"]:
                lines.append(f"SAME       {scen} {pol}")
            else:
                lines.append(f"DIFFERENT  {scen} {pol}: mean cost {a[pol]['mean_cost']:.6g} -> "
                             f"{b[pol]['mean_cost']:.6g}")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=6)
    ap.add_argument("--servers", type=int, default=3)
    ap.add_argument("--envs", type=int, default=8)
    ap.add_argument("--slots", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="comma-separated scenario names (default: all registered)")
    ap.add_argument("--out", default="benchmarks/results/digests.json")
    ap.add_argument("--against", default=None, help="a digest file to compare with (exit 1 if any differ)")
    args = ap.parse_args(argv)
    for field in ("users", "servers", "envs", "slots"):
        if getattr(args, field) < 1:
            ap.error(f"--{field}={getattr(args, field)} is invalid: allowed an integer >= 1")
    only = [s for s in args.only.split(",") if s]
    unknown = [s for s in only if s not in scenarios.names()]
    if unknown:
        ap.error(f"--only: {unknown} are invalid: allowed {', '.join(scenarios.names())}")
    now = digests(args.users, args.servers, args.envs, args.slots, args.seed, only)
    result = {"users": args.users, "servers": args.servers, "envs": args.envs, "slots": args.slots,
              "seed": args.seed, "scenarios": now}
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    if args.against:
        with open(args.against) as f:
            before = json.load(f)
        sizes = ("users", "servers", "envs", "slots", "seed")
        if any(before.get(k) != result[k] for k in sizes):
            ap.error(f"--against {args.against} was made at other sizes: "
                     f"{ {k: before.get(k) for k in sizes} } vs { {k: result[k] for k in sizes} }")
        lines = compare(now, before["scenarios"])
        print("\n".join(lines))
        differ = sum(not line.startswith("SAME") for line in lines)
        print(f"{len(lines) - differ} of {len(lines)} (scenario, policy) digests identical")
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
