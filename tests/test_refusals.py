"""A run refused for memory really ends: the real `meqc` in a child process under a 4 GiB address-space limit
(`ulimit -v`, which `compilation.device_memory_bytes` also honours, so the refusal is the same on any machine)
exits with status 2 within seconds, the one-line refusal naming what to lower is its last line on stderr, there
is no traceback, and its memory never grows: the check runs from shapes, before anything of the run's size is
built or dispatched to JAX (nothing is left running after the refusal)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

LIMIT = 4 * 2**30  # address space: JAX imports and small runs work under it (XLA reserves ~1-2 GiB of it)
PEAK_RSS = 2 * 2**30  # a refused run stays near the interpreter + JAX import (~0.3 GiB measured)
TIMEOUT_S = 45.0  # measured: 3-6 s on 2 busy CPU cores


# The child sets its own limit and reports its own peak (VmHWM at exit, which counts only what it used after
# exec): a preexec_fn would fork this (possibly large) test process, whose pages would count in the child's
# ru_maxrss before exec, and xdist workers grow to several GiB over the suite.
_CHILD = """
import atexit, resource, runpy, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
report = sys.argv.pop(1)


def _peak():
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    with open(report, "w") as f:
        f.write(str(hwm))


atexit.register(_peak)
sys.argv[0] = "meqc"
runpy.run_module("meqc_jax.cli", run_name="__main__", alter_sys=True)
"""


def run_cli(tmp_path, *args):
    """`python -m meqc_jax.cli *args` under the limit; (exit status, stdout, stderr, seconds, peak RSS bytes)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "MEQC_COMPILE_CACHE": "off", "PYTHONUNBUFFERED": "1"}
    out, err, peak = tmp_path / "stdout", tmp_path / "stderr", tmp_path / "peak"
    t0 = time.monotonic()
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen([sys.executable, "-c", _CHILD.format(limit=LIMIT), str(peak), "--compile-cache",
                                 "off", *args], stdout=fo, stderr=fe, env=env, cwd=tmp_path)
        try:
            proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"meqc {' '.join(args)} still ran after {TIMEOUT_S:.0f} s: {err.read_text()[-2000:]}")
    assert peak.exists(), f"the child reported no peak (it did not exit through Python): {err.read_text()[-2000:]}"
    return proc.returncode, out.read_text(), err.read_text(), time.monotonic() - t0, int(peak.read_text())


def assert_refused(tmp_path, args, *named):
    rc, out, err, wall, peak = run_cli(tmp_path, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (rc, err[-3000:])
    assert "Traceback" not in out + err, err[-3000:]
    last = lines[-1]
    assert last.startswith(f"meqc {args[0]}: error: ") and "of memory" in last and "but the device can hold" in last
    assert "needs at least" in last, last  # refused from shapes (a lower bound), before anything was compiled
    for field in named:
        assert field in last, (field, last)
    assert wall < TIMEOUT_S and peak < PEAK_RSS, (wall, peak / 2**30)
    return last


def test_train_too_large_is_refused_and_ends(tmp_path):
    # 1000 x 1000 is accepted by the argument checks; its training state alone is ~28 GiB (a 534 GiB floor)
    last = assert_refused(tmp_path, ["train", "--users", "1000", "--servers", "1000", "--epochs", "1",
                                     "--out", str(tmp_path / "run"), "--no-progress"], "--users", "--envs")
    assert "training 1 run(s) of U=1000, E=1000" in last
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained, nothing written past config.json


def test_evaluate_too_large_is_refused_and_ends(tmp_path):
    # 1000000 instances at U = E = 1000: terabytes of states, refused before any instance is reset
    last = assert_refused(tmp_path, ["evaluate", "--users", "1000", "--servers", "1000", "--envs", "1000000",
                                     "--slots", "1000000", "--policies", "local", "--out", str(tmp_path / "ev"),
                                     "--no-progress"], "--envs", "--users")
    assert "evaluating 1 point(s) x 1000000 instances" in last
    assert not (tmp_path / "ev" / "summary.json").exists()


@pytest.mark.parametrize("policies", ["local", "greedy,ppo"])
def test_sweep_too_large_is_refused_and_ends(tmp_path, policies):
    # 2 points x 100000 instances at U = E = 1000: terabytes of states; with ppo it is refused before training
    last = assert_refused(tmp_path, ["sweep", "--grid", "t1_ms=1,10", "--set", "num_users=1000", "--set",
                                     "num_servers=1000", "--envs", "100000", "--slots", "1", "--policies", policies,
                                     "--out", str(tmp_path / "sweep"), "--no-progress"], "--envs", "--chunk-cells")
    assert "evaluating 2 point(s) x 100000 instances" in last and "instances per point pass this bound" in last
    assert not list((tmp_path / "sweep" / "chunks").glob("*.json"))


def test_reproduce_too_many_seeds_is_refused_before_any_part_starts(tmp_path):
    # Fig. 6 trains 100 runs at U = E = 30 with 64 envs x 500 slots: at least 45 GiB of observations
    last = assert_refused(tmp_path, ["reproduce", "--seeds", "100", "--only", "fig6", "--out", str(tmp_path / "rep"),
                                     "--no-progress"], "--seeds", "allowed 1 to 100")
    assert last.startswith("meqc reproduce: error: reproduce fig6: training 100 run(s)")
    assert not (tmp_path / "rep" / "reproduce_config.json").exists()  # refused before anything was written or spawned


def test_a_cgroup_limit_caps_the_room_less_its_working_set(tmp_path):
    from meqc_jax.compilation import cgroup_room

    (tmp_path / "cgroup").write_text("0::/jobs/a\n")
    base = tmp_path / "fs" / "jobs" / "a"
    base.mkdir(parents=True)
    GiB = 2**30
    (base / "memory.max").write_text(f"{24 * GiB}\n")
    (base / "memory.current").write_text(f"{22 * GiB}\n")  # 22 GiB charged, 18 GiB of it page cache to drop
    (base / "memory.stat").write_text(f"anon {4 * GiB}\nactive_file {1 * GiB}\ninactive_file {17 * GiB}\n")
    room = cgroup_room(str(tmp_path / "cgroup"), str(tmp_path / "fs"))
    assert room == 24 * GiB - (22 - 17) * GiB  # the reclaimable inactive cache is not counted as used
    (base / "memory.stat").unlink()  # no memory.stat: everything charged counts
    assert cgroup_room(str(tmp_path / "cgroup"), str(tmp_path / "fs")) == 2 * GiB
    (base / "memory.max").write_text("max\n")
    assert cgroup_room(str(tmp_path / "cgroup"), str(tmp_path / "fs")) is None
    (tmp_path / "cgroup").write_text("4:memory:/x\n")  # cgroup v1 only: no v2 line, no cap from here
    assert cgroup_room(str(tmp_path / "cgroup"), str(tmp_path / "fs")) is None
