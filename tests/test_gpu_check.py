"""benchmarks/gpu_check.sh cannot rot: its smoke run (tiny sizes, any backend) goes green here, and a stage
that fails makes the script fail."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
FIGURES = {"env_step_user_slots_per_s", "ppo_agent_steps_per_s", "vqc_forward_backward_ms_batch_64",
           "joint_optimum_dp_slots_per_s", "sweep_grid_point_slots_per_s", "quick_reproduction_s"}


def _run(tmp_path, *args, python=sys.executable, timeout=600):
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=python, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    # XLA_FLAGS stays as conftest set it (the lowest backend optimization level): a smoke run checks that every
    # stage runs and reports, not its speed, and compiles faster so
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_the_smoke_run_exits_0_with_every_stage_and_figure(tmp_path):
    res = _run(tmp_path, "--smoke")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    out = json.loads((tmp_path / "gpu_check.json").read_text())
    assert out["smoke"] and out["ok"]
    assert [s["stage"] for s in out["stages"]] == ["device", "scaling", "vqc_64", "train", "joint", "sweep", "quick"]
    assert all(s["exit"] == 0 and s["seconds"] <= s["limit_s"] for s in out["stages"])
    assert set(out["figures"]) >= FIGURES and all(f["value"] > 0 for f in out["figures"].values())
    assert out["device"]["backend"] == "cpu" and out["device"]["devices"][0]["platform"] == "cpu"
    assert "every stage exited 0" in res.stdout


def test_a_failing_stage_makes_the_script_fail(tmp_path):
    res = _run(tmp_path, "--smoke", python="false", timeout=120)  # every stage's Python exits 1 at once
    assert res.returncode == 1 and "FAILED: a stage failed or timed out" in res.stdout
    assert "== device: exit 1" in res.stdout


def test_an_unknown_option_is_one_line(tmp_path):
    res = _run(tmp_path, "--fast", timeout=60)
    assert res.returncode == 2 and res.stderr.strip() == "gpu_check: unknown option '--fast': allowed --smoke, --help"
