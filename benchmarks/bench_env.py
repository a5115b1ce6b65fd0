"""Env throughput: user-slots per second of jit(vmap(env.step)) vs a NumPy per-user loop vs the RNG floor.

    python benchmarks/bench_env.py [--quick] [--out benchmarks/results/env.json]

For each U = E in {10, 30} and N instances in {1, 64, 1024, 8192, 65536}, measured side by side
in one run (medians over repeats):
  * jax   -- one `jax.jit(jax.vmap(env.step))` call on N instances;
  * floor -- one jitted, vmapped call that only draws the step's random numbers (the same
             samplers: scenario for the auto-reset, tasks, arrival order) and returns them;
             (step and floor calls alternate, and the ratio is the median of paired ratios);
  * numpy -- `benchmarks/numpy_env.py`, one instance at a time with a loop over users; it is
             timed on min(N, 64) instances (its cost per user-slot does not depend on N).
Prints the ratios and writes them as JSON (atomically).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from numpy_env import NumpyMEQC  # noqa: E402

from meqc_jax import MEQCEnv, SystemConfig, sample_scenario, sample_tasks  # noqa: E402
from meqc_jax.io import atomic_write_json  # noqa: E402


def paired_times(fn_a, fn_b, min_reps=7, min_total=2.0, max_reps=200):
    """Alternate fn_a and fn_b so that both see the same machine noise; returns
    (median a, median b, median of per-repeat a/b ratios, repeats)."""
    ta, tb = [], []
    t_start = time.perf_counter()
    while len(ta) < min_reps or (time.perf_counter() - t_start < min_total and len(ta) < max_reps):
        for fn, out in ((fn_a, ta), (fn_b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb), statistics.median(a / b for a, b in zip(ta, tb)), len(ta)


def median_time(fn, min_reps=5, min_total=1.0, max_reps=200):
    times = []
    t_start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - t_start < min_total and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def bench_jax(cfg: SystemConfig, n: int):
    env = MEQCEnv(cfg)
    U, E = cfg.num_users, cfg.num_servers
    keys = jax.random.split(jax.random.key(0), n)
    _, states = jax.jit(jax.vmap(env.reset))(keys)
    ka, kp = jax.random.split(jax.random.key(1))
    action = (jax.random.randint(ka, (n, U), 0, E), jax.random.uniform(kp, (n, U)))
    step = jax.jit(jax.vmap(env.step))
    step_keys = jax.random.split(jax.random.key(2), n)

    def draws(key):  # exactly the random numbers one env.step draws
        k_arb, k_tasks, k_scen = jax.random.split(key, 3)
        scenario = sample_scenario(k_scen, cfg)
        return scenario, sample_tasks(k_tasks, cfg, scenario), jax.random.uniform(k_arb, (U,))

    floor = jax.jit(jax.vmap(draws))
    t0 = time.perf_counter()
    jax.block_until_ready(step(step_keys, states, action))
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(floor(step_keys))
    t_step, t_floor, ratio, reps = paired_times(
        lambda: jax.block_until_ready(step(step_keys, states, action)), lambda: jax.block_until_ready(floor(step_keys))
    )
    return {"step_s": t_step, "floor_s": t_floor, "ratio": ratio, "reps": reps, "compile_s": compile_s}


def bench_numpy(cfg: SystemConfig, n: int):
    sim = NumpyMEQC(cfg, seed=0)
    U, E = cfg.num_users, cfg.num_servers
    rng = np.random.default_rng(1)
    states = [sim.reset() for _ in range(n)]
    actions = [(rng.integers(0, E, U), rng.uniform(size=U)) for _ in range(n)]

    def run():
        for i in range(n):
            states[i], _ = sim.step(states[i], *actions[i])

    t, reps = median_time(run, min_reps=3, min_total=1.0)
    return {"step_s": t, "reps": reps}


def check_agreement(cfg: SystemConfig) -> float:
    """Max relative difference between the NumPy loop's slot cost and meqc_jax's (cheapest rule)."""
    from meqc_jax import slot_cost

    cfg = cfg.replace(arbitration="cheapest")
    sim = NumpyMEQC(cfg, seed=3)
    rng = np.random.default_rng(4)
    worst = 0.0
    for _ in range(20):
        st = sim.reset()
        server, phi = rng.integers(0, cfg.num_servers, cfg.num_users), rng.uniform(size=cfg.num_users)
        ref, _ = sim.slot_cost(st["scenario"], st["tasks"], server, phi)
        sc = {k: jnp.asarray(v) for k, v in st["scenario"].items()}
        tk = {k: jnp.asarray(v) for k, v in st["tasks"].items()}
        from meqc_jax import Scenario, Tasks

        b = slot_cost(cfg, Scenario(**sc), Tasks(**tk), jnp.asarray(server), jnp.asarray(phi), jax.random.key(0))
        worst = max(worst, abs(float(b.total) - ref) / abs(ref))
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N in {1, 64, 1024} and U = E = 10 only")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "env.json"))
    args = ap.parse_args()
    sizes = [10] if args.quick else [10, 30]
    ns = [1, 64, 1024] if args.quick else [1, 64, 1024, 8192, 65536]
    results = {
        "benchmark": "env_step",
        "unit": "user-slots per second (median over repeats)",
        "device": str(jax.devices()[0]),
        "backend": jax.default_backend(),
        "jax_version": jax.__version__,
        "numpy_version": np.__version__,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rows": [],
    }
    hdr = f"{'U=E':>4} {'N':>6} {'jax us/s':>11} {'floor us/s':>11} {'numpy us/s':>11} {'step/floor':>10} {'jax/numpy':>9}"
    print(hdr)
    for size in sizes:
        cfg = SystemConfig(num_users=size, num_servers=size)
        results.setdefault("numpy_agreement_max_rel_diff", {})[str(size)] = check_agreement(cfg)
        np_res = None
        for n in ns:
            j = bench_jax(cfg, n)
            n_np = min(n, 64)
            if np_res is None or n_np != np_res["n"]:
                np_res = dict(bench_numpy(cfg, n_np), n=n_np)
            user_slots = n * size
            row = {
                "users": size, "servers": size, "num_envs": n,
                "jax_step_s": j["step_s"], "floor_s": j["floor_s"], "jax_compile_s": j["compile_s"],
                "jax_user_slots_per_s": user_slots / j["step_s"],
                "floor_user_slots_per_s": user_slots / j["floor_s"],
                "numpy_instances_timed": n_np,
                "numpy_user_slots_per_s": n_np * size / np_res["step_s"],
                "step_over_floor": j["ratio"],  # median of paired per-repeat ratios
            }
            row["jax_over_numpy"] = row["jax_user_slots_per_s"] / row["numpy_user_slots_per_s"]
            results["rows"].append(row)
            print(f"{size:>4} {n:>6} {row['jax_user_slots_per_s']:>11.3g} {row['floor_user_slots_per_s']:>11.3g} "
                  f"{row['numpy_user_slots_per_s']:>11.3g} {row['step_over_floor']:>10.2f} {row['jax_over_numpy']:>9.1f}",
                  flush=True)
            atomic_write_json(args.out, results)
    print(f"NumPy loop vs slot_cost max relative difference: {results['numpy_agreement_max_rel_diff']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
