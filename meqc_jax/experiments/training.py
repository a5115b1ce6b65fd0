"""Figs. 4-6: training curves of the hybrid PPO learner at U = E = sizes[0..2] and its held-out cost
against every baseline and the exact oracle (paper Section V-B)."""

from __future__ import annotations

import math
import os

import numpy as np

from meqc_jax.baselines import BASELINE_NAMES, POLICY_NAMES
from meqc_jax.experiments import common
from meqc_jax.experiments.common import PRESETS, TRAINING_PARTS, ReproduceConfig
from meqc_jax.io import atomic_write_csv


def _torsos(name: str, rc: ReproduceConfig) -> tuple[str, ...]:
    return ("mlp", "vqc") if name in rc.vqc_figures else ("mlp",)


def _setup(name: str, rc: ReproduceConfig):
    """The part's size, presets, torsos (in training order), base system, per-preset configs and MLP epochs."""
    size = rc.sizes[min(TRAINING_PARTS.index(name), len(rc.sizes) - 1)]
    presets = PRESETS if name == "fig4" else ("balanced",)
    torsos = _torsos(name, rc)
    system = common.system(rc, size)
    configs = [system.replace(preset=p) for p in presets]
    epochs = None if name == "fig4" or rc.epochs_large is None else rc.epochs_large
    return size, presets, torsos, system, configs, epochs


def trainings(name: str, rc: ReproduceConfig) -> list:
    """What `run` trains, by size (`Part.trainings`): (system, PPOConfig, configurations) per torso."""
    _, _, torsos, system, configs, epochs = _setup(name, rc)
    return [(system, common.ppo_config(t, rc, epochs if t == "mlp" else None), len(configs)) for t in torsos]


def precompile(name: str, rc: ReproduceConfig, dry_run: bool = False) -> list[str]:
    """Compile, without training, the trainings this part reaches after its first (the VQC's, trained once the
    MLP has: Fig. 4 in quick mode): another worker runs this while the part trains its MLP, and the part then
    loads the programs from the persistent compilation cache. Returns what it compiles (`dry_run`: only says,
    without jax)."""
    later = [f"{t} training" for t in _torsos(name, rc)[1:]]
    if dry_run or not later:
        return later
    _, _, torsos, system, configs, epochs = _setup(name, rc)
    for torso in torsos[1:]:
        common.precompile_training(system, torso, rc, configs, epochs=epochs if torso == "mlp" else None)
    return later


def run(name: str, rc: ReproduceConfig, out: str, progress: bool) -> dict:
    """Train (MLP, and VQC where `rc.vqc_figures` says) per preset and seed, evaluate against every
    baseline and the oracle on the same held-out slots, write the CSV and PNG; return the part's data."""
    size, presets, torsos, system, configs, epochs = _setup(name, rc)
    curves, learned, learners = {}, [], {}
    runs = params = None
    for torso in torsos:
        learner, state, metrics, runs, params = common.train(
            system, torso, rc, configs, os.path.join(out, "checkpoints", f"{name}-{torso}"), progress,
            epochs=epochs if torso == "mlp" else None)
        curves[torso] = np.asarray(metrics.cost)  # [runs, epochs]  (training cost, Eq. 12)
        learned.append(learner.sweep_policy(learner.acting_params(state), torso))
        learners[torso] = learner
    eval_envs = rc.eval_envs
    if rc.eval_same_user_slots:  # the same user-slots at every size (quick mode sets it)
        eval_envs = max(1, math.ceil(rc.eval_envs * rc.sizes[0] / size))
    res = common.held_out(system, learned, rc, eval_envs, params, progress)
    rows, data = [], {"size": size, "presets": {}}
    for pi, preset in enumerate(presets):
        idx = [r for r, (i, _) in enumerate(runs) if i == pi]
        entry = {"curves": {}, "final": {}, "ci95": {}, "ratio_to_oracle": {}, "epochs_to_converge": {}}
        for torso in torsos:
            c = curves[torso][idx]
            entry["curves"][torso] = c.tolist()
            entry["epochs_to_converge"][torso] = int(np.median([common.epochs_to_converge(x) for x in c]))
            for r, (_, seed) in zip(idx, [runs[r] for r in idx]):
                for e, v in enumerate(curves[torso][r]):
                    rows.append([preset, torso, "train", seed, e + 1, f"{v:.6g}"])
        for pol in [*torsos, *POLICY_NAMES]:
            vals = [res.points[r][pol]["mean_cost"] for r in idx]
            entry["final"][pol] = float(np.mean(vals))
            entry["ci95"][pol] = float(np.mean([res.points[r][pol]["ci95"] for r in idx]))
            # on the slots every policy shares with the oracle (paired), whatever instances its mean covers
            entry["ratio_to_oracle"][pol] = float(np.mean([res.points[r][pol]["ratio_to_oracle"] for r in idx]))
            for r in idx:
                rows.append([preset, pol, "eval", runs[r][1], "", f"{res.points[r][pol]['mean_cost']:.6g}"])
        data["presets"][preset] = entry
    data["param_counts"] = {t: learners[t].param_counts()["per_agent"] for t in torsos}
    atomic_write_csv(os.path.join(out, f"{name}_training_u{size}.csv"),
                     ["preset", "policy", "kind", "seed", "epoch", "cost"], rows)
    from meqc_jax.plots import plot_training_figure

    plot_training_figure(os.path.join(out, f"{name}_training_u{size}.png"), data,
                         title=f"Fig. {name[3:]}: system cost vs training epochs, U = E = {size}",
                         epoch_slots=rc.slots_per_epoch)
    return data


def report(name: str, d: dict, rc: ReproduceConfig) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The part's section of report.md (a table per preset) and its claims (paper vs this run)."""
    lines, claims = [], []
    part = name
    lines += [f"## Fig. {part[3:]}: training, U = E = {d['size']}", "",
              "| preset | " + " | ".join(d["presets"][next(iter(d["presets"]))]["final"]) + " | epochs to converge |",
              "|---|" + "---|" * (len(d["presets"][next(iter(d["presets"]))]["final"]) + 1)]
    for preset, e in d["presets"].items():
        conv = ", ".join(f"{t} {n}" for t, n in e["epochs_to_converge"].items())
        ci = e.get("ci95", {})
        lines.append(f"| {preset} | " + " | ".join(f"{v:.2f} ± {ci[p]:.2f}" if p in ci else f"{v:.2f}"
                                                   for p, v in e["final"].items()) + f" | {conv} |")
    lines.append("")
    for preset, e in d["presets"].items():
        f = e["final"]
        red = {b: 1 - f["mlp"] / f[b] for b in BASELINE_NAMES}
        for b_name, r in red.items():
            claims.append((f"Fig. {part[3:]} U=E={d['size']} {preset}: >= 30 % below {b_name}",
                           f"MLP {f['mlp']:.2f} vs {f[b_name]:.2f}: {100 * r:+.0f} %", common.mark(r >= 0.30)))
        # paired (the same slots) where recorded; results written before that compare the means
        ratio = e.get("ratio_to_oracle") or {p: f[p] / f["oracle"] for p in f}
        claims.append((f"Fig. {part[3:]} U=E={d['size']} {preset}: gap to the oracle (not in the paper)",
                       f"MLP {100 * (ratio['mlp'] - 1):.1f} %"
                       + (f", VQC {100 * (ratio['vqc'] - 1):.1f} %" if "vqc" in f else "")
                       + (" (on the slots they share)" if e.get("ratio_to_oracle") else ""), "-"))
        paper_conv = {("fig4", "energy"): 50, ("fig4", "delay"): 100, ("fig4", "balanced"): 100}.get(
            (part, preset), 200)
        n = e["epochs_to_converge"]["mlp"]
        epochs = len(e["curves"]["mlp"][0])
        verdict = (common.mark(n <= 1.5 * paper_conv) if epochs >= paper_conv
                   else f"not comparable: {epochs} epochs trained")
        claims.append((f"Fig. {part[3:]} U=E={d['size']} {preset}: MLP converges in about {paper_conv} epochs",
                       f"{n} of {epochs} epochs to stay within 10 % of the final cost", verdict))
        if "vqc" in e["epochs_to_converge"]:
            nv = e["epochs_to_converge"]["vqc"]
            claims.append((f"Fig. {part[3:]} U=E={d['size']} {preset}: VQC converges faster than MLP, "
                           "without loss of performance",
                           f"VQC {nv} vs MLP {n} epochs; held-out VQC {f['vqc']:.2f} vs MLP {f['mlp']:.2f}",
                           common.mark(nv < n and f["vqc"] <= 1.02 * f["mlp"])))
    return lines, claims
