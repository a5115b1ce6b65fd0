"""The prose of report.md: the settings line, each part's section (from the parts registry) and the
table of the paper's claims against this run."""

from __future__ import annotations

from meqc_jax.experiments.common import ReproduceConfig
from meqc_jax.experiments.parts import DEFAULT_PARTS, PARTS_BY_NAME
from meqc_jax.sharding import device_description


def make_report(results: dict, rc: ReproduceConfig, run: dict | None = None) -> str:
    """`report.md`: settings, a section per finished part, and "paper claim vs this run". `run` (from
    `reproduce`): {"wall_s": the run's wall seconds, "workers": its processes, "parts": the parts it ran,
    "compiled_ahead": {part: `run_precompile`'s record} (optional)}."""
    lines = ["# Reproduction of the paper's experiments", ""]
    walls = sum(r.get("wall_s", 0.0) for r in results.values())
    device = next((r["device"] for r in results.values() if "device" in r), None) or device_description()
    head = f"Mode: {'quick' if rc.quick_mode else 'full'}; device: {device}; "
    if run and run.get("parts"):
        head += (f"this run took {run['wall_s']:.0f} s of wall time for {len(run['parts'])} part(s) in "
                 f"{run['workers']} process(es); the parts' own times, summed: {walls:.0f} s.")
    else:
        head += f"wall time of the parts in this folder: {walls:.0f} s."
    if not set(results) & set(DEFAULT_PARTS):  # only opt-in parts: each states its own settings
        lines += [head + " The settings of each part are stated in its section.", ""]
    else:
        lines += [head + f" Settings: seeds {rc.seeds}, epochs {rc.epochs_mlp} (MLP) / {rc.epochs_vqc} "
                  f"(VQC)" + ("" if rc.epochs_sweep in (None, rc.epochs_mlp) else f" / {rc.epochs_sweep} (sweeps)")
                  + ("" if rc.epochs_large in (None, rc.epochs_mlp) else f" / {rc.epochs_large} (U = E = "
                     + " and ".join(map(str, rc.sizes[1:])) + ")")
                  + f" of {rc.slots_per_epoch} slots x {rc.envs} environments, PPO with {rc.update_epochs} passes of "
                  f"{rc.minibatches} minibatches at lr {rc.lr:g}, MLP torsos {' x '.join(map(str, rc.hidden))}"
                  + (", one actor-critic shared by all devices (the paper: one per device)" if rc.shared_params else "")
                  + f"; held-out evaluation {rc.eval_envs} x {rc.eval_slots} slots per run"
                  + (" at U = E = " + str(rc.sizes[0]) + " and the same user-slots at the larger sizes"
                     if rc.eval_same_user_slots else "")
                  + " (paired with the baselines and the oracle"
                  + (f"; the two random baselines, the noisiest costs, on {rc.eval_random_factor} x as many instances"
                     if rc.eval_random_factor > 1 else "")
                  + (f"; the learned policies on {rc.eval_learned_factor} x as many" if rc.eval_learned_factor > 1 else "")
                  + ("; the shared instances among them, and their ratios to the oracle on those"
                     if max(rc.eval_random_factor, rc.eval_learned_factor) > 1 else "")
                  + "). Costs are the mean system cost per slot (Eq. 12), "
                  "with their 95 % intervals.", ""]
    claims = []
    for part in PARTS_BY_NAME.values():  # read now: a part registered after import is reported too
        if part.name in results:
            section, part_claims = part.report(part.name, results[part.name], rc)
            lines += section
            claims += part_claims
    timed = [p.name for p in PARTS_BY_NAME.values() if p.name in results and "compile" in results[p.name]]
    if timed:
        lines += ["## Where the time went", ""]
        if run and run.get("workers", 1) > 1:
            lines += [f"The parts ran side by side in {run['workers']} processes sharing the machine's cores, so their "
                      "times overlap and include waiting for a core; a part that reuses programs another part of its "
                      "process compiled (or the persistent compilation cache holds) counts none of them.", ""]
        for name, info in (run or {}).get("compiled_ahead", {}).items():
            lines += [f"While {name} started, another worker compiled its {', '.join(info['what'])} ahead "
                      f"({info['compile']['programs']} XLA programs, {info['wall_s']:.1f} s), which {name} then loaded "
                      "from the persistent compilation cache.", ""]
        lines += ["| part | wall s | XLA programs compiled | compiling s | running s |", "|---|---|---|---|---|"]
        for name in timed:
            r = results[name]
            c = r["compile"]
            lines.append(f"| {name} | {r['wall_s']:.1f} | {c['programs']} | {c['compile_s']:.1f} | "
                         f"{max(r['wall_s'] - c['compile_s'], 0.0):.1f} |")
        lines.append("")
    lines += ["## Paper claim vs this run", "", "| claim | this run | verdict |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in claims]
    if rc.quick_mode:
        lines += ["", "Quick mode trains for a few short epochs only: the verdicts above describe this "
                  "small run, not the paper's settings (run `meqc reproduce` without --quick for those)."]
    return "\n".join(lines) + "\n"
