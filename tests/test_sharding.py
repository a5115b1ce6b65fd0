"""Sharded runs equal single-device runs (4 CPU devices forced with XLA_FLAGS, in a subprocess)."""

import os
import subprocess
import sys
import textwrap

import jax
import pytest

from meqc_jax import sharding

SCRIPT = textwrap.dedent("""
    import dataclasses, os, shutil, tempfile, warnings
    import jax, numpy as np, pytest
    from meqc_jax import SystemConfig, sharding
    from meqc_jax.env import MEQCEnv
    from meqc_jax.evaluate import evaluate
    from meqc_jax.learners import metrics_table
    from meqc_jax.learners.ppo import PPOConfig, make_train
    from meqc_jax.loop import fit
    from meqc_jax.sharding import FAST_COMPILE

    assert jax.device_count() == 4, jax.devices()
    one = jax.devices()[:1]

    # the factorization: greedy gcd over the axes, a warning when devices stay idle
    assert sharding.batch_mesh(("runs", "envs"), (2, 6)).shape == {"runs": 2, "envs": 2}
    assert sharding.batch_mesh(("runs", "envs"), (8, 4)).shape == {"runs": 4, "envs": 1}
    assert sharding.batch_mesh(("runs", "envs"), (2, 6), one) is None
    with pytest.warns(UserWarning, match="split over 1 of 4 devices"):
        assert sharding.batch_mesh(("runs", "envs"), (3, 5)) is None
    with pytest.warns(UserWarning, match="split over 2 of 4 devices"):
        assert sharding.batch_mesh(("runs", "envs"), (3, 2)).shape == {"runs": 1, "envs": 2}

    # evaluation: [P=2, N=8] instances on a 2 x 2 mesh, every policy incl. the oracle (host MIPs)
    cfg = SystemConfig(num_users=3, num_servers=2, slots_per_episode=8)
    env = MEQCEnv(cfg)
    pts = MEQCEnv.stack_params([env.params_for(dataclasses.replace(cfg, t1_ms=t)) for t in (1.0, 100.0)])
    pols = ["local", "greedy", "random_offloading", "random_partitioning", "oracle"]
    r4 = evaluate(cfg, pols, num_envs=8, num_slots=6, env_params=pts, chunk=3)
    r1 = evaluate(cfg, pols, num_envs=8, num_slots=6, env_params=pts, devices=one, chunk=3)
    from meqc_jax.evaluate import cached_runners
    # two chunks, sharded then unsharded: the runner compiled once per placement, never per chunk
    assert [f._cache_size() for f in cached_runners()] == [2], [f._cache_size() for f in cached_runners()]
    assert r4.placement == {"devices": 4, "mesh": {"points": 2, "envs": 2}, "platform": "cpu"}, r4.placement
    assert r1.placement == {"devices": 1, "mesh": {}}
    for name in r1.per_slot:
        for m, v in r1.per_slot[name].items():
            assert np.array_equal(r4.per_slot[name][m], v), (name, m)  # per-instance numbers: identical

    # training: 2 seeds x 4 envs on a 2 x 2 mesh; minibatch means cross the envs shards, so the
    # order of float sums differs from one device: equal to float32 rounding
    tr = make_train(cfg, PPOConfig(epochs=2, num_envs=4, num_minibatches=4, hidden=(16, 16)),
                    compiler_options=FAST_COMPILE)
    ckpt = tempfile.mkdtemp()
    s4, h4 = fit(tr, [0, 1], chunk=1, ckpt_dir=ckpt)
    assert tr.compiled_chunks == 1  # two chunks on the mesh: one compile
    s1, h1 = fit(tr, [0, 1], chunk=1, devices=one)
    assert s4.obs.sharding.spec == jax.sharding.PartitionSpec("runs", "envs"), s4.obs.sharding
    assert all(leaf.sharding.spec[0] == "runs" for leaf in jax.tree.leaves(s4.params))
    np.testing.assert_allclose(metrics_table(h4), metrics_table(h1), rtol=1e-4, atol=1e-6)
    for a, b in zip(jax.tree.leaves(s4.params), jax.tree.leaves(s1.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    # a sharded checkpoint resumes bit-identically (orbax restores each leaf with its sharding)
    shutil.rmtree(os.path.join(ckpt, "epoch_000002"))
    s4b, h4b = fit(tr, [0, 1], chunk=1, ckpt_dir=ckpt)
    assert np.array_equal(metrics_table(h4b), metrics_table(h4))
    for a, b in zip(jax.tree.leaves(s4b.params), jax.tree.leaves(s4.params)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    print("sharding ok")
""")


def test_sharded_runs_equal_single_device_runs():
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip())
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-c", SCRIPT], check=False, cwd=root, env=env, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert "sharding ok" in res.stdout


def test_single_device_is_unchanged():
    """On one device there is no mesh and `place` returns its input untouched."""
    assert sharding.batch_mesh(("runs", "envs"), (4, 8), jax.devices()[:1]) is None
    x = {"a": jax.numpy.ones((4, 2))}
    assert sharding.place(x, None) is x
    assert sharding.describe(None) == {"devices": 1, "mesh": {}}
    with pytest.raises(ValueError, match="devices is empty"):
        sharding.batch_mesh(("runs",), (4,), [])
    with pytest.raises(ValueError, match="axis names"):
        sharding.batch_mesh(("runs", "envs"), (4,))


def test_only_process_zero_writes(monkeypatch, tmp_path):
    """Multi-host runs: every process computes the results, process 0 alone writes them."""
    from meqc_jax.io import atomic_write_json

    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    atomic_write_json(str(tmp_path / "a.json"), {"x": 1})
    assert not (tmp_path / "a.json").exists()
    monkeypatch.setattr(jax, "process_index", lambda: 0)
    atomic_write_json(str(tmp_path / "a.json"), {"x": 1})
    assert (tmp_path / "a.json").exists()


def test_cli_distributed_flag_reports_a_failed_initialize(monkeypatch, capsys):
    from meqc_jax import cli

    def no_cluster(**kwargs):
        assert kwargs == {"coordinator_address": None, "num_processes": None, "process_id": None}
        raise ValueError("coordinator_address should be defined.")

    monkeypatch.setattr(jax.distributed, "initialize", no_cluster)
    assert cli.main(["--distributed", "demo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["meqc: error: --distributed: jax.distributed.initialize() failed: coordinator_address should be "
                   "defined."]
