"""The oracle's host side on the quick run's held-out slots: the colliding slots' MIPs one at a time, their LP
relaxations one at a time (`solve_mip(relax_first=True)`), and in block-diagonal LPs of several sizes
(`oracle.solve_lp_block`, what `solve_batch(relax_first=True)` does, `oracle.LP_BLOCK` slots each).

    python benchmarks/bench_oracle.py [--out benchmarks/results/oracle_blocks.json]

At U = E = 10 (4096 slots) and 30 (1366: the same user-slots), the quick run's scenario; medians of 3 runs,
and whether every way gives the same slot values as the MIPs. Printed and written as JSON (atomically).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from meqc_jax import oracle  # noqa: E402
from meqc_jax.cost import option_table  # noqa: E402
from meqc_jax.env import MEQCEnv  # noqa: E402
from meqc_jax.experiments import ReproduceConfig, common  # noqa: E402
from meqc_jax.io import atomic_write_json  # noqa: E402


def tables(size: int, num: int):
    rc = ReproduceConfig.quick()
    system = common.system(rc, size)
    env = MEQCEnv(system)
    _, st = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), num))
    t = jax.jit(jax.vmap(lambda s: option_table(system, s.scenario, s.tasks)))(st)
    return [np.asarray(x, np.float64) for x in (t.local, t.classical, t.quantum)] + [np.asarray(t.feasible)]


def median_time(fn, reps=3):
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                  "oracle_blocks.json"))
    args = ap.parse_args()
    res = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu_count": os.cpu_count(), "jax_version": jax.__version__,
           "rows": []}
    for size, num in ((10, 4096), (30, 1366)):
        args_ = tables(size, num)
        local, classical, quantum, feasible = args_
        B, U = local.shape
        picks = np.argmin(np.concatenate([local[..., None], classical, np.where(feasible, quantum, np.inf)], -1), -1)
        mode0 = np.where(picks == 0, oracle.LOCAL, np.where(picks <= size, oracle.CLASSICAL, oracle.QUANTUM))
        server0 = np.where(picks == 0, 0, (picks - 1) % size)
        colliding = np.flatnonzero(~oracle.valid_batch(mode0, server0, feasible))
        t_mip, (v_mip, _, _) = median_time(lambda: oracle.solve_batch(*args_))

        def one_lp_each():
            m, s = mode0.copy(), server0.copy()
            for i in colliding:
                m[i], s[i] = oracle.solve_mip(local[i], classical[i], quantum[i], feasible[i], relax_first=True)
            return np.array([oracle.assignment_value(local[i], classical[i], quantum[i], m[i], s[i]) for i in range(B)])

        t_lp, v_lp = median_time(one_lp_each)
        row = {"users": size, "servers": size, "slots": B, "colliding": int(len(colliding)), "mip_s": t_mip,
               "lp_per_slot_s": t_lp, "lp_per_slot_same": bool(np.allclose(v_lp, v_mip, rtol=1e-9, atol=1e-9)),
               "blocks": {}}
        keep = oracle.LP_BLOCK
        try:
            for blk in (16, 32, 64, 128, 1024):
                oracle.LP_BLOCK = blk
                t_b, (v_b, _, _) = median_time(lambda: oracle.solve_batch(*args_, relax_first=True))
                row["blocks"][str(blk)] = {"s": t_b, "same_values": bool(np.array_equal(v_b, v_mip))}
        finally:
            oracle.LP_BLOCK = keep
        res["rows"].append(row)
        print(f"U=E={size}: {B} slots, {len(colliding)} colliding; MIPs {t_mip:.2f} s, one LP each {t_lp:.2f} s, "
              + ", ".join(f"blocks of {b}: {r['s']:.2f} s{'' if r['same_values'] else ' (values differ)'}"
                          for b, r in row["blocks"].items()), flush=True)
        atomic_write_json(args.out, res)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
