"""The exact slot optimum under contention (dynamics-spec section 8): how fast it is found, side by side.

    python benchmarks/bench_joint.py [--slots 64] [--repeats 3] [--out benchmarks/results/joint.json]

Two exact solvers of `meqc_jax.joint` on the same MEQC-Contended-v0 slots, each jitted and vmapped
over the slots in one call (compile excluded, median of `--repeats` timed calls):

* `enumerate_optimum` prices every one of the (1 + 2E)^U joint modes: joint modes per second;
* `dp_optimum` (the subset DP over servers, the same optimum): slots per second, and the joint modes
  per second it stands for ((1 + 2E)^U x slots / s; it prices E 2^U (U + 1) modes per slot itself).

Sizes: U = 4, 5, 6 with E = 3 for both; U = E = 10 for the DP only ((1 + 2E)^U = 1.7e13 there).
Printed and written as JSON (atomically). The GPU check (`gpu_check.sh`) runs it with more slots.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from meqc_jax import joint, scenarios  # noqa: E402
from meqc_jax.env import MEQCEnv  # noqa: E402
from meqc_jax.io import atomic_write_json  # noqa: E402


def timed(fn, arg, repeats: int) -> tuple[float, float, np.ndarray]:
    """(compile + first call s, median call s, the result)."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(arg))
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(arg))
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times), np.asarray(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slots", type=int, default=64, help="slots solved per call (default 64)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per solver and size (default 3)")
    ap.add_argument("--batch", type=int, default=8, help="slots per vmapped batch inside the call (lax.map)")
    ap.add_argument("--smoke", action="store_true", help="one tiny size (U = 3, E = 2): checks the script runs")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "joint.json"))
    args = ap.parse_args()
    if not 1 <= args.slots <= 1 << 20 or not 1 <= args.repeats <= 100 or not 1 <= args.batch <= args.slots:
        sys.exit("bench_joint: --slots in [1, 2^20], --repeats in [1, 100], --batch in [1, --slots]")
    dev = jax.devices()[0]
    res = {"backend": jax.default_backend(), "device": dev.device_kind, "cpu_count": os.cpu_count(),
           "jax": jax.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "slots": args.slots,
           "repeats": args.repeats, "batch": args.batch, "smoke": args.smoke, "sizes": []}
    sizes = ((3, 2, True),) if args.smoke else ((4, 3, True), (5, 3, True), (6, 3, True), (10, 10, False))
    for U, E, enumerate_too in sizes:
        cfg = scenarios.scenario_config("MEQC-Contended-v0", num_users=U, num_servers=E)
        env = MEQCEnv(cfg)
        _, states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), args.slots))
        row = {"num_users": U, "num_servers": E, "joint_modes_per_slot": (1 + 2 * E) ** U}

        def solver(fn):
            return jax.jit(lambda st: jax.lax.map(lambda s: fn(cfg, s).value, st, batch_size=args.batch))

        first, dt, dp_values = timed(solver(joint.dp_optimum), states, args.repeats)
        row["dp"] = {"compile_and_first_s": first, "median_s": dt, "slots_per_s": args.slots / dt,
                     "equivalent_joint_modes_per_s": row["joint_modes_per_slot"] * args.slots / dt,
                     "modes_priced_per_slot": E * 2**U * (U + 1)}
        if enumerate_too:
            first, dt, enum_values = timed(solver(joint.enumerate_optimum), states, args.repeats)
            row["enumeration"] = {"compile_and_first_s": first, "median_s": dt, "slots_per_s": args.slots / dt,
                                  "joint_modes_per_s": row["joint_modes_per_slot"] * args.slots / dt}
            row["dp_over_enumeration_speed"] = row["dp"]["slots_per_s"] / row["enumeration"]["slots_per_s"]
            row["max_relative_difference"] = float(np.max(np.abs(dp_values - enum_values) / np.abs(enum_values)))
        res["sizes"].append(row)
        line = f"U={U:2d} E={E:2d}: dp {row['dp']['slots_per_s']:9.1f} slots/s"
        if enumerate_too:
            line += (f"; enumeration {row['enumeration']['joint_modes_per_s']:.3g} joint modes/s "
                     f"({row['enumeration']['slots_per_s']:.1f} slots/s), dp {row['dp_over_enumeration_speed']:.1f}x, "
                     f"values equal to {row['max_relative_difference']:.1e}")
        print(line, flush=True)
        atomic_write_json(args.out, res)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
