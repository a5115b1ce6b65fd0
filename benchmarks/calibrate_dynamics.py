"""Calibration of the dynamics' defaults (dynamics-spec section 6): is myopic greedy stable, and how
much more than the best yardstick does it pay, as the slot length / battery settings vary?

    python benchmarks/calibrate_dynamics.py            # U = E = 10, balanced, 32 instances x 500 slots
    python benchmarks/calibrate_dynamics.py --envs 64

For each candidate setting: `local`, `random_offloading`, myopic `greedy` and `lyapunov` over a
grid of V (and theta with a battery), all on per-policy trajectories with common random numbers.
Prints and saves (JSON, atomically) per policy the mean cost with its 95 % interval, the drop
share, the mean CPU load and waits (queues) or charge (battery), and a trend: the mean over the
episode's last quarter over that of its third quarter (about 1 when stable, above when drifting away).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from meqc_jax import SystemConfig
from meqc_jax.baselines import lyapunov_policy
from meqc_jax.evaluate import evaluate
from meqc_jax.io import atomic_write_json

HANDSET_P_TX_MW = (100.0, 500.0)  # dynamics-spec section 6: the battery binds only at handset powers

ALL = ("queues", "battery", "drift")
CANDIDATES = {  # name: (dynamics, settings tried)
    "queues": (("queues",), [dict(slot_s=s) for s in (15.0, 20.0, 25.0, 30.0)]),
    "battery": (("battery",), [dict(p_tx_range_mw=HANDSET_P_TX_MW, battery_j=b, harvest_mean_j=h)
                               for b, h in ((20.0, 1.0), (20.0, 2.0), (20.0, 3.0), (40.0, 2.0))]),
    "drift": (("drift",), [dict(drift_sigma=s) for s in (0.5, 1.0)]),
    "sustainable": (ALL, [dict(slot_s=s, p_tx_range_mw=HANDSET_P_TX_MW) for s in (20.0, 25.0)]),
}
V_GRID = {"queues": (3.0, 10.0, 30.0, 100.0), "battery": (0.1, 0.3, 1.0), "drift": (10.0,),
          "sustainable": (0.3, 1.0, 3.0, 10.0, 30.0)}
THETA_GRID = {"battery": (10.0, 20.0, 30.0), "sustainable": (10.0, 20.0)}


def trend(x: np.ndarray) -> float:
    T = x.shape[0]
    third, last = x[T // 2: 3 * T // 4].mean(), x[3 * T // 4:].mean()
    return float(last / third) if third > 0 else float("nan")


def run(dyn: str, overrides: dict, envs: int, slots: int, seed: int) -> dict:
    cfg = SystemConfig(dynamics=CANDIDATES[dyn][0], **overrides)
    lyap = [lyapunov_policy(cfg, v, th) for v in V_GRID[dyn] for th in THETA_GRID.get(dyn, (None,))]
    t0 = time.perf_counter()
    res = evaluate(cfg, ["local", "random_offloading", "greedy", *lyap], num_envs=envs, num_slots=slots, seed=seed)
    out = {"overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
           "wall_s": time.perf_counter() - t0, "policies": {}}
    for name, s in res.summary.items():
        row = {k: s[k] for k in ("mean_cost", "ci95", "drop_share")}
        for m in ("cpu_wait_s", "battery_j", "cpu_load"):
            if m in res.per_slot[name]:
                row["mean_" + m] = s["mean_" + m]
                row["trend_" + m] = trend(res.per_slot[name][m])
        out["policies"][name] = row
    best = min((r["mean_cost"], n) for n, r in out["policies"].items() if n != "greedy")
    out["best_online"] = best[1]
    out["greedy_over_best"] = out["policies"]["greedy"]["mean_cost"] / best[0]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", type=int, default=32)
    ap.add_argument("--slots", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dynamics", default=",".join(CANDIDATES), help="comma-separated subset of "
                    + ", ".join(CANDIDATES))
    ap.add_argument("--out", default="benchmarks/results/calibrate_dynamics.json")
    args = ap.parse_args(argv)
    report = {"envs": args.envs, "slots": args.slots, "seed": args.seed, "runs": {}}
    for dyn in args.dynamics.split(","):
        report["runs"][dyn] = []
        for ov in CANDIDATES[dyn][1]:
            r = run(dyn, ov, args.envs, args.slots, args.seed)
            report["runs"][dyn].append(r)
            g = r["policies"]["greedy"]
            extra = " ".join(f"{k}={v:.2f}" for k, v in g.items() if k.startswith(("mean_c", "mean_b", "trend")))
            print(f"{dyn:8s} {ov}: greedy/best = {r['greedy_over_best']:.3f} (best {r['best_online']}), "
                  f"greedy drops {g['drop_share']:.3f} {extra}", flush=True)
            atomic_write_json(args.out, report)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
