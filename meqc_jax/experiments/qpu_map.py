"""Fig. 10 (not in the paper): where the QPU pays -- the exact oracle's share of users served by a
QPU over qubit lifetime x latency weight, under both energy models."""

from __future__ import annotations

import os

import numpy as np

from meqc_jax.env import MEQCEnv
from meqc_jax.evaluate import evaluate
from meqc_jax.experiments import common
from meqc_jax.experiments.common import ReproduceConfig
from meqc_jax.io import atomic_write_csv


def run(name: str, rc: ReproduceConfig, out: str, progress: bool) -> dict:
    """The oracle's share of users served by a QPU over qubit lifetime x latency weight, for both
    energy models (one evaluation per model, the grid as traced EnvParams); CSV and PNG."""
    rows, data = [], {"t1_ms": list(rc.qpu_map.t1_ms), "lam_d": list(rc.qpu_map.lam_d), "models": {}}
    for model in ("paper", "power_time"):
        system = common.system(rc, 10, slots=rc.qpu_map.slots, energy_model=model)
        env = MEQCEnv(system)
        grid = [(t, ld) for ld in rc.qpu_map.lam_d for t in rc.qpu_map.t1_ms]
        params = MEQCEnv.stack_params([env.params_for(system.replace(t1_ms=float(t), lam_d=float(ld),
                                                                     lam_e=float(1.0 - ld))) for t, ld in grid])
        res = evaluate(system, ["oracle"], num_envs=rc.qpu_map.envs, num_slots=rc.qpu_map.slots, seed=rc.seed + 7,
                       progress=progress, env_params=params, compiler_options=common.compiler_options(rc))
        share = np.array([p["oracle"]["qpu_offload_share"] for p in res.points]).reshape(len(rc.qpu_map.lam_d), -1)
        held = np.array([p["oracle"]["quantum_share"] for p in res.points]).reshape(len(rc.qpu_map.lam_d), -1)
        feas = np.array([p["oracle"]["feasible_share"] for p in res.points]).reshape(len(rc.qpu_map.lam_d), -1)
        data["models"][model] = {"qpu_share": share.tolist(), "qpu_held_share": held.tolist(),
                                 "feasible_share": feas.tolist()}
        for (t, ld), p in zip(grid, res.points):
            rows.append([model, t, ld, f"{1 - ld:.6g}", f"{p['oracle']['qpu_offload_share']:.6g}",
                         f"{p['oracle']['quantum_share']:.6g}",
                         f"{p['oracle']['feasible_share']:.6g}", f"{p['oracle']['mean_cost']:.6g}"])
    atomic_write_csv(os.path.join(out, "fig10_qpu_map.csv"),
                     ["energy_model", "t1_ms", "lam_d", "lam_e", "oracle_qpu_share", "oracle_qpu_held_share",
                      "feasible_share", "oracle_cost"],
                     rows)
    from meqc_jax.plots import plot_qpu_map

    plot_qpu_map(os.path.join(out, "fig10_qpu_map.png"), data)
    return data


def report(name: str, d: dict, rc: ReproduceConfig) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The part's section of report.md: the QPU-share table per energy model (no claim in the paper)."""
    lines = []
    lines += ["## Fig. 10: the oracle's share of users served by a QPU", "",
              "Served: the user holds a QPU and offloads at least 1 % of its task (the oracle may also hold "
              "a QPU at phi ~ 1, a tie with local execution; the CSV lists that share too).", ""]
    for model, m in d["models"].items():
        lines += [f"Energy model `{model}` (rows: lam_d; columns: t1 in ms)", "",
                  "| lam_d \\ t1 | " + " | ".join(str(t) for t in d["t1_ms"]) + " |",
                  "|---|" + "---|" * len(d["t1_ms"])]
        for ld, row in zip(d["lam_d"], m["qpu_share"]):
            lines.append(f"| {ld} | " + " | ".join(f"{100 * x:.1f} %" for x in row) + " |")
        lines.append("")
    return lines, []
