"""Reproduce the paper's experiments (Section V, Figs. 4-9) plus a QPU map (Fig. 10), one command.

One module per figure family (`training`: Figs. 4-6, `sweeps`: 7-9, `qpu_map`: 10), each with the
part's run (data, CSV, plot) and its report section, registered in `parts`; `report` holds the
prose around them and `common` the settings (`ReproduceConfig`) and training helpers.

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

import json
import os
import time

from meqc_jax.compilation import CompileCounter
from meqc_jax.experiments.common import PRESETS, ReproduceConfig, device_description, epochs_to_converge
from meqc_jax.experiments.parts import PART_LIST, PARTS, PARTS_BY_NAME, Part
from meqc_jax.experiments.report import make_report
from meqc_jax.io import atomic_write_json, atomic_write_text


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
        with CompileCounter() as compiles:
            data = PARTS_BY_NAME[part].run(part, rc, out, progress)
        data["wall_s"] = time.perf_counter() - t0
        data["compile"] = compiles.as_dict()  # XLA programs compiled by the part, and the seconds it took
        data["device"] = device_description()
        atomic_write_json(path, data)  # last: marks the part done
        results[part] = data
        log(f"{part}: {data['wall_s']:.1f} s ({compiles.programs} XLA programs compiled in {compiles.seconds:.1f} s, "
            f"running {max(data['wall_s'] - compiles.seconds, 0.0):.1f} s)")
    atomic_write_text(os.path.join(out, "report.md"), make_report(results, rc))
    return results


__all__ = ["PARTS", "PARTS_BY_NAME", "PART_LIST", "PRESETS", "Part", "ReproduceConfig", "device_description",
           "epochs_to_converge", "make_report", "reproduce"]
