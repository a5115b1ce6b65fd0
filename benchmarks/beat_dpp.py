"""Does a learner beat the best drift-plus-penalty where the future matters? (issue 34)

Per scenario with carried state (U = E = 10, T = 500 by default): the myopic greedy, drift-plus-penalty over a
V x theta grid wide enough that its best is interior (the script says where it is not), and each learner trained
with several seeds; every policy on the same held-out paired slots (`evaluate`, common random numbers; 64
instances x one 500-slot episode = 32,000 slots by default). Printed and saved (JSON): each policy's mean cost,
the best DPP and whether it is interior, each learner run's paired ratio to the best DPP and to greedy with the
95 % interval over the instances, its training curve, its compute (epochs, environment steps, wall time,
machine), and the spread over seeds.

    python benchmarks/beat_dpp.py                                  # the four dynamics scenarios, 3 seeds
    python benchmarks/beat_dpp.py --scenarios queues --seeds 0 --set epochs=10 --out /tmp/b.json
    python benchmarks/beat_dpp.py --bound-only   # add the clairvoyant-bound gaps (U = E = 3) to the saved file
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from meqc_jax.baselines import lyapunov_policy, make_policy  # noqa: E402
from meqc_jax.config import parse_field  # noqa: E402
from meqc_jax.evaluate import HELD_OUT_SEED_OFFSET, evaluate, paired_comparison  # noqa: E402
from meqc_jax.experiments.sustainable import clairvoyant_gaps  # noqa: E402
from meqc_jax.io import atomic_write_json  # noqa: E402
from meqc_jax.learners import learner_spec  # noqa: E402
from meqc_jax.learners.interface import settings_dict  # noqa: E402
from meqc_jax.learners.priced import THETA_GRID, V_GRID  # noqa: E402  (the yardstick's grid is the learner's start's)
from meqc_jax.loop import fit  # noqa: E402
from meqc_jax.scenarios import scenario_config  # noqa: E402
from meqc_jax.sharding import device_description  # noqa: E402

SCENARIOS = {"queues": "MEQC-Queues-v0", "battery": "MEQC-Battery-v0", "drift": "MEQC-Drift-v0",
             "sustainable": "MEQC-Sustainable-v0"}


def dpp_grid(system, v_grid, theta_grid):
    thetas = theta_grid if "battery" in system.dynamics else (1.0,)
    return [lyapunov_policy(system, v, th * system.battery_j) for v in v_grid for th in thetas], thetas


def interior(best: str, grid: list, v_grid, thetas) -> dict:
    """Whether the best DPP's V (and theta, with a battery) lies strictly inside its grid."""
    i = [p.name for p in grid].index(best)
    iv, it = divmod(i, len(thetas))
    return {"v": v_grid[iv], "theta_share": thetas[it], "v_interior": 0 < iv < len(v_grid) - 1,
            "theta_interior": len(thetas) == 1 or 0 < it < len(thetas) - 1}


def train(system, names, settings, seeds) -> dict:
    """Each learner of `names` (with the `--set` overrides) trained for `system` with every seed: its policies
    (one per seed), metrics, settings, description and training seconds."""
    runs = {}
    for name in names:
        spec = learner_spec(name)
        overrides = {}
        for item in settings:
            field, _, value = item.partition("=")
            overrides[field] = parse_field(spec.config_class, field, value)
        config = spec.config(system, None, **overrides)
        learner = spec.make(system, config)
        t0 = time.perf_counter()
        state, metrics = fit(learner, seeds, chunk=max(1, min(10, learner.epochs)))
        seconds = time.perf_counter() - t0
        policies = [learner.policy(learner.acting_params(state, i), f"{spec.name}[seed {s}]")
                    for i, s in enumerate(seeds)]
        runs[spec.name] = {"learner": learner, "policies": policies, "metrics": metrics, "seconds": seconds,
                           "settings": settings_dict(config), "describe": learner.describe()}
    return runs


def compare(args, part: str, seeds: list[int]) -> dict:
    """The large comparison of one scenario: greedy, the DPP grid and each learner per seed on the same held-out
    paired slots (the module docstring)."""
    system = scenario_config(SCENARIOS[part], num_users=args.size, num_servers=args.size,
                             slots_per_episode=args.slots)
    grid, thetas = dpp_grid(system, V_GRID, THETA_GRID)
    runs = train(system, args.learners.split(","), args.set, seeds)
    pols = [make_policy("greedy", system), *grid]
    learned = []
    for lname, r in runs.items():
        for s, pol in zip(seeds, r["policies"]):
            learned.append((lname, s, pol.name))
            pols.append(pol)
    t0 = time.perf_counter()
    res = evaluate(system, pols, num_envs=args.eval_envs, num_slots=args.slots, seed=HELD_OUT_SEED_OFFSET + 7)
    eval_seconds = time.perf_counter() - t0
    S = res.summary
    dpp_names = [p.name for p in grid]
    best = min(dpp_names, key=lambda n: S[n]["mean_cost"])
    where = interior(best, grid, V_GRID, thetas)
    row = {"scenario": SCENARIOS[part], "greedy": S["greedy"]["mean_cost"], "best_dpp": best,
           "best_dpp_cost": S[best]["mean_cost"], "best_dpp_where": where,
           "dpp_grid": {n: S[n]["mean_cost"] for n in dpp_names}, "eval_seconds": eval_seconds,
           "best_dpp_vs_greedy": paired_comparison(res.per_slot, best, "greedy"), "learners": {}}
    print(f"\n{SCENARIOS[part]}: greedy {row['greedy']:.1f}, best DPP {best} {row['best_dpp_cost']:.1f} "
          f"(V interior: {where['v_interior']}, theta interior: {where['theta_interior']})")
    for lname, r in runs.items():
        per_seed = []
        for (ln, s, pname) in learned:
            if ln != lname:
                continue
            vs_dpp = paired_comparison(res.per_slot, pname, best)
            vs_greedy = paired_comparison(res.per_slot, pname, "greedy")
            per_seed.append({"seed": s, "mean_cost": S[pname]["mean_cost"], "vs_best_dpp": vs_dpp,
                             "vs_greedy": vs_greedy})
            print(f"  {pname}: {S[pname]['mean_cost']:.1f}  {vs_dpp['ratio']:.4f} x best DPP "
                  f"(excess {100 * vs_dpp['excess']:+.2f} % +- {100 * vs_dpp['ci95']:.2f} %), "
                  f"{vs_greedy['ratio']:.4f} x greedy")
        ratios = np.array([p["vs_best_dpp"]["ratio"] for p in per_seed])
        m = r["metrics"]
        curves = {f: np.asarray(getattr(m, f)).tolist() for f in ("cost", "over_start") if hasattr(m, f)}
        steps = r["describe"].get("env_steps_per_epoch")
        row["learners"][lname] = {
            "per_seed": per_seed, "ratio_mean": float(ratios.mean()), "ratio_min": float(ratios.min()),
            "ratio_max": float(ratios.max()), "settings": r["settings"], "describe": r["describe"],
            "train_seconds": r["seconds"], "epochs": r["learner"].epochs,
            "env_steps": None if steps is None else int(steps * r["learner"].epochs * len(seeds)),
            "train_curve": curves}
        print(f"  {lname}: {ratios.mean():.4f} x best DPP over {len(seeds)} seeds (spread {ratios.min():.4f}-"
              f"{ratios.max():.4f}); trained {r['seconds']:.0f} s for {len(seeds)} seeds")
    return row


def bound_gaps(args, part: str, seeds: list[int]) -> dict:
    """Every policy's gap to the clairvoyant bound at U = E = --bound-size (dynamics-spec section 7): greedy, every
    other point of the DPP grid and each learner, retrained at that size with every seed."""
    small = scenario_config(SCENARIOS[part], num_users=args.bound_size, num_servers=args.bound_size,
                            slots_per_episode=args.slots)
    small_runs = train(small, args.learners.split(","), args.set, seeds)
    # every other point of the grid: one program rolls every policy out, and its compile grows with their number
    small_pols = [make_policy("greedy", small), *dpp_grid(small, V_GRID[::2], THETA_GRID[::2])[0]]
    small_pols += [p for r in small_runs.values() for p in r["policies"]]
    t0 = time.perf_counter()
    bound = clairvoyant_gaps(small, small_pols, args.bound_instances, args.bound_horizon, 20, 0,
                             args.bound_seconds)
    bound.pop("per_instance")
    bound.update(size=args.bound_size, seconds=time.perf_counter() - t0,
                 train_seconds={n: r["seconds"] for n, r in small_runs.items()})
    shown = ["greedy", bound["best_lyapunov"], *(p.name for r in small_runs.values() for p in r["policies"])]
    print(f"  clairvoyant gap at U = E = {args.bound_size} ({bound['instances']} x {bound['horizon']} slots, "
          f"{bound['solved_to_optimality']} solved to optimality): "
          + ", ".join(f"{n} {bound['gap'][n]:.3f}" for n in shown))
    return bound


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default="queues,battery,drift,sustainable")
    ap.add_argument("--learners", default="priced", help="comma-separated learner names or module.path:attribute")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--size", type=int, default=10, help="U = E")
    ap.add_argument("--slots", type=int, default=500, help="T, the episode length")
    ap.add_argument("--eval-envs", type=int, default=64, help="held-out instances (x one episode of --slots)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a learner setting")
    ap.add_argument("--bound-size", type=int, default=3, help="U = E of the clairvoyant-bound comparison (0: none)")
    ap.add_argument("--bound-instances", type=int, default=20)
    ap.add_argument("--bound-horizon", type=int, default=10, help="H, slots of each horizon MIP")
    ap.add_argument("--bound-seconds", type=float, default=20.0, help="HiGHS's time per MIP (then its dual bound)")
    ap.add_argument("--merge", action="store_true", help="keep --out's other scenarios (replace only these)")
    ap.add_argument("--bound-only", action="store_true",
                    help="add the clairvoyant comparison to --out's scenarios without rerunning the large one")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "beat_dpp.json"))
    args = ap.parse_args(argv)
    parts = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    bad = [p for p in parts if p not in SCENARIOS]
    if bad:
        ap.error(f"--scenarios: {bad[0]!r} is invalid: allowed {', '.join(SCENARIOS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    for flag, value, lo in (("--bound-size", args.bound_size, 0), ("--bound-instances", args.bound_instances, 1),
                            ("--bound-horizon", args.bound_horizon, 1)):
        if value < lo:
            ap.error(f"{flag}={value} is invalid: allowed an integer >= {lo}")
    if not args.bound_seconds > 0:
        ap.error(f"--bound-seconds={args.bound_seconds} is invalid: allowed > 0")
    if args.bound_only and not args.bound_size:
        ap.error("--bound-only: needs --bound-size >= 1")
    previous = {}
    if (args.merge or args.bound_only) and os.path.exists(args.out):
        with open(args.out) as f:
            previous = json.load(f).get("scenarios", {})
    out = {"machine": {"device": device_description(), "platform": platform.platform(),
                       "cpus": os.cpu_count()}, "size": args.size, "slots": args.slots, "eval_envs": args.eval_envs,
           "seeds": seeds, "scenarios": previous}
    for part in parts:
        row = out["scenarios"].get(part) if args.bound_only else compare(args, part, seeds)
        if row is None:
            ap.error(f"--bound-only: {args.out} has no {part!r} comparison to add the bound to; run it without "
                     "--bound-only first")
        if args.bound_size:
            row["bound"] = bound_gaps(args, part, seeds)
        out["scenarios"][part] = row
        atomic_write_json(args.out, out)  # after every scenario: a crash keeps what is done
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
