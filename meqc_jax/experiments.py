"""Reproduce the paper's experiments (Section V, Figs. 4-9) plus a QPU map (Fig. 10), one command.

    meqc reproduce --quick            # every figure on small settings, minutes on a laptop CPU
    meqc reproduce --seeds 3          # the paper's epochs; hours on 2 CPU cores, minutes on a GPU

Every figure is a *part*: its runs are trained and evaluated, then its CSV, PNG and JSON are written
atomically (the JSON last, so its presence marks the part done). A rerun with the same output
folder skips finished parts (`force=True` redoes them); long trainings also checkpoint every chunk
of epochs under `checkpoints/`, so an interrupted run loses at most one chunk. `report.md` is
rebuilt from the parts' JSON at the end.

Speed: runs that share shapes share one compiled program. Seeds and sweep values are vmapped
together: a sweep value becomes traced `EnvParams` (`MEQCEnv.params_for`), so e.g. the six edge
CPU speeds of Fig. 7 x the seeds train as one batch, and all policies are evaluated on the same
slots (common random numbers) in one program per policy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time

import jax
import numpy as np

from meqc_jax.baselines import BASELINE_NAMES
from meqc_jax.config import FieldChecker, SystemConfig, dataclass_to_dict
from meqc_jax.env import MEQCEnv
from meqc_jax.evaluate import evaluate
from meqc_jax.io import atomic_write_csv, atomic_write_json, atomic_write_text
from meqc_jax.ppo import METRIC_NAMES

PARTS = ("fig4", "fig5", "fig6", "fig7", "fig8", "fig9", "fig10")
PRESETS = ("balanced", "delay", "energy")
REFERENCES = BASELINE_NAMES + ("oracle",)


@dataclasses.dataclass(frozen=True)
class ReproduceConfig:
    """Settings of a reproduction (validated). `ReproduceConfig.quick()` is the small form."""

    seeds: int = 3
    seed: int = 0
    epochs_mlp: int = 250  # paper
    epochs_vqc: int = 125  # paper
    envs: int = 64
    slots_per_epoch: int = 500  # paper: an epoch is 500 slots
    minibatches: int = 8
    chunk: int = 10
    eval_envs: int = 100
    eval_slots: int = 100  # per instance: eval_envs x eval_slots held-out slots per run
    sizes: tuple[int, ...] = (10, 20, 30)  # U = E of Figs. 4, 5, 6
    vqc_figures: tuple[str, ...] = ("fig4", "fig5", "fig6")  # which training figures also train the VQC
    f_edge_ghz: tuple[float, ...] = (5.0, 10.0, 15.0, 20.0, 25.0, 30.0)  # Fig. 7
    phys_qubits: tuple[int, ...] = (1000, 2000, 5000, 10000, 15000, 20000)  # Fig. 8
    t1_ms: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)  # Fig. 9
    map_t1_ms: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1000.0, 10000.0)  # Fig. 10
    map_lam_d: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)  # Fig. 10 (lam_e = 1 - lam_d)
    map_envs: int = 50
    map_slots: int = 20
    fast_compile: bool = False  # XLA without LLVM optimizations: ~3x faster compiles, ~2x slower runs
    quick_mode: bool = False

    def __post_init__(self):
        c = FieldChecker(self, "ReproduceConfig")
        for name, hi in (("seeds", 100), ("epochs_mlp", 10**5), ("epochs_vqc", 10**5), ("envs", 2**16),
                         ("slots_per_epoch", 10**5), ("minibatches", 2**16), ("chunk", 10**5),
                         ("eval_envs", 10**5), ("eval_slots", 10**6), ("map_envs", 10**5), ("map_slots", 10**5)):
            c.integer(name, 1, hi)
        c.integer("seed", 0, 2**31 - 1)
        c.values("sizes", 1, 1000, integral=True)
        c.values("f_edge_ghz", 1e-3, 1e4)
        c.values("phys_qubits", 0, 2**31 - 2, integral=True, lo_open=False)
        c.values("t1_ms", 1e-9, 1e6)
        c.values("map_t1_ms", 1e-9, 1e6)
        c.values("map_lam_d", 0.0, 1.0, lo_open=False)
        c.check("vqc_figures", isinstance(self.vqc_figures, tuple) and set(self.vqc_figures) <= {"fig4", "fig5", "fig6"},
                "a tuple of the training figures fig4, fig5, fig6")
        c.choice("fast_compile", (False, True))
        c.choice("quick_mode", (False, True))
        if (self.envs * self.slots_per_epoch) % self.minibatches:
            c.fail("minibatches", f"a divisor of envs x slots_per_epoch = {self.envs * self.slots_per_epoch}")

    @classmethod
    def quick(cls, **overrides) -> ReproduceConfig:
        """Every figure on small settings (one seed, short epochs): a few minutes on 2 CPU cores."""
        base = dict(seeds=1, epochs_mlp=12, epochs_vqc=12, envs=8, slots_per_epoch=100, minibatches=4, chunk=12,
                    eval_envs=16, eval_slots=16, f_edge_ghz=(5.0, 15.0, 30.0), phys_qubits=(1000, 5000, 20000),
                    t1_ms=(0.1, 10.0, 1000.0), map_t1_ms=(0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0),
                    map_lam_d=(0.1, 0.5, 0.9), map_envs=8, map_slots=4, vqc_figures=("fig4",), fast_compile=True,
                    quick_mode=True)
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict:
        return dataclass_to_dict(self)


def device_description() -> str:
    d = jax.devices()[0]
    return f"{d.platform}: {getattr(d, 'device_kind', '?')} x {jax.device_count()} ({platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores)"


# ---------------------------------------------------------------------------- building blocks
def _system(size: int, rc: ReproduceConfig, **kw) -> SystemConfig:
    return SystemConfig(num_users=size, num_servers=size, slots_per_episode=rc.slots_per_epoch, **kw)


def _train(system: SystemConfig, torso: str, rc: ReproduceConfig, configs: list[SystemConfig], ckpt: str,
           progress: bool):
    """One run per (config, seed), vmapped in one program; returns (trainer, state, metrics, run index)."""
    from meqc_jax.ppo import PPOConfig, fit, make_train

    epochs = rc.epochs_vqc if torso == "vqc" else rc.epochs_mlp
    ppo = PPOConfig(torso=torso, epochs=epochs, num_envs=rc.envs, num_minibatches=rc.minibatches)
    trainer = make_train(system, ppo, compiler_options=_options(rc))
    env = trainer.env
    runs = [(i, s) for i in range(len(configs)) for s in range(rc.seed, rc.seed + rc.seeds)]
    params = MEQCEnv.stack_params([env.params_for(configs[i]) for i, _ in runs])
    state, metrics = fit(trainer, [s for _, s in runs], chunk=rc.chunk, ckpt_dir=ckpt, progress=progress,
                         env_params=params)
    return trainer, state, metrics, runs, params


def _options(rc: ReproduceConfig):
    from meqc_jax.ppo import FAST_COMPILE

    return FAST_COMPILE if rc.fast_compile else None


def _epochs_to_converge(curve: np.ndarray, tol: float = 0.10) -> int:
    """First epoch from which the 5-epoch moving average stays within `tol` of the final cost
    (the mean of the last 10 % of epochs)."""
    curve = np.asarray(curve, np.float64)
    n = len(curve)
    final = curve[-max(1, n // 10):].mean()
    w = min(5, n)
    smooth = np.convolve(curve, np.ones(w) / w, mode="valid")  # smooth[i] averages epochs i+1..i+w
    inside = smooth <= final * (1 + tol)
    for i in range(len(inside)):
        if inside[i:].all():
            return int(i + w)
    return n


# ---------------------------------------------------------------------------- Figs. 4-6: training curves
def _part_training(name: str, size: int, presets: tuple[str, ...], rc: ReproduceConfig, out: str, progress: bool):
    torsos = ("mlp", "vqc") if name in rc.vqc_figures else ("mlp",)
    system = _system(size, rc)
    configs = [system.replace(preset=p) for p in presets]
    curves, learned, trainers = {}, [], {}
    runs = params = None
    for torso in torsos:
        trainer, state, metrics, runs, params = _train(system, torso, rc, configs,
                                                       os.path.join(out, "checkpoints", f"{name}-{torso}"), progress)
        curves[torso] = metrics[..., METRIC_NAMES.index("cost")]  # [runs, epochs]  (training cost, Eq. 12)
        learned.append(trainer.sweep_policy(state.params, torso))
        trainers[torso] = trainer
    res = evaluate(system, [*learned, *REFERENCES], num_envs=rc.eval_envs, num_slots=rc.eval_slots,
                   seed=rc.seed + 1_000_003, progress=progress, env_params=params,
                   compiler_options=_options(rc))
    rows, data = [], {"size": size, "presets": {}}
    for pi, preset in enumerate(presets):
        idx = [r for r, (i, _) in enumerate(runs) if i == pi]
        entry = {"curves": {}, "final": {}, "ci95": {}, "epochs_to_converge": {}}
        for torso in torsos:
            c = curves[torso][idx]
            entry["curves"][torso] = c.tolist()
            entry["epochs_to_converge"][torso] = int(np.median([_epochs_to_converge(x) for x in c]))
            for r, (_, seed) in zip(idx, [runs[r] for r in idx]):
                for e, v in enumerate(curves[torso][r]):
                    rows.append([preset, torso, "train", seed, e + 1, f"{v:.6g}"])
        for pol in [*torsos, *REFERENCES]:
            vals = [res.points[r][pol]["mean_cost"] for r in idx]
            entry["final"][pol] = float(np.mean(vals))
            entry["ci95"][pol] = float(np.mean([res.points[r][pol]["ci95"] for r in idx]))
            for r in idx:
                rows.append([preset, pol, "eval", runs[r][1], "", f"{res.points[r][pol]['mean_cost']:.6g}"])
        data["presets"][preset] = entry
    data["param_counts"] = {t: trainers[t].param_counts()["per_agent"] for t in torsos}
    atomic_write_csv(os.path.join(out, f"{name}_training_u{size}.csv"),
                     ["preset", "policy", "kind", "seed", "epoch", "cost"], rows)
    from meqc_jax.plots import plot_training_figure

    plot_training_figure(os.path.join(out, f"{name}_training_u{size}.png"), data,
                         title=f"Fig. {name[3:]}: system cost vs training epochs, U = E = {size}",
                         epoch_slots=rc.slots_per_epoch)
    return data


# ---------------------------------------------------------------------------- Figs. 7-9: sweeps
SWEEPS = {
    "fig7": ("f_edge_ghz", "edge CPU speed per server (GHz)", "edge_cpu", False),
    "fig8": ("phys_qubits", "physical qubits per QPU", "qubits", False),
    "fig9": ("t1_ms", "qubit lifetime t1 (ms)", "qubit_quality", True),
}


def _sweep_config(system: SystemConfig, field: str, value) -> SystemConfig:
    if field == "f_edge_ghz":
        return system.replace(f_edge_choices_ghz=(float(value),))
    if field == "phys_qubits":
        return system.replace(phys_qubits_range=(int(value), int(value)))
    return system.replace(t1_ms=float(value))


def _part_sweep(name: str, rc: ReproduceConfig, out: str, progress: bool):
    field, label, slug, logx = SWEEPS[name]
    values = getattr(rc, field)
    system = _system(10, rc)
    configs = [_sweep_config(system, field, v) for v in values]
    trainer, state, _, runs, params = _train(system, "mlp", rc, configs, os.path.join(out, "checkpoints", name),
                                             progress)
    res = evaluate(system, [trainer.sweep_policy(state.params, "mlp"), *REFERENCES], num_envs=rc.eval_envs,
                   num_slots=rc.eval_slots, seed=rc.seed + 1_000_003, progress=progress, env_params=params,
                   compiler_options=_options(rc))
    rows, table = [], {pol: [] for pol in ("mlp", *REFERENCES)}
    qshare = {pol: [] for pol in ("mlp", *REFERENCES)}
    for vi, v in enumerate(values):
        idx = [r for r, (i, _) in enumerate(runs) if i == vi]
        for pol in table:
            table[pol].append(float(np.mean([res.points[r][pol]["mean_cost"] for r in idx])))
            qshare[pol].append(float(np.mean([res.points[r][pol]["quantum_share"] for r in idx])))
            for r in idx:
                p = res.points[r][pol]
                rows.append([v, pol, runs[r][1], f"{p['mean_cost']:.6g}", f"{p['ci95']:.4g}",
                             f"{p.get('ratio_to_oracle', float('nan')):.6g}", f"{p['quantum_share']:.4g}"])
    data = {"field": field, "label": label, "values": list(values), "cost": table, "quantum_share": qshare}
    atomic_write_csv(os.path.join(out, f"{name}_{slug}.csv"),
                     [field, "policy", "seed", "mean_cost", "ci95", "ratio_to_oracle", "quantum_share"], rows)
    from meqc_jax.plots import plot_sweep_figure

    plot_sweep_figure(os.path.join(out, f"{name}_{slug}.png"), data, logx=logx,
                      title=f"Fig. {name[3:]}: final system cost vs {label}, U = E = 10, balanced")
    return data


# ---------------------------------------------------------------------------- Fig. 10: where the QPU pays
def _part_qpu_map(rc: ReproduceConfig, out: str, progress: bool):
    rows, data = [], {"t1_ms": list(rc.map_t1_ms), "lam_d": list(rc.map_lam_d), "models": {}}
    for model in ("paper", "power_time"):
        system = SystemConfig(num_users=10, num_servers=10, slots_per_episode=rc.map_slots, energy_model=model)
        env = MEQCEnv(system)
        grid = [(t, ld) for ld in rc.map_lam_d for t in rc.map_t1_ms]
        params = MEQCEnv.stack_params([env.params_for(system.replace(t1_ms=float(t), lam_d=float(ld),
                                                                     lam_e=float(1.0 - ld))) for t, ld in grid])
        res = evaluate(system, ["oracle"], num_envs=rc.map_envs, num_slots=rc.map_slots, seed=rc.seed + 7,
                       progress=progress, env_params=params,
                   compiler_options=_options(rc))
        share = np.array([p["oracle"]["qpu_offload_share"] for p in res.points]).reshape(len(rc.map_lam_d), -1)
        held = np.array([p["oracle"]["quantum_share"] for p in res.points]).reshape(len(rc.map_lam_d), -1)
        feas = np.array([p["oracle"]["feasible_share"] for p in res.points]).reshape(len(rc.map_lam_d), -1)
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


# ---------------------------------------------------------------------------- driver
def reproduce(rc: ReproduceConfig, out: str, force: bool = False, parts=PARTS, progress: bool = False,
              log=print) -> dict:
    """Run (or skip, when already done) each part, then write `report.md`. Returns {part: data}."""
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"reproduce: parts={unknown!r} are invalid: allowed " + ", ".join(PARTS))
    os.makedirs(out, exist_ok=True)
    atomic_write_json(os.path.join(out, "reproduce_config.json"), rc.to_dict())
    results = {}
    for part in PARTS:
        path = os.path.join(out, f"{part}.json")
        if part not in parts:
            if os.path.exists(path):
                results[part] = json.load(open(path))
            continue
        if os.path.exists(path) and not force:
            results[part] = json.load(open(path))
            log(f"{part}: done already ({path}); skipped (force to redo)")
            continue
        t0 = time.perf_counter()
        if part in ("fig4", "fig5", "fig6"):
            size = {"fig4": rc.sizes[0], "fig5": rc.sizes[min(1, len(rc.sizes) - 1)],
                    "fig6": rc.sizes[min(2, len(rc.sizes) - 1)]}[part]
            data = _part_training(part, size, PRESETS if part == "fig4" else ("balanced",), rc, out, progress)
        elif part in SWEEPS:
            data = _part_sweep(part, rc, out, progress)
        else:
            data = _part_qpu_map(rc, out, progress)
        data["wall_s"] = time.perf_counter() - t0
        data["device"] = device_description()
        atomic_write_json(path, data)  # last: marks the part done
        results[part] = data
        log(f"{part}: {data['wall_s']:.1f} s")
    atomic_write_text(os.path.join(out, "report.md"), make_report(results, rc))
    return results


# ---------------------------------------------------------------------------- report
def _mark(ok: bool) -> str:
    return "reproduced" if ok else "not reproduced"


def make_report(results: dict, rc: ReproduceConfig) -> str:
    """`report.md`: settings, a table per figure, and "paper claim vs this run"."""
    lines = ["# Reproduction of the paper's experiments", ""]
    walls = sum(r.get("wall_s", 0.0) for r in results.values())
    device = next((r["device"] for r in results.values() if "device" in r), device_description())
    lines += [f"Mode: {'quick' if rc.quick_mode else 'full'}; device: {device}; wall time of the parts in this "
              f"folder: {walls:.0f} s. Settings: seeds {rc.seeds}, epochs {rc.epochs_mlp} (MLP) / {rc.epochs_vqc} "
              f"(VQC) of {rc.slots_per_epoch} slots x {rc.envs} environments; held-out evaluation "
              f"{rc.eval_envs} x {rc.eval_slots} slots per run (paired with the baselines and the oracle). "
              "Costs are the mean system cost per slot (Eq. 12).", ""]
    claims = []
    for part in ("fig4", "fig5", "fig6"):
        if part not in results:
            continue
        d = results[part]
        lines += [f"## Fig. {part[3:]}: training, U = E = {d['size']}", "",
                  "| preset | " + " | ".join(d["presets"][next(iter(d["presets"]))]["final"]) + " | epochs to converge |",
                  "|---|" + "---|" * (len(d["presets"][next(iter(d["presets"]))]["final"]) + 1)]
        for preset, e in d["presets"].items():
            conv = ", ".join(f"{t} {n}" for t, n in e["epochs_to_converge"].items())
            lines.append(f"| {preset} | " + " | ".join(f"{v:.2f}" for v in e["final"].values()) + f" | {conv} |")
        lines.append("")
        for preset, e in d["presets"].items():
            f = e["final"]
            red = {b: 1 - f["mlp"] / f[b] for b in BASELINE_NAMES}
            for b_name, r in red.items():
                claims.append((f"Fig. {part[3:]} U=E={d['size']} {preset}: >= 30 % below {b_name}",
                               f"MLP {f['mlp']:.2f} vs {f[b_name]:.2f}: {100 * r:+.0f} %", _mark(r >= 0.30)))
            claims.append((f"Fig. {part[3:]} U=E={d['size']} {preset}: gap to the oracle (not in the paper)",
                           f"MLP {100 * (f['mlp'] / f['oracle'] - 1):.1f} %"
                           + (f", VQC {100 * (f['vqc'] / f['oracle'] - 1):.1f} %" if "vqc" in f else ""), "-"))
            paper_conv = {("fig4", "energy"): 50, ("fig4", "delay"): 100, ("fig4", "balanced"): 100}.get(
                (part, preset), 200)
            n = e["epochs_to_converge"]["mlp"]
            epochs = len(e["curves"]["mlp"][0])
            verdict = (_mark(n <= 1.5 * paper_conv) if epochs >= paper_conv
                       else f"not comparable: {epochs} epochs trained")
            claims.append((f"Fig. {part[3:]} U=E={d['size']} {preset}: MLP converges in about {paper_conv} epochs",
                           f"{n} of {epochs} epochs to stay within 10 % of the final cost", verdict))
            if "vqc" in e["epochs_to_converge"]:
                nv = e["epochs_to_converge"]["vqc"]
                claims.append((f"Fig. {part[3:]} U=E={d['size']} {preset}: VQC converges faster than MLP, "
                               "without loss of performance",
                               f"VQC {nv} vs MLP {n} epochs; held-out VQC {f['vqc']:.2f} vs MLP {f['mlp']:.2f}",
                               _mark(nv < n and f["vqc"] <= 1.02 * f["mlp"])))
    for part, (field, label, _, _) in SWEEPS.items():
        if part not in results:
            continue
        d = results[part]
        lines += [f"## Fig. {part[3:]}: final cost vs {label}", "",
                  f"| {field} | " + " | ".join(d["cost"]) + " |", "|---|" + "---|" * len(d["cost"])]
        for i, v in enumerate(d["values"]):
            lines.append(f"| {v} | " + " | ".join(f"{d['cost'][p][i]:.2f}" for p in d["cost"]) + " |")
        lines.append("")
        c = np.array(d["cost"]["mlp"])
        o = np.array(d["cost"]["oracle"])
        rel = (c[-1] - c[0]) / c[0]
        if part == "fig7":
            claims.append(("Fig. 7: cost falls as the edge CPU speed grows", f"MLP {c[0]:.1f} -> {c[-1]:.1f} "
                           f"({100 * rel:+.0f} %); oracle {o[0]:.1f} -> {o[-1]:.1f}", _mark(rel < -0.05)))
        elif part == "fig8":
            spread = (c.max() - c.min()) / c.mean()
            claims.append(("Fig. 8: cost nearly flat in the number of qubits",
                           f"MLP spread {100 * spread:.1f} % of its mean; oracle {o.min():.1f}-{o.max():.1f}",
                           _mark(spread < 0.10)))
        else:
            r = np.array(d["cost"]["random_offloading"])
            rel_o = (o[-1] - o[0]) / o[0]
            claims.append(("Fig. 9: cost rises with qubit quality (t1)",
                           f"MLP {c[0]:.1f} -> {c[-1]:.1f} ({100 * rel:+.1f} %); random_offloading {r[0]:.1f} -> "
                           f"{r[-1]:.1f}; oracle {o[0]:.1f} -> {o[-1]:.1f} ({100 * rel_o:+.1f} %)",
                           _mark(rel > 0.01) + ("" if rel_o > 0.01 else
                                                " for the learned policy; the optimum stays flat (it avoids the QPU)")))
    if "fig10" in results:
        d = results["fig10"]
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
    lines += ["## Paper claim vs this run", "", "| claim | this run | verdict |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in claims]
    if rc.quick_mode:
        lines += ["", "Quick mode trains for a few short epochs only: the verdicts above describe this "
                  "smoke-scale run, not the paper's settings (run `meqc reproduce` without --quick for those)."]
    return "\n".join(lines) + "\n"
