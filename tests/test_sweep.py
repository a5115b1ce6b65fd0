"""`meqc sweep` / `meqc_jax.sweep`: grids become few programs, cells equal separate evaluations, the table is
the same on 1 and 4 devices, on two processes (multi-host over loopback), and after a SIGKILL and a rerun."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from meqc_jax import sweep
from meqc_jax.evaluate import evaluate
from meqc_jax.sweep import SweepError, SweepSpec

ROOT = os.path.join(os.path.dirname(__file__), "..")
# The small sweep the subprocess tests share: 2 x 2 points x 2 seeds = 8 cells at U = E = 4, one cell per chunk
# (8 chunks: a kill lands between two of them), every policy that applies plus the oracle.
SMALL = ["--grid", "f_edge_ghz=5,20", "--grid", "lam_d=0.2,0.8", "--set", "num_users=4", "--set", "num_servers=4",
         "--seeds", "2", "--envs", "4", "--slots", "3", "--no-progress"]


def _cli(args, env=None, **kw):
    e = {**os.environ, "JAX_PLATFORMS": "cpu", "MEQC_COMPILE_CACHE": "off", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "meqc_jax.cli", *args], cwd=ROOT, env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _table(out):
    rows = sweep.read_table(os.path.join(out, "results.csv"))
    return sorted(rows, key=lambda r: (r["f_edge_ghz"], r["lam_d"], r["seed"], r["policy"]))


def _same(a, b, rtol=0.0):
    assert len(a) == len(b) and len(a) > 0
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            if k == "wall_s":
                continue
            if isinstance(x[k], float) and rtol:
                assert np.isclose(x[k], y[k], rtol=rtol, atol=0, equal_nan=True), (k, x, y)
            else:
                assert x[k] == y[k] or (x[k] != x[k] and y[k] != y[k]), (k, x, y)


@pytest.fixture(scope="module")
def small_reference(tmp_path_factory):
    """The small sweep, uninterrupted, in one process on one device (the CLI, as a user runs it)."""
    out = str(tmp_path_factory.mktemp("sweep_ref"))
    p = _cli(["sweep", *SMALL, "--chunk-cells", "1", "--out", out])
    log, _ = p.communicate(timeout=600)
    assert p.returncode == 0, log
    return out, log


def test_bad_grids_fail_in_one_line_before_compiling():
    cases = [
        (lambda: sweep.parse_grid(["nonsense=1,2"]), "grid field 'nonsense' is unknown"),
        (lambda: sweep.parse_grid(["t1_ms=1,abc"]), "t1_ms='abc' is invalid: allowed a number"),
        (lambda: sweep.parse_grid(["num_users=2.5"]), "allowed an integer"),
        (lambda: sweep.parse_grid(["t1_ms="]), "has no values"),
        (lambda: sweep.parse_grid(["preset=fast"]), "allowed one of balanced, delay, energy"),
        (lambda: sweep.parse_grid(["scenario=MEQC-Nope-v0"]), "allowed one of MEQC-Paper-v0"),
        (lambda: SweepSpec(grid=()), "grid is empty"),
        (lambda: SweepSpec(grid=(("t1_ms", (1.0, 1.0)),)), "repeats a value"),
        (lambda: SweepSpec(grid=(("t1_ms", (1.0,)),), policies=("greedy", "magic")), "magic"),
        (lambda: SweepSpec(grid=(("t1_ms", (1.0,)),), seeds=0), "SweepSpec.seeds=0 is invalid"),
        (lambda: SweepSpec(grid=(("f_edge_ghz", (5.0,)),), fixed=(("f_edge_choices_ghz", (9.0,)),)),
         "f_edge_choices_ghz is both swept and fixed"),
        (lambda: sweep.plan(SweepSpec(grid=(("t1_ms", (1.0, -2.0)),))), "SystemConfig.t1_ms=-2.0 is invalid"),
    ]
    for make, text in cases:
        with pytest.raises(SweepError) as e:
            make()
        assert text in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_values_are_typed_as_their_fields_and_groups_follow_shapes():
    grid = sweep.parse_grid(["num_users=2,3", "f_edge_ghz=5,10", "dynamics=none,queues",
                             "phys_qubits_range=1000/1000", "oracle_lp_first=true"])
    assert dict(grid) == {"num_users": (2, 3), "f_edge_ghz": (5.0, 10.0), "dynamics": ((), ("queues",)),
                          "phys_qubits_range": ((1000, 1000),), "oracle_lp_first": (True,)}
    spec = SweepSpec(grid=grid, policies=("all",), fixed=(("num_servers", 2),))
    points, configs, groups = sweep.plan(spec)
    assert len(points) == 8 and configs[0].f_edge_choices_ghz == (5.0,)
    # sizes and dynamics change shapes: 2 x 2 groups, each holding both speeds (a traced value)
    assert [len(g.points) for g in groups] == [2, 2, 2, 2]
    paper = [g for g in groups if not g.config.dynamics]
    dyn = [g for g in groups if g.config.dynamics]
    assert all("oracle" in g.policies and "lyapunov" not in g.policies for g in paper)
    assert all("lyapunov" in g.policies and "oracle" not in g.policies for g in dyn)


def test_toml_spec(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('policies = ["greedy", "oracle"]\nseeds = 2\n[grid]\nt1_ms = [0.1, 1]\nlam_d = [0.3]\n'
                    '[set]\nnum_users = 3\n')
    spec = sweep.spec_from_toml(str(path), envs=5)
    assert spec.grid == (("t1_ms", (0.1, 1.0)), ("lam_d", (0.3,))) and spec.fixed == (("num_users", 3),)
    assert spec.policies == ("greedy", "oracle") and spec.seeds == 2 and spec.envs == 5
    (tmp_path / "bad.toml").write_text("bogus = 3\n[grid]\nt1_ms = [1]\n")
    with pytest.raises(SweepError, match="unknown key"):
        sweep.spec_from_toml(str(tmp_path / "bad.toml"))


def test_a_3x3x3_grid_with_3_seeds_is_one_program_and_equals_each_point_alone(tmp_path):
    spec = SweepSpec(grid=(("f_edge_ghz", (5.0, 10.0, 20.0)), ("t1_ms", (0.1, 1.0, 10.0)), ("lam_d", (0.1, 0.5, 0.9))),
                     seeds=3, envs=3, slots=2)
    res = sweep.run(spec, str(tmp_path), log=lambda *_: None)
    s = res.summary
    assert s["cells"] == 81 and s["chunks"] == 1 and s["evaluation_programs_compiled"] == 1
    assert s["rows"] == 81 * 5 and {r["policy"] for r in res.rows} == {"local", "random_offloading",
                                                                        "random_partitioning", "greedy", "oracle"}
    assert all(np.isfinite(r["mean_cost"]) and r["ratio_to_oracle"] >= 1 - 1e-6 for r in res.rows)
    for point, seed in (({"f_edge_ghz": 5.0, "t1_ms": 10.0, "lam_d": 0.9}, 1),
                        ({"f_edge_ghz": 20.0, "t1_ms": 0.1, "lam_d": 0.1}, 2)):
        alone = evaluate(spec.config(point), ["local", "random_offloading", "random_partitioning", "greedy", "oracle"],
                         num_envs=3, num_slots=2, seed=seed)
        rows = {r["policy"]: r for r in res.rows if r["seed"] == seed and all(r[f] == v for f, v in point.items())}
        for name, entry in alone.summary.items():
            for col in ("mean_cost", "ci95", "mean_latency", "mean_energy", "quantum_share"):
                assert np.isclose(rows[name][col], entry[col], rtol=1e-5, atol=1e-9), (name, col)
    # the outputs: the table, the summary and a figure per swept field
    table = sweep.read_table(os.path.join(tmp_path, "results.csv"))
    assert len(table) == 81 * 5 and set(table[0]) >= {"f_edge_ghz", "t1_ms", "lam_d", "policy", "seed", "ci95"}
    assert all(os.path.getsize(os.path.join(tmp_path, f"fig_{f}.png")) > 5000 for f in spec.fields)
    # a rerun resumes everything and compiles no evaluation program
    again = sweep.run(spec, str(tmp_path), log=lambda *_: None)
    assert again.summary["chunks_resumed"] == 1 and again.summary["evaluation_programs_compiled"] == 0
    assert again.rows == res.rows


def test_four_devices_give_the_same_table(small_reference, tmp_path):
    ref, log = small_reference
    assert "8 cells in 1 program group(s), 8 chunk(s)" in " ".join(log.split())
    assert "1 evaluation program(s)" in " ".join(log.split())  # 8 chunks, one compile: no retrace per chunk
    p = _cli(["sweep", *SMALL, "--chunk-cells", "4", "--out", str(tmp_path)],
             env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    import json

    with open(tmp_path / "summary.json") as f:
        assert json.load(f)["devices"] == 4
    _same(_table(str(tmp_path)), _table(ref), rtol=1e-6)


def test_sigkill_mid_run_then_rerun_gives_the_same_table(small_reference, tmp_path):
    ref, _ = small_reference
    chunks = tmp_path / "chunks"
    p = _cli(["sweep", *SMALL, "--chunk-cells", "1", "--out", str(tmp_path)])
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and len(list(chunks.glob("g*.json"))) < 2:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    done = len(list(chunks.glob("g*.json")))
    assert 2 <= done < 8, f"killed after {done} of 8 chunks"
    assert not (tmp_path / "results.csv").exists()
    p = _cli(["sweep", *SMALL, "--chunk-cells", "1", "--out", str(tmp_path)])
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    assert f"{8 - done} chunk(s) run, {done} resumed" in " ".join(out.split())
    _same(_table(str(tmp_path)), _table(ref))
    # another sweep is refused in the same folder
    p = _cli(["sweep", *SMALL[:-1], "--seeds", "3", "--out", str(tmp_path)])
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 2 and "holds another sweep" in " ".join(out.split())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_form_one_mesh_and_give_the_same_table(small_reference, tmp_path):
    ref, _ = small_reference
    port = _free_port()
    procs = [_cli(["--distributed", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id",
                   str(i), "sweep", *SMALL, "--chunk-cells", "4", "--out", str(tmp_path)]) for i in range(2)]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=400)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    assert all(p.returncode == 0 for p in procs), logs
    import json

    with open(tmp_path / "summary.json") as f:
        s = json.load(f)
    assert s["processes"] == 2 and s["devices"] == 2
    _same(_table(str(tmp_path)), _table(ref), rtol=1e-6)


def test_sweeps_notebook_loads_and_plots_the_table(small_reference, tmp_path):
    from test_notebooks import run_notebook

    ref, _ = small_reference
    nb = run_notebook("sweeps.ipynb", {"MEQC_SWEEP_DIR": ref}, str(tmp_path))
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert len(images) == 1 and "swept: ['f_edge_ghz', 'lam_d']" in text


def test_a_chunk_too_large_or_a_sweep_too_long_is_refused_and_keeps_what_ran(tmp_path, monkeypatch):
    from meqc_jax import compilation
    from meqc_jax.compilation import ProgramTooLarge

    base = dict(grid=(("t1_ms", (0.1, 1.0, 10.0)),), policies=("local", "greedy"), envs=2, slots=2,
                fixed=(("num_users", 3), ("num_servers", 3)), chunk_cells=1)
    monkeypatch.setattr(compilation, "device_memory_bytes", lambda device=None: 1024)
    with pytest.raises(ProgramTooLarge, match=r"evaluating 1 point\(s\) x 2 instances.*lower --chunk-cells"):
        sweep.run(SweepSpec(**base), str(tmp_path / "mem"), log=lambda *_: None)
    monkeypatch.undo()
    with pytest.raises(sweep.SweepTooLong, match=r"3 cells in 3 chunks would take about .* max_hours=1e-09"):
        sweep.run(SweepSpec(**base, max_hours=1e-9), str(tmp_path / "long"), log=lambda *_: None)
    assert len(list((tmp_path / "long" / "chunks").glob("*.json"))) == 1  # the first chunk is kept
    res = sweep.run(SweepSpec(**base, max_hours=1e-9), str(tmp_path / "long"), confirm=True, log=lambda *_: None)
    assert res.summary["chunks_resumed"] == 1 and res.summary["chunks_run"] == 2 and len(res.rows) == 6


def test_ppo_trains_per_cell_then_is_evaluated_and_tuple_fields_resume(tmp_path):
    spec = SweepSpec(grid=(("dynamics", ((), ("queues",))), ("lam_d", (0.2, 0.8))), policies=("greedy", "ppo"),
                     fixed=(("num_users", 2), ("num_servers", 2), ("slots_per_episode", 4)), envs=2, slots=3,
                     train_epochs=1, train_envs=2)
    res = sweep.run(spec, str(tmp_path), log=lambda *_: None)
    assert res.summary["evaluation_programs_compiled"] == 2  # with and without queues: two shapes
    assert {(r["dynamics"], r["policy"]) for r in res.rows} == {(d, p) for d in ((), ("queues",))
                                                                for p in ("greedy", "ppo")}
    assert all(np.isfinite(r["mean_cost"]) for r in res.rows)
    assert os.path.isdir(tmp_path / "checkpoints" / "g000-c00000" / "ppo")
    table = sweep.read_table(os.path.join(tmp_path, "results.csv"))
    assert {r["dynamics"] for r in table} == {"none", "queues"}
    again = sweep.run(spec, str(tmp_path), log=lambda *_: None)
    assert again.summary["chunks_resumed"] == 2
    _same(again.rows, res.rows)


def test_cli_toml_with_a_grid_flag_added(tmp_path):
    import json

    from meqc_jax.cli import main

    cfg = tmp_path / "s.toml"
    cfg.write_text('policies = ["local", "greedy"]\nenvs = 2\nslots = 2\n[grid]\nt1_ms = [0.1, 1]\n'
                   '[set]\nnum_users = 3\nnum_servers = 2\n')
    out = tmp_path / "out"
    assert main(["sweep", "--config", str(cfg), "--grid", "lam_d=0.2,0.8", "--seeds", "2", "--no-progress",
                 "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["spec"]["grid"] == [["t1_ms", [0.1, 1.0]], ["lam_d", [0.2, 0.8]]] and s["spec"]["seeds"] == 2
    assert s["rows"] == 4 * 2 * 2 and s["groups"][0]["num_users"] == 3
    assert main(["sweep", "--config", str(tmp_path / "missing.toml")]) == 2
