"""Figs. 7-9: the final system cost against one swept parameter (edge CPU speed, physical qubits,
qubit lifetime) at U = E = 10, balanced, for the learner and every baseline (paper Section V-C)."""

from __future__ import annotations

import os

import numpy as np

from meqc_jax.baselines import POLICY_NAMES
from meqc_jax.config import SystemConfig
from meqc_jax.experiments import common
from meqc_jax.experiments.common import ReproduceConfig
from meqc_jax.io import atomic_write_csv

SWEEPS = {
    "fig7": ("f_edge_ghz", "edge CPU speed per server (GHz)", "edge_cpu", False),  # field, label, file slug, log x
    "fig8": ("phys_qubits", "physical qubits per QPU", "qubits", False),
    "fig9": ("t1_ms", "qubit lifetime t1 (ms)", "qubit_quality", True),
}


def sweep_config(system: SystemConfig, field: str, value) -> SystemConfig:
    if field == "f_edge_ghz":
        return system.replace(f_edge_choices_ghz=(float(value),))
    if field == "phys_qubits":
        return system.replace(phys_qubits_range=(int(value), int(value)))
    return system.replace(t1_ms=float(value))


def trainings(name: str, rc: ReproduceConfig) -> list:
    """What `run` trains, by size (`Part.trainings`): one MLP training over the sweep's values."""
    epochs = rc.epochs_mlp if rc.epochs_sweep is None else rc.epochs_sweep
    return [(common.system(rc, 10), common.ppo_config("mlp", rc, epochs), len(getattr(rc, SWEEPS[name][0])))]


def run(name: str, rc: ReproduceConfig, out: str, progress: bool) -> dict:
    """Train one MLP run per sweep value and seed (all in one program, the value as traced EnvParams),
    evaluate it with every baseline and the oracle at its value; write the CSV and PNG."""
    field, label, slug, logx = SWEEPS[name]
    values = getattr(rc, field)
    system = common.system(rc, 10)
    configs = [sweep_config(system, field, v) for v in values]
    epochs = rc.epochs_mlp if rc.epochs_sweep is None else rc.epochs_sweep
    learner, state, _, runs, params = common.train(system, "mlp", rc, configs, os.path.join(out, "checkpoints", name),
                                                   progress, epochs=epochs)
    res = common.held_out(system, [learner.sweep_policy(learner.acting_params(state), "mlp")], rc, rc.eval_envs,
                          params, progress)
    rows, table, ci95 = [], {pol: [] for pol in ("mlp", *POLICY_NAMES)}, {pol: [] for pol in ("mlp", *POLICY_NAMES)}
    qshare = {pol: [] for pol in ("mlp", *POLICY_NAMES)}
    for vi, v in enumerate(values):
        idx = [r for r, (i, _) in enumerate(runs) if i == vi]
        for pol in table:
            table[pol].append(float(np.mean([res.points[r][pol]["mean_cost"] for r in idx])))
            ci95[pol].append(float(np.mean([res.points[r][pol]["ci95"] for r in idx])))
            qshare[pol].append(float(np.mean([res.points[r][pol]["quantum_share"] for r in idx])))
            for r in idx:
                p = res.points[r][pol]
                rows.append([v, pol, runs[r][1], f"{p['mean_cost']:.6g}", f"{p['ci95']:.4g}",
                             f"{p.get('ratio_to_oracle', float('nan')):.6g}", f"{p['quantum_share']:.4g}"])
    data = {"field": field, "label": label, "values": list(values), "cost": table, "ci95": ci95,
            "quantum_share": qshare}
    atomic_write_csv(os.path.join(out, f"{name}_{slug}.csv"),
                     [field, "policy", "seed", "mean_cost", "ci95", "ratio_to_oracle", "quantum_share"], rows)
    from meqc_jax.plots import plot_sweep_figure

    plot_sweep_figure(os.path.join(out, f"{name}_{slug}.png"), data, logx=logx,
                      title=f"Fig. {name[3:]}: final system cost vs {label}, U = E = 10, balanced")
    return data


def report(name: str, d: dict, rc: ReproduceConfig) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The part's section of report.md (cost per sweep value and policy) and its claim."""
    lines, claims = [], []
    part = name
    field, label, _, _ = SWEEPS[part]
    lines += [f"## Fig. {part[3:]}: final cost vs {label}", "",
              f"| {field} | " + " | ".join(d["cost"]) + " |", "|---|" + "---|" * len(d["cost"])]
    for i, v in enumerate(d["values"]):
        ci = d.get("ci95", {})  # absent in results written before the intervals were recorded
        lines.append(f"| {v} | " + " | ".join(f"{d['cost'][p][i]:.2f} ± {ci[p][i]:.2f}" if p in ci
                                               else f"{d['cost'][p][i]:.2f}" for p in d["cost"]) + " |")
    lines.append("")
    c = np.array(d["cost"]["mlp"])
    o = np.array(d["cost"]["oracle"])
    rel = (c[-1] - c[0]) / c[0]
    if part == "fig7":
        claims.append(("Fig. 7: cost falls as the edge CPU speed grows", f"MLP {c[0]:.1f} -> {c[-1]:.1f} "
                       f"({100 * rel:+.0f} %); oracle {o[0]:.1f} -> {o[-1]:.1f}", common.mark(rel < -0.05)))
    elif part == "fig8":
        spread = (c.max() - c.min()) / c.mean()
        claims.append(("Fig. 8: cost nearly flat in the number of qubits",
                       f"MLP spread {100 * spread:.1f} % of its mean; oracle {o.min():.1f}-{o.max():.1f}",
                       common.mark(spread < 0.10)))
    else:
        r = np.array(d["cost"]["random_offloading"])
        rel_o = (o[-1] - o[0]) / o[0]
        claims.append(("Fig. 9: cost rises with qubit quality (t1)",
                       f"MLP {c[0]:.1f} -> {c[-1]:.1f} ({100 * rel:+.1f} %); random_offloading {r[0]:.1f} -> "
                       f"{r[-1]:.1f}; oracle {o[0]:.1f} -> {o[-1]:.1f} ({100 * rel_o:+.1f} %)",
                       common.mark(rel > 0.01) + ("" if rel_o > 0.01 else
                                            " for the learned policy; the optimum stays flat (it avoids the QPU)")))
    return lines, claims
