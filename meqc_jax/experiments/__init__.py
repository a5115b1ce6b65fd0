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
slots (common random numbers) in one program per policy. Parts that share programs run in one
process (`Part.group`: Fig. 4 and the sweeps train at the same size; learners that differ only in
their number of epochs share their compiled programs), and with parallel workers and the persistent
compilation cache a second worker compiles what a part reaches late (`Part.precompile`: Fig. 4's
VQC training) while the part trains its first learner.
"""

from __future__ import annotations

import json
import os
import time

from meqc_jax.compilation import CompileCounter
from meqc_jax.experiments.common import PRESETS, ReproduceConfig, epochs_to_converge
from meqc_jax.experiments.parts import DEFAULT_PARTS, DYNAMICS_PARTS, PART_LIST, PARTS, PARTS_BY_NAME, Part
from meqc_jax.experiments.report import make_report
from meqc_jax.io import atomic_write_json, atomic_write_text
from meqc_jax.sharding import device_description


def run_part(part: str, rc: ReproduceConfig, out: str, progress: bool = False) -> dict:
    """Run one part, time it and count its compiles, write its JSON (last: it marks the part done);
    return its data. Runs in this process or in a worker (`reproduce(workers=...)`)."""
    t0 = time.perf_counter()
    with CompileCounter() as compiles:
        data = PARTS_BY_NAME[part].run(part, rc, out, progress)
    data["wall_s"] = time.perf_counter() - t0
    data["compile"] = compiles.as_dict()  # XLA programs compiled by the part, and the seconds it took
    data["device"] = device_description()
    atomic_write_json(os.path.join(out, f"{part}.json"), data)
    return data


def run_parts(parts: list[str], rc: ReproduceConfig, out: str) -> list[tuple[str, dict | Exception]]:
    """Run `parts` one after another in this process (a worker's job: a group of parts that share compiled
    programs); a part that fails does not stop the next. Returns (part, data or the exception) per part."""
    outcome = []
    for part in parts:
        try:
            outcome.append((part, run_part(part, rc, out)))
        except Exception as e:  # noqa: BLE001 -- handed back to the parent, which reports it
            outcome.append((part, e))
    return outcome


def run_precompile(part: str, rc: ReproduceConfig) -> dict:
    """A worker's job beside the part's own: compile what `part` reaches later (`Part.precompile`) into the
    persistent compilation cache, so that the part's worker loads it instead of compiling. Returns what was
    compiled, the seconds it took and the compile counts."""
    t0 = time.perf_counter()
    with CompileCounter() as compiles:
        what = PARTS_BY_NAME[part].precompile(part, rc)
    return {"what": what, "wall_s": time.perf_counter() - t0, "compile": compiles.as_dict()}


def ahead_of_time(parts: list[str], rc: ReproduceConfig) -> list[str]:
    """The parts with programs another worker can compile ahead (`Part.precompile`; checked without jax)."""
    return [p for p in parts
            if PARTS_BY_NAME[p].precompile is not None and PARTS_BY_NAME[p].precompile(p, rc, dry_run=True)]


def worker_jobs(parts: list[str]) -> list[list[str]]:
    """The parts as jobs for parallel workers: one job per `Part.group` (its parts in order) or per ungrouped
    part, the heaviest job (sum of `Part.weight`) first."""
    jobs: dict = {}
    for part in parts:
        jobs.setdefault(PARTS_BY_NAME[part].group or ("", part), []).append(part)
    return sorted(jobs.values(), key=lambda job: -sum(PARTS_BY_NAME[p].weight for p in job))


def worker_schedule(parts: list[str], ahead: list[str]) -> list[tuple[str, list[str] | str]]:
    """The order parallel workers take their jobs in (each the next when a worker comes free): every job of
    `worker_jobs(parts)` as ("parts", job), each followed by ("precompile", part) for its parts in `ahead`, so
    that the next free worker compiles what a part reaches late while the part starts."""
    order: list[tuple[str, list[str] | str]] = []
    for job in worker_jobs(parts):
        order.append(("parts", job))
        order += [("precompile", part) for part in job if part in ahead]
    return order


def clear_checkpoints(out: str, part: str) -> list[str]:
    """Remove the part's training checkpoints (`checkpoints/<part>` and `checkpoints/<part>-*`); returns them."""
    import shutil

    root = os.path.join(out, "checkpoints")
    gone = [os.path.join(root, d) for d in (sorted(os.listdir(root)) if os.path.isdir(root) else [])
            if d == part or d.startswith(part + "-")]
    for d in gone:
        shutil.rmtree(d)
    return gone


def _start_worker(cache_dir: str | None) -> None:
    """A worker process: the parent's persistent compilation cache (if any), nothing else to set."""
    if cache_dir:
        from meqc_jax.compilation import enable_persistent_cache

        enable_persistent_cache(cache_dir)


def default_workers() -> int:
    """Parts run side by side on a CPU (compiling XLA programs keeps one core busy per process, so a
    second process nearly halves a compile-bound run); one at a time on an accelerator, whose memory
    each process would otherwise claim, and under jax.distributed."""
    import jax

    if jax.default_backend() != "cpu" or jax.process_count() > 1:
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def reproduce(rc: ReproduceConfig, out: str, force: bool = False, parts=DEFAULT_PARTS, progress: bool = False,
              log=print, workers: int = 1) -> dict:
    """Run (or skip, when already done) each part, then write `report.md`. Returns {part: data}.
    A part interrupted before its JSON was written resumes from its checkpoints; `force` redoes the
    named parts from scratch (their checkpoints removed first).

    `workers` > 1 runs the parts in that many fresh processes (spawned, longest job first; the parts of a
    `Part.group` in one process, one after another, sharing their compiled programs; with JAX's persistent
    compilation cache on, a part with `Part.precompile` has the next free worker compile what it reaches later,
    e.g. Fig. 4's VQC training while Fig. 4 trains its MLP, and loads it from the cache); every
    part's numbers are those of a run in this process (each part seeds itself from `rc`); workers draw
    no progress bars (each part still logs one line when it ends). A part that
    fails does not stop the others: their outputs are written, then the first error is raised. Before any part
    starts, the trainings of those to run are checked to fit the device from their sizes (`Part.trainings`,
    `common.check_trainings_fit`): an oversized request is refused at once (`compilation.ProgramTooLarge`)."""
    # the registry is read now, not at import: a part registered after import (a user's, a test's) runs too
    unknown = [p for p in parts if p not in PARTS_BY_NAME]
    if unknown:
        raise ValueError(f"reproduce: parts={unknown!r} are invalid: allowed " + ", ".join(PARTS_BY_NAME))
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"reproduce: workers={workers!r} is invalid: allowed an integer >= 1")
    # every part to run is checked to fit the device, from its sizes, before any starts (or loses its checkpoints)
    from meqc_jax.experiments.common import check_trainings_fit

    for part in parts:
        to_run = force or not os.path.exists(os.path.join(out, f"{part}.json"))
        if PARTS_BY_NAME[part].trainings is not None and to_run:
            check_trainings_fit(part, rc, PARTS_BY_NAME[part].trainings(part, rc))
    os.makedirs(out, exist_ok=True)
    t_start = time.perf_counter()
    atomic_write_json(os.path.join(out, "reproduce_config.json"), rc.to_dict())
    results, todo = {}, []
    for part in PARTS_BY_NAME:
        path = os.path.join(out, f"{part}.json")
        if part not in parts:
            if os.path.exists(path):
                results[part] = json.load(open(path))
            continue
        if os.path.exists(path) and not force:
            results[part] = json.load(open(path))
            log(f"{part}: done already ({path}); skipped (force to redo)")
            continue
        if force:  # redo means from scratch: a finished part's checkpoints would hand back its trained state
            clear_checkpoints(out, part)
        todo.append(part)

    def done(part, data):
        results[part] = data
        c = data["compile"]
        log(f"{part}: {data['wall_s']:.1f} s ({c['programs']} XLA programs compiled in {c['compile_s']:.1f} s, "
            f"running {max(data['wall_s'] - c['compile_s'], 0.0):.1f} s)")

    import jax

    # compiling ahead pays only where a second worker can do it and a persistent cache hands the programs over
    cache_dir = jax.config.jax_compilation_cache_dir
    ahead = ahead_of_time(todo, rc) if workers > 1 and cache_dir else []
    workers = min(workers, len(worker_jobs(todo)) + len(ahead))
    compiled_ahead = {}
    if workers <= 1:
        for part in todo:
            done(part, run_part(part, rc, out, progress))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        first_error = None
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_start_worker, initargs=(cache_dir,)) as pool:
            futures = {}  # future -> the part it compiles ahead for, None for a job of parts
            for kind, what in worker_schedule(todo, ahead):
                if kind == "parts":
                    futures[pool.submit(run_parts, what, rc, out)] = None
                else:
                    futures[pool.submit(run_precompile, what, rc)] = what
            for f in as_completed(futures):
                if futures[f] is not None:  # a compile-ahead job: its failure costs time, never the run
                    part = futures[f]
                    try:
                        info = compiled_ahead[part] = f.result()
                        log(f"{part}: compiled ahead in another worker: {', '.join(info['what'])} "
                            f"({info['compile']['programs']} XLA programs, {info['wall_s']:.1f} s)")
                    except Exception as e:  # noqa: BLE001
                        log(f"{part}: compiling ahead failed ({type(e).__name__}: {e}); the part compiles its own")
                    continue
                for part, outcome in f.result():
                    if isinstance(outcome, Exception):  # keep the other parts' outputs; raise the first at the end
                        log(f"{part}: failed: {type(outcome).__name__}: {outcome}")
                        first_error = first_error or outcome
                    else:
                        done(part, outcome)
        if first_error is not None:
            raise first_error
    results = {p: results[p] for p in PARTS_BY_NAME if p in results}
    run = {"wall_s": time.perf_counter() - t_start, "workers": max(workers, 1), "parts": todo,
           "compiled_ahead": compiled_ahead}
    atomic_write_text(os.path.join(out, "report.md"), make_report(results, rc, run))
    return results


__all__ = ["DEFAULT_PARTS", "DYNAMICS_PARTS", "PARTS", "PARTS_BY_NAME", "PART_LIST", "PRESETS", "Part", "ReproduceConfig", "clear_checkpoints", "default_workers",
           "device_description", "epochs_to_converge", "make_report", "ahead_of_time", "reproduce", "run_part",
           "run_parts", "run_precompile", "worker_jobs", "worker_schedule"]
