"""Reliability of the dynamics at the corners of every new range (issue 13, item 7): 10^6 slot-instances
per scenario, corner and policy under `local`, `random_offloading` and a trained PPO policy, checking
that every value is finite, every backlog stays below the admitted wait plus one slot's work, and
every battery stays inside [0, capacity].

    python benchmarks/reliability_dynamics.py                 # 2000 instances x 500 slots per policy
    python benchmarks/reliability_dynamics.py --envs 200      # a tenth of it

The PPO policy is trained briefly (`--epochs`) on each scenario's defaults and then acts at its
corners (the corners change constants, not the observation's layout). Prints one line per case and
saves the JSON atomically; exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

from meqc_jax import scenarios
from meqc_jax.dynamics.queues import backlog_bound_s
from meqc_jax.evaluate import evaluate
from meqc_jax.io import atomic_write_json

CORNERS = {  # the extreme corners of every new range (slot length, capacity, harvest, drift)
    "MEQC-Queues-v0": [dict(slot_s=1.0), dict(slot_s=1e4)],
    "MEQC-Battery-v0": [dict(battery_j=0.1, harvest_mean_j=0.0), dict(battery_j=1e6, harvest_mean_j=1e5)],
    "MEQC-Drift-v0": [dict(drift_rho=0.0, drift_sigma=5.0), dict(drift_rho=0.999, drift_sigma=0.0)],
    "MEQC-Sustainable-v0": [dict(slot_s=1.0, battery_j=0.1, harvest_mean_j=0.0, drift_sigma=5.0, drift_rho=0.0),
                            dict(slot_s=1e4, battery_j=1e6, harvest_mean_j=1e5, drift_rho=0.999)],
}


def main(argv=None) -> int:
    from meqc_jax.learners import make_learner
    from meqc_jax.learners.ppo import PPOConfig
    from meqc_jax.loop import fit

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", type=int, default=2000)
    ap.add_argument("--slots", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/results/reliability_dynamics.json")
    args = ap.parse_args(argv)
    report = {"envs": args.envs, "slots": args.slots, "ppo_epochs": args.epochs, "device": str(jax.devices()[0]),
              "cases": []}
    ok_all = True
    for name, corners in CORNERS.items():
        base = scenarios.scenario_config(name)
        learner = make_learner("ppo", base, PPOConfig.preset("lookahead", epochs=args.epochs, num_envs=8))
        state, _ = fit(learner, [0], chunk=args.epochs)
        params = learner.acting_params(state, 0)
        for corner in corners:
            cfg = base.replace(**corner)
            t0 = time.perf_counter()
            res = evaluate(cfg, ["local", "random_offloading", learner.policy(params, "ppo")], num_envs=args.envs,
                           num_slots=args.slots, seed=1)
            for pol, per in res.per_slot.items():
                finite = all(bool(np.all(np.isfinite(v))) for v in per.values())
                wait_ok = "cpu_wait_s" not in per or float(per["cpu_wait_s"].max()) <= backlog_bound_s(cfg) * (1 + 1e-5)
                bat = per.get("battery_j")
                bat_ok = bat is None or (float(bat.min()) >= 0 and float(bat.max()) <= cfg.battery_j * (1 + 1e-6))
                ok = finite and wait_ok and bat_ok
                ok_all &= ok
                case = {"scenario": name, "corner": corner, "policy": pol, "slot_instances": args.envs * args.slots,
                        "finite": finite, "backlog_bounded": wait_ok, "battery_in_range": bat_ok,
                        "max_cpu_wait_s": float(per["cpu_wait_s"].max()) if "cpu_wait_s" in per else None,
                        "mean_cost": res.summary[pol]["mean_cost"], "drop_share": res.summary[pol]["drop_share"]}
                report["cases"].append(case)
                print(f"{'ok  ' if ok else 'FAIL'} {name} {corner} {pol}: {args.envs * args.slots} slot-instances, "
                      f"cost {case['mean_cost']:.4g}, drops {case['drop_share']:.3f}"
                      + (f", max wait {case['max_cpu_wait_s']:.4g} s" if case["max_cpu_wait_s"] is not None else ""),
                      flush=True)
            report["cases"][-1]["wall_s"] = time.perf_counter() - t0
            atomic_write_json(args.out, report)
    report["all_ok"] = ok_all
    atomic_write_json(args.out, report)
    print(("all checks passed" if ok_all else "SOME CHECKS FAILED") + f"; wrote {args.out}")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
