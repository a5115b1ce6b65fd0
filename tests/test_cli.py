"""The `meqc` command line: the demo runs, bad arguments give one line and exit status 2."""

import subprocess
import sys

import pytest

from meqc_jax.cli import main


def test_demo_runs_and_prints_breakdown(capsys):
    assert main(["demo", "--users", "3", "--servers", "2", "--slots", "2", "--envs", "8", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "cost C" in out and "QPU share" in out and "MEQCEnv(U=3, E=2" in out


@pytest.mark.parametrize("args, field", [
    (["demo", "--users", "0"], "--users"),
    (["demo", "--servers", "abc"], "--servers"),
    (["demo", "--preset", "fast"], "--preset"),
    (["demo", "--slots", "-3"], "--slots"),
    (["reproduce", "--quick", "--workers", "0"], "--workers"),
    (["train", "--policy", "vqc"], "--torso vqc"),  # renamed: the refusal names the new flag
])
def test_bad_arguments_one_line_no_traceback(args, field):
    res = subprocess.run([sys.executable, "-m", "meqc_jax.cli", *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("meqc") and "error" in last and field in last


@pytest.mark.parametrize("command", [["evaluate", "--slots", "4"], ["train", "--epochs", "1"], ["reproduce", "--quick"]])
def test_unwritable_out_is_one_line_before_anything_runs(command, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main([*command, "--out", str(blocker / "run")]) == 2  # in-process: nothing was compiled before
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out=" in err[0] and "cannot write there" in err[0]


def test_progress_bar_prints_nothing_off_a_terminal(capsys):
    from meqc_jax.progress import ProgressBar

    bar = ProgressBar(True, 3)  # pytest captures stdout: not a terminal
    for i in range(3):
        bar.advance(f"step {i}")
    bar.close()
    assert capsys.readouterr().out == ""


def test_compile_cache_folder_per_machine_and_off(tmp_path, monkeypatch, capsys):
    from meqc_jax import compilation

    key = compilation.machine_key()
    assert key.count("-") >= 1 and len(key.split("-")[-1]) == 12
    monkeypatch.setenv(compilation.CACHE_ENV, "off")
    assert compilation.enable_persistent_cache() is None
    monkeypatch.delenv(compilation.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compilation.default_cache_dir() == str(tmp_path / "meqc_jax" / "xla" / key)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["--compile-cache", str(blocker / "c"), "demo"]) == 2
    assert "--compile-cache=" in capsys.readouterr().err.strip().splitlines()[-1]


def test_evaluate_on_a_dynamic_scenario_lists_the_policies_that_apply(tmp_path, capsys):
    import json

    assert main(["evaluate", "--scenario", "MEQC-Queues-v0", "--policies", "oracle", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "oracle is invalid with dynamics" in err[0] and "lyapunov" in err[0]
    out = tmp_path / "ev"
    assert main(["evaluate", "--scenario", "MEQC-Sustainable-v0", "--users", "2", "--servers", "2", "--slots", "4",
                 "--envs", "2", "--no-progress", "--out", str(out)]) == 0
    summary = json.load(open(out / "summary.json"))
    assert summary["policies"] == ["local", "random_offloading", "random_partitioning", "greedy", "lyapunov"]


def test_set_overrides_any_field_and_refuses_bad_ones_in_one_line(capsys, tmp_path):
    import json

    assert main(["evaluate", "--set", "t1_ms=10", "--set", "f_edge_ghz=20", "--users", "3", "--servers", "2",
                 "--policies", "local", "--envs", "2", "--slots", "2", "--no-progress", "--out", str(tmp_path)]) == 0
    c = json.loads((tmp_path / "summary.json").read_text())["config"]
    assert c["t1_ms"] == 10.0 and c["f_edge_choices_ghz"] == [20.0] and c["num_users"] == 3
    capsys.readouterr()
    for bad, text in ((["--set", "t1_ms=x"], "t1_ms='x' is invalid"), (["--set", "nope=1"], "'nope' is unknown"),
                      (["--set", "t1_ms=-1"], "SystemConfig.t1_ms=-1.0 is invalid")):
        assert main(["evaluate", *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert text in err and "\n" not in err, err


def test_info_says_what_it_runs_on_in_one_screen_and_as_json(tmp_path, capsys):
    import json

    assert main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) <= 24 and any(line.startswith("backend: cpu: ") for line in lines)
    assert any(line.startswith("  device 0: ") and "memory" in line for line in lines)
    assert any(line.startswith("versions: jax ") and "pennylane" in line for line in lines)
    assert any(line.startswith("extras: ") and "cuda12" in line for line in lines)
    assert main(["info", "--json", "--out", str(tmp_path / "info.json")]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == json.loads((tmp_path / "info.json").read_text())
    assert shown["backend"] == "cpu" and shown["device_count"] == len(shown["devices"]) >= 1
    assert shown["process_count"] == 1 and shown["devices"][0]["memory_bytes"] > 0
    assert set(shown["extras"]) >= {"test", "bench", "cuda12", "tpu"} and shown["extras"]["test"]["installed"]
    assert shown["compile_cache"]["folder"] is None  # the tests keep the cache off (conftest)
