"""Sweeps: any grid of scenarios x `SystemConfig` fields x policies x seeds, in as few compiled
programs as the shapes allow, sharded, resumable, written as one tidy table.

    spec = SweepSpec(grid=(("f_edge_ghz", (5.0, 10.0, 20.0)), ("t1_ms", (0.1, 1.0, 10.0))), seeds=3)
    result = run(spec, "runs/sweep")          # or: meqc sweep --grid f_edge_ghz=5,10,20 --grid t1_ms=0.1,1,10
    result.rows[0]  # {"scenario", "f_edge_ghz", "t1_ms", "policy", "seed", "mean_cost", "ci95", ...}

How the grid becomes programs. Every grid point is a `SystemConfig` (the scenario's, with the
`fixed` overrides and the point's values). Points that differ only in what `EnvParams` carries (one
server speed, one QPU size, the qubit lifetime, the cost weights: `env.SWEEPABLE_FIELDS`) form one
*group*: they are traced values of one program. A point that changes anything else (sizes,
dynamics, a slot length, ...) opens its own group, i.e. its own program. Within a group, the cells
(point x seed) are cut into chunks of equal size (the last one padded with copies of its final cell,
whose results are dropped), so that every chunk runs the same compiled evaluation program; each
cell draws its slots from its own seed (`evaluate(point_seeds=...)`), so its numbers are those of
evaluating that point alone with that seed (tests/test_sweep.py). `ppo` / `ppo-vqc` train one run
per cell first (all of a chunk's cells vmapped in one training program), then evaluate it.

Scale and safety. The cells x instances of a chunk are split over every visible device (every
host's after `--distributed`; `meqc_jax.sharding`). Each finished chunk is written atomically to
`chunks/` and a rerun with the same spec skips it (kill -9 safe; training checkpoints resume a chunk
cut short). Before the first chunk runs its program is compiled and its memory plan checked; after
it, the rest of the sweep's time is estimated and a sweep longer than `max_hours` is refused unless
confirmed (its finished chunk is kept).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
import tomllib
import typing

import numpy as np

from meqc_jax.baselines import POLICIES, is_user_policy, make_policy, policy_names, user_factory
from meqc_jax.config import SystemConfig, field_types, parse_field, parse_scalar
from meqc_jax.io import atomic_write_csv, atomic_write_json, atomic_write_with
from meqc_jax.learners import learner_spec
from meqc_jax.scenarios import DEFAULT_SCENARIO, SCENARIOS, scenario_config

# Grid names that are not SystemConfig fields: the scenario, and single values of the tuple fields the
# paper's figures sweep (Figs. 7-8): `f_edge_ghz=v` sets every server to v GHz, `phys_qubits=n` every QPU to n.
ALIASES = {"f_edge_ghz": ("f_edge_choices_ghz", lambda v: (float(v),)),
           "phys_qubits": ("phys_qubits_range", lambda v: (int(v), int(v)))}
# policies trained one run per cell, then evaluated: `learner:NAME` (a registered learner, an entry point or a
# user's module.path:attribute, at its default preset) and these short names for PPO's torsos
LEARNED_PREFIX = "learner:"
TRAINED = {"ppo": ("ppo", (("torso", "mlp"),)), "ppo-vqc": ("ppo", (("torso", "vqc"),))}
TRAIN_SEED_OFFSET = 7_919  # training seeds: cell seed + this, so training never sees the evaluated slots
COLUMNS = ("mean_cost", "ci95", "mean_latency", "mean_energy", "quantum_share", "feasible_share", "drop_share",
           "ratio_to_oracle")
SPEC_FILE = "spec.json"


class SweepError(ValueError):
    """A sweep that cannot run as given (one line naming the field and what is allowed)."""


class SweepTooLong(RuntimeError):
    """The sweep would run past `max_hours` (estimated from its first chunk); rerun confirmed to go on."""


_FIELD_TYPES = field_types(SystemConfig)


def grid_fields() -> tuple[str, ...]:
    """Every name a grid may sweep: `scenario`, the aliases, and every SystemConfig field."""
    return ("scenario", *ALIASES, *(f.name for f in dataclasses.fields(SystemConfig)))


def parse_value(field: str, text):
    """One grid value from text (or a TOML value) for `field`, typed as the field is; a tuple field takes
    its elements separated by '/', `dynamics` also 'none' for the paper's model."""
    if field == "scenario":
        if text not in SCENARIOS:
            raise SweepError(f"grid scenario={text!r} is invalid: allowed one of {', '.join(SCENARIOS)}")
        return text
    try:
        if field in ALIASES:
            return parse_scalar(field, text, float if field == "f_edge_ghz" else int, "grid")
        if field not in _FIELD_TYPES:
            raise SweepError(f"grid field {field!r} is unknown: allowed scenario, {', '.join(grid_fields()[1:])}")
        if field == "dynamics" and isinstance(text, str) and text.strip() in ("none", ""):
            return ()
        return parse_field(SystemConfig, field, text, "grid")
    except SweepError:
        raise
    except ValueError as e:
        raise SweepError(str(e)) from None


def parse_grid(items: typing.Sequence[str]) -> tuple[tuple[str, tuple], ...]:
    """`["field=v1,v2", ...]` (the CLI's --grid) as ((field, (values...)), ...), typed and validated."""
    grid = []
    for item in items:
        field, sep, values = item.partition("=")
        field = field.strip()
        if not sep or not field:
            raise SweepError(f"--grid {item!r} is invalid: allowed FIELD=V1,V2,... (e.g. t1_ms=0.1,1,10)")
        vals = [v for v in values.split(",") if v.strip() or field == "dynamics"]
        if not vals:
            raise SweepError(f"--grid {field}= has no values: allowed FIELD=V1,V2,...")
        grid.append((field, tuple(parse_value(field, v.strip()) for v in vals)))
    return tuple(grid)


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """What a sweep runs (validated on construction, before anything is compiled)."""

    grid: tuple[tuple[str, tuple], ...]  # (field, values) in order; the grid is their Cartesian product
    policies: tuple[str, ...] = ("all",)  # registered names, "all" (those that apply per point), ppo, ppo-vqc
    seeds: int = 1
    seed: int = 0
    scenario: str = DEFAULT_SCENARIO  # the base scenario (a `scenario` grid axis overrides it per point)
    fixed: tuple[tuple[str, object], ...] = ()  # SystemConfig overrides for every point (e.g. num_users)
    envs: int = 64  # instances per cell
    slots: int = 50  # slots per instance
    chunk_cells: int | None = None  # cells (point x seed) per compiled call; None: all of a group, up to 256
    train_epochs: int = 20  # ppo / ppo-vqc: epochs of slots_per_episode slots
    train_envs: int = 16
    max_hours: float = 24.0  # a longer estimated sweep is refused unless confirmed

    def __post_init__(self):
        if not self.grid:
            raise SweepError("grid is empty: allowed at least one FIELD=V1,V2,... (e.g. --grid t1_ms=0.1,1,10)")
        names = [f for f, _ in self.grid]
        if len(set(names)) != len(names):
            raise SweepError(f"grid names a field twice: {names}")
        for f, values in self.grid:
            if not isinstance(values, tuple) or not values:
                raise SweepError(f"grid {f} has no values: allowed a non-empty tuple")
            if len(set(map(repr, values))) != len(values):
                raise SweepError(f"grid {f} repeats a value: {values}")
            if f in ALIASES and ALIASES[f][0] in names:
                raise SweepError(f"grid sweeps both {f} and {ALIASES[f][0]}: allowed one of them")
        for name, lo, hi in (("seeds", 1, 1000), ("seed", 0, 2**31 - 2000), ("envs", 1, 10**6), ("slots", 1, 10**7),
                             ("train_epochs", 1, 10**5), ("train_envs", 1, 2**16)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise SweepError(f"SweepSpec.{name}={v!r} is invalid: allowed an integer in [{lo}, {hi}]")
        if self.chunk_cells is not None and (not isinstance(self.chunk_cells, int) or not 1 <= self.chunk_cells <= 10**6):
            raise SweepError(f"SweepSpec.chunk_cells={self.chunk_cells!r} is invalid: allowed an integer in [1, 1000000]")
        if not (isinstance(self.max_hours, (int, float)) and self.max_hours > 0):
            raise SweepError(f"SweepSpec.max_hours={self.max_hours!r} is invalid: allowed a number > 0")
        if self.scenario not in SCENARIOS:
            raise SweepError(f"SweepSpec.scenario={self.scenario!r} is invalid: allowed one of {', '.join(SCENARIOS)}")
        allowed = ("all", *POLICIES, *TRAINED)
        bad = [p for p in self.policies if p not in allowed and not is_user_policy(p) and not is_learned(p)]
        if bad or not self.policies:
            raise SweepError(f"policies {', '.join(bad) or '(none)'} invalid: allowed a comma-separated subset of "
                             + ", ".join(allowed) + ", learner:NAME (a learner trained per cell), or "
                             "module.path:attribute naming a policy factory")
        for p in self.policies:  # a user's module is imported now: a wrong path is refused before anything runs
            try:
                if p.startswith(LEARNED_PREFIX):  # before module paths: `learner:x` is no module `learner`
                    learner_spec(p.removeprefix(LEARNED_PREFIX), "SweepSpec.policies")
                elif is_user_policy(p):
                    user_factory(p, "SweepSpec.policies")
            except ValueError as e:
                raise SweepError(str(e)) from None
        swept = {ALIASES[f][0] if f in ALIASES else f for f in names}
        for f, _ in self.fixed:
            if f not in _FIELD_TYPES:
                raise SweepError(f"fixed field {f!r} is unknown: allowed a SystemConfig field")
            if f in swept:
                raise SweepError(f"field {f} is both swept and fixed: allowed one of them")

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f for f, _ in self.grid)

    def points(self) -> list[dict]:
        """Every grid point as {field: value}, the last field varying fastest."""
        import itertools

        return [dict(zip(self.fields, combo)) for combo in itertools.product(*(v for _, v in self.grid))]

    def config(self, point: dict) -> SystemConfig:
        """The point's configuration (the scenario's, the fixed overrides, the point's values)."""
        over = dict(self.fixed)
        scenario = point.get("scenario", self.scenario)
        for f, v in point.items():
            if f == "scenario":
                continue
            name, convert = ALIASES.get(f, (f, lambda x: x))
            over[name] = convert(v)
        try:
            return scenario_config(scenario, **over)
        except (ValueError, TypeError) as e:
            raise SweepError(f"grid point {point}: {e}") from None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["grid"] = [[f, list(v)] for f, v in self.grid]
        d["fixed"] = [[f, v] for f, v in self.fixed]
        return json.loads(json.dumps(d, default=list))

    def digest(self) -> str:
        """A hash of everything that changes a number (not `max_hours`): a rerun resumes only the same sweep."""
        d = self.to_dict()
        d.pop("max_hours")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def spec_from_toml(path: str, **overrides) -> SweepSpec:
    """A SweepSpec from a TOML file: a `[grid]` table (field = [values]), an optional `[set]` table of fixed
    fields, and optional top-level keys of SweepSpec (policies as a list); `overrides` win over the file."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise SweepError(f"--config {path!r} cannot be read: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise SweepError(f"--config {path!r} is not valid TOML: {e}") from None
    grid_table = data.pop("grid", None)
    if not isinstance(grid_table, dict) or not grid_table:
        raise SweepError(f"--config {path!r} has no [grid] table: allowed [grid] with FIELD = [V1, V2, ...]")
    grid = tuple((f, tuple(parse_value(f, v) for v in (vals if isinstance(vals, list) else [vals])))
                 for f, vals in grid_table.items())
    fixed = tuple((f, parse_value(f, v)) for f, v in data.pop("set", {}).items())
    known = {f.name for f in dataclasses.fields(SweepSpec)} - {"grid", "fixed"}
    bad = sorted(set(data) - known)
    if bad:
        raise SweepError(f"--config {path!r}: unknown key(s) {', '.join(bad)}; allowed [grid], [set], "
                         + ", ".join(sorted(known)))
    if "policies" in data:
        data["policies"] = tuple(data["policies"]) if isinstance(data["policies"], list) else (data["policies"],)
    return SweepSpec(grid=grid, fixed=fixed, **{**data, **{k: v for k, v in overrides.items() if v is not None}})


# ---------------------------------------------------------------------------- planning
@dataclasses.dataclass
class Group:
    """Points of one compiled program: `config` is the first point's, the others differ from it only in
    what EnvParams carries."""

    config: SystemConfig
    points: list[int]  # indices into spec.points()
    policies: tuple[str, ...]
    skipped: tuple[str, ...]  # asked for, but not applicable to this group's model


def plan(spec: SweepSpec) -> tuple[list[dict], list[SystemConfig], list[Group]]:
    """The grid's points, their configurations (all validated) and their grouping into programs."""
    from meqc_jax.env import SWEEPABLE_FIELDS, MEQCEnv

    points = spec.points()
    configs = [spec.config(p) for p in points]
    groups: list[Group] = []
    for i, c in enumerate(configs):
        for g in groups:
            same = all(getattr(c, f.name) == getattr(g.config, f.name) for f in dataclasses.fields(SystemConfig)
                       if f.name not in SWEEPABLE_FIELDS)
            if same:
                try:
                    MEQCEnv(g.config).params_for(c)
                except ValueError:
                    continue
                g.points.append(i)
                break
        else:
            groups.append(Group(c, [i], (), ()))
    for g in groups:
        applicable = policy_names(g.config)
        wanted = []
        for p in spec.policies:
            wanted += list(applicable) if p == "all" else [p]
        wanted = list(dict.fromkeys(wanted))
        g.policies = tuple(p for p in wanted if is_learned(p) or p in applicable or is_user_policy(p))
        g.skipped = tuple(p for p in wanted if p not in g.policies)
        if not g.policies:
            raise SweepError(f"policies {', '.join(spec.policies)}: none applies to the points with "
                             f"dynamics={g.config.dynamics!r}; allowed there: {', '.join(applicable)}, "
                             + ", ".join(TRAINED) + ", learner:NAME")
    return points, configs, groups


def chunk_size(spec: SweepSpec, group: Group) -> int:
    cells = len(group.points) * spec.seeds
    return min(cells, spec.chunk_cells or 256)


# ---------------------------------------------------------------------------- running
@dataclasses.dataclass
class SweepResult:
    rows: list[dict]  # one per grid point x policy x seed
    summary: dict
    out: str


def run(spec: SweepSpec, out: str, progress: bool = False, confirm: bool = False, log=print,
        devices=None) -> SweepResult:
    """Run (or resume) the sweep into `out`; see the module docstring. `confirm`: go on past `max_hours`."""
    import jax

    from meqc_jax.compilation import CompileCounter
    from meqc_jax.evaluate import checked_compiles
    from meqc_jax.progress import ProgressBar

    points, configs, groups = plan(spec)
    os.makedirs(os.path.join(out, "chunks"), exist_ok=True)
    digest = spec.digest()
    spec_path = os.path.join(out, SPEC_FILE)
    if os.path.exists(spec_path):
        with open(spec_path) as f:
            old = json.load(f)
        if old.get("digest") != digest:
            raise SweepError(f"out {out!r} holds another sweep (spec {old.get('digest')}, this one {digest}): allowed "
                             "an empty folder or the same sweep's (to resume)")
    if not os.path.exists(spec_path):
        atomic_write_json(spec_path, {"digest": digest, "spec": spec.to_dict()})

    jobs = []  # (group index, chunk index, cells)
    for gi, g in enumerate(groups):
        cells = [(p, spec.seed + s) for p in g.points for s in range(spec.seeds)]
        size = chunk_size(spec, g)
        for ci in range(math.ceil(len(cells) / size)):
            jobs.append((gi, ci, cells[ci * size:(ci + 1) * size], size))
    n_cells = sum(len(c) for _, _, c, _ in jobs)
    # which chunks are done is decided once, from the folder as it was at the start: in a multi-process run
    # every process then takes the same decisions while process 0 writes the new chunks
    chunk_path = lambda gi, ci: os.path.join(out, "chunks", f"g{gi:03d}-c{ci:05d}.json")  # noqa: E731
    done = {(gi, ci) for gi, ci, _, _ in jobs if os.path.exists(chunk_path(gi, ci))}
    log(f"sweep {digest}: {len(points)} grid point(s) x {spec.seeds} seed(s) = {n_cells} cells in {len(groups)} "
        f"program group(s), {len(jobs)} chunk(s), {spec.envs} instances x {spec.slots} slots per cell -> {out}")

    t_start = time.perf_counter()
    compiles_before = checked_compiles()
    records, ran, run_s = [], 0, []
    bar = ProgressBar(progress, n_cells)
    with CompileCounter() as cc:
        for ji, (gi, ci, cells, size) in enumerate(jobs):
            path = chunk_path(gi, ci)
            if (gi, ci) in done:
                with open(path) as f:
                    rec = json.load(f)
                for row in rec["rows"]:  # JSON has no tuples: tuple-valued fields (dynamics, ranges) as swept
                    for field in spec.fields:
                        if isinstance(row[field], list):
                            row[field] = tuple(tuple(x) if isinstance(x, list) else x for x in row[field])
                records.append(rec)
                bar.advance(f"chunk {ji + 1}/{len(jobs)} (done before)", len(cells))
                continue
            before = cc.seconds
            t0 = time.perf_counter()
            rows = _run_chunk(spec, points, configs, groups[gi], cells, size, os.path.join(out, "checkpoints",
                                                                                                f"g{gi:03d}-c{ci:05d}"),
                              devices)
            wall = time.perf_counter() - t0
            rec = {"group": gi, "chunk": ci, "wall_s": wall, "compile_s": cc.seconds - before, "rows": rows}
            atomic_write_json(path, rec)
            records.append(rec)
            ran += 1
            run_s.append(max(wall - rec["compile_s"], 1e-3))
            bar.advance(f"chunk {ji + 1}/{len(jobs)}", len(cells))
            left = len(jobs) - ji - 1
            if ran == 1 and left:
                estimate = _agreed(float(np.median(run_s)) * left / 3600)
                if estimate > spec.max_hours and not confirm:
                    bar.close()
                    raise SweepTooLong(f"sweep: {n_cells} cells in {len(jobs)} chunks would take about "
                                       f"{estimate + wall / 3600:.1f} h (first chunk {wall:.0f} s), over max_hours="
                                       f"{spec.max_hours:g}: shrink the grid, seeds, envs or slots, or confirm "
                                       "(--yes) to go on; the finished chunk is kept")
    bar.close()
    evaluation_programs = checked_compiles() - compiles_before
    rows = [r for rec in sorted(records, key=lambda r: (r["group"], r["chunk"])) for r in rec["rows"]]
    summary = {
        "digest": digest, "spec": spec.to_dict(), "points": len(points), "cells": n_cells, "rows": len(rows),
        "groups": [{"points": len(g.points), "policies": list(g.policies), "skipped": list(g.skipped),
                    "num_users": g.config.num_users, "num_servers": g.config.num_servers,
                    "dynamics": list(g.config.dynamics)} for g in groups],
        "chunks": len(jobs), "chunks_run": ran, "chunks_resumed": len(jobs) - ran,
        "evaluation_programs_compiled": evaluation_programs, "xla_programs_compiled": cc.programs,
        "compile_s": cc.seconds, "wall_s": time.perf_counter() - t_start,
        "chunk_wall_s": float(sum(r["wall_s"] for r in records)),
        "devices": jax.device_count(), "processes": jax.process_count(),
        "policies": _policy_means(rows),
    }
    write_table(out, spec, rows)
    atomic_write_json(os.path.join(out, "summary.json"), summary)
    plot_fields(out, spec, rows)
    log(f"sweep done: {len(rows)} rows; {evaluation_programs} evaluation program(s) and {cc.programs} XLA programs "
        f"compiled in this process ({cc.seconds:.1f} s), {ran} chunk(s) run, {len(jobs) - ran} resumed, "
        f"{summary['wall_s']:.1f} s")
    return SweepResult(rows, summary, out)


def _agreed(value: float) -> float:
    """Process 0's `value` on every process (a decision all processes of a multi-host run must share)."""
    import jax

    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return float(multihost_utils.broadcast_one_to_all(np.float64(value)))


def _run_chunk(spec: SweepSpec, points, configs, group: Group, cells, size: int, ckpt: str, devices) -> list[dict]:
    """One chunk's cells (padded to `size`) trained where asked and evaluated in one program; its rows."""
    from meqc_jax.env import MEQCEnv
    from meqc_jax.evaluate import check_instances_fit, evaluate
    from meqc_jax.sharding import FAST_COMPILE

    padded = cells + [cells[-1]] * (size - len(cells))
    env = MEQCEnv(group.config)
    params = MEQCEnv.stack_params([env.params_for(configs[p]) for p, _ in padded])
    fit_hint = "--chunk-cells (cells per call) or --envs"
    if any(is_learned(name) for name in group.policies):  # an evaluation too large is refused before training for it
        check_instances_fit(group.config, params, spec.envs, len(group.policies), fit_hint, devices)
    pols = []
    for name in group.policies:
        if is_learned(name):
            pols.append(_train(spec, group.config, name, padded, params, ckpt, devices))
        else:  # a registered name or a user's factory: its rows carry the policy's own name
            pols.append(make_policy(name, group.config))
    res = evaluate(group.config, pols, num_envs=spec.envs, num_slots=spec.slots, env_params=params,
                   point_seeds=[s for _, s in padded], compiler_options=FAST_COMPILE, devices=devices,
                   fit_hint=fit_hint)
    share = res.wall_s["all"] / len(padded)
    rows = []
    for k, (p, s) in enumerate(cells):
        for name in (pol if isinstance(pol, str) else pol.name for pol in pols):
            entry = res.points[k][name]
            row = {"scenario": points[p].get("scenario", spec.scenario), **points[p], "policy": name, "seed": s}
            row.update({c: float(entry[c]) if c in entry else float("nan") for c in COLUMNS})
            row["wall_s"] = share
            rows.append(row)
    return rows


def is_learned(policy: str) -> bool:
    """Whether the sweep trains `policy` per cell (`TRAINED`'s short names, `learner:NAME`)."""
    return policy in TRAINED or policy.startswith(LEARNED_PREFIX)


def _train(spec, config, name, cells, params, ckpt, devices):
    """One run of the learner `name` names per cell (each on its point's EnvParams, its seed + TRAIN_SEED_OFFSET),
    at the learner's default preset with the sweep's epochs and envs where its settings have those fields."""
    from meqc_jax.loop import fit

    learner_name, fixed = TRAINED.get(name, (name.removeprefix(LEARNED_PREFIX), ()))
    try:
        lspec = learner_spec(learner_name, "SweepSpec.policies")
        sizes = {f: v for f, v in (("epochs", spec.train_epochs), ("num_envs", spec.train_envs)) if f in lspec.fields()}
        learner = lspec.make(config, lspec.config(config, None, **dict(fixed), **sizes))
    except ValueError as e:
        raise SweepError(f"policy {name}: {e}") from None
    state, _ = fit(learner, [s + TRAIN_SEED_OFFSET for _, s in cells], chunk=min(10, learner.epochs),
                   ckpt_dir=os.path.join(ckpt, name.replace(":", "_")), env_params=params, devices=devices)
    return learner.sweep_policy(learner.acting_params(state), name)


# ---------------------------------------------------------------------------- outputs
def table_columns(spec: SweepSpec) -> list[str]:
    swept = [f for f in spec.fields if f != "scenario"]
    return ["scenario", *swept, "policy", "seed", *COLUMNS, "wall_s"]


def write_table(out: str, spec: SweepSpec, rows: list[dict]) -> str:
    """`results.csv` (long format, one row per grid point x policy x seed), and `results.parquet` too when
    pyarrow is installed. Returns the CSV's path."""
    cols = table_columns(spec)

    def fmt(v):
        if isinstance(v, float):
            return repr(v)
        if isinstance(v, tuple):
            return "/".join(map(str, v)) if v else "none"
        return str(v)

    path = os.path.join(out, "results.csv")
    atomic_write_csv(path, cols, [[fmt(r[c]) for c in cols] for r in rows])
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return path
    table = pa.table({c: [fmt(r[c]) if isinstance(r[c], tuple) else r[c] for r in rows] for c in cols})
    atomic_write_with(os.path.join(out, "results.parquet"), lambda f: pq.write_table(table, f), suffix=".parquet")
    return path


def read_table(path: str) -> list[dict]:
    """`results.csv` back as rows (numbers as floats), for tests and scripts without pandas."""
    import csv

    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            try:
                r[k] = float(v)
            except ValueError:
                pass
    return rows


def _policy_means(rows: list[dict]) -> dict:
    out = {}
    for name in dict.fromkeys(r["policy"] for r in rows):
        costs = [r["mean_cost"] for r in rows if r["policy"] == name]
        out[name] = {"mean_cost_over_cells": float(np.mean(costs)), "cells": len(costs)}
    return out


def field_curves(spec: SweepSpec, rows: list[dict], field: str) -> dict:
    """Cost vs `field` per policy, the other swept fields at their first value, the mean over seeds with
    the 95 % interval of that mean (the seeds' intervals combined: sqrt(sum ci^2) / seeds)."""
    values = dict(spec.grid)[field]
    first = {f: v[0] for f, v in spec.grid if f != field}
    curves = {}
    for r in rows:
        if any(r[f] != v for f, v in first.items()):
            continue
        curves.setdefault(r["policy"], {}).setdefault(values.index(r[field]), []).append((r["mean_cost"], r["ci95"]))
    out = {}
    for pol, by in curves.items():
        idx = sorted(by)
        mean = [float(np.mean([c for c, _ in by[i]])) for i in idx]
        ci = [float(np.sqrt(np.nansum([h * h for _, h in by[i]])) / len(by[i])) for i in idx]
        out[pol] = {"x": [values[i] for i in idx], "cost": mean, "ci95": ci}
    return out


def plot_fields(out: str, spec: SweepSpec, rows: list[dict]) -> list[str]:
    """One figure per swept field (`fig_<field>.png`): cost vs the field, one line per policy."""
    from meqc_jax.plots import plot_sweep_lines

    paths = []
    for field, values in spec.grid:
        if len(values) < 2:
            continue
        others = ", ".join(f"{f} = {v[0]}" for f, v in spec.grid if f != field) or "no other field swept"
        path = os.path.join(out, f"fig_{field}.png")
        plot_sweep_lines(path, field_curves(spec, rows, field), field, title=f"cost vs {field} ({others})")
        paths.append(path)
    return paths


__all__ = ["ALIASES", "COLUMNS", "SweepError", "SweepResult", "SweepSpec", "SweepTooLong", "TRAINED", "is_learned", "field_curves",
           "grid_fields", "parse_grid", "parse_value", "plan", "plot_fields", "read_table", "run", "spec_from_toml",
           "write_table"]
