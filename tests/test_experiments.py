"""`meqc reproduce`: every figure's files on tiny settings, skip/force, the report, sweeps = direct runs."""

import json
import os

import numpy as np
import pytest

from meqc_jax.experiments import (DEFAULT_PARTS, DYNAMICS_PARTS, PARTS, ReproduceConfig, clear_checkpoints,
                                  epochs_to_converge, reproduce)

FILES = ["fig4_training_u3.png", "fig4_training_u3.csv", "fig5_training_u3.png", "fig6_training_u3.csv",
         "fig7_edge_cpu.png", "fig7_edge_cpu.csv", "fig8_qubits.png", "fig8_qubits.csv", "fig9_qubit_quality.png",
         "fig9_qubit_quality.csv", "fig10_qpu_map.png", "fig10_qpu_map.csv", "report.md"]


@pytest.fixture(scope="module")
def tiny_run(tiny_reproduce):
    return tiny_reproduce  # conftest: one tiny reproduction per test session (the notebooks use it too)


def test_every_figure_writes_png_csv_json_and_the_report(tiny_run):
    out, rc, results = tiny_run
    assert set(results) == set(DEFAULT_PARTS) | {"sustainable"}
    for name in FILES + [f"{p}.json" for p in results]:
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    report = open(os.path.join(out, "report.md")).read()
    assert "## Paper claim vs this run" in report and "Fig. 9" in report and "not comparable" in report
    assert "## Where the time went" in report and "ran side by side in 2 processes" in report
    assert f"for {len(results)} part(s) in 2 process(es)" in report  # the run's own wall time, not the parts' sum
    for part in results:  # every part says how many programs it compiled (0: all reused) and for how long
        c = results[part]["compile"]
        assert c["programs"] >= 0 and 0 <= c["compile_s"] <= results[part]["wall_s"]
    assert results["fig4"]["compile"]["programs"] >= 1  # the first part compiles what the others reuse
    fig4 = results["fig4"]["presets"]
    assert set(fig4) == {"balanced", "delay", "energy"} and set(fig4["balanced"]["curves"]) == {"mlp", "vqc"}
    for preset in fig4.values():
        assert np.isfinite(preset["final"]["mlp"]) and preset["final"]["oracle"] <= preset["final"]["greedy"] + 1e-6
    # Fig. 8's sweep over qubits: every point sees the same instances, so `local` is identical
    local = results["fig8"]["cost"]["local"]
    assert local[0] == pytest.approx(local[1], rel=1e-9)
    share = np.asarray(results["fig10"]["models"]["power_time"]["qpu_share"])
    assert share.shape == (2, 2) and np.all((share >= 0) & (share <= 1))


def test_rerun_skips_finished_parts_and_force_redoes_them(tiny_run):
    out, rc, results = tiny_run
    stamps = {p: os.path.getmtime(os.path.join(out, f"{p}.json")) for p in results}
    logs = []
    reproduce(rc, out, parts=("fig10",), log=logs.append)
    assert os.path.getmtime(os.path.join(out, "fig10.json")) == stamps["fig10"]
    assert any("skipped" in line for line in logs)
    reproduce(rc, out, parts=("fig10",), force=True, log=logs.append)
    assert os.path.getmtime(os.path.join(out, "fig10.json")) > stamps["fig10"]
    assert os.path.getmtime(os.path.join(out, "fig9.json")) == stamps["fig9"]
    data = json.load(open(os.path.join(out, "fig10.json")))
    assert data["wall_s"] > 0 and "device" in data
    # the fixture ran fig10 in a worker process, the redo here in this one: the same numbers
    assert data["models"] == results["fig10"]["models"]


def test_force_removes_only_the_parts_own_checkpoints(tmp_path):
    """A forced part starts from scratch: its finished checkpoints would otherwise hand back the trained state."""
    root = tmp_path / "checkpoints"
    for d in ("fig4-mlp", "fig4-vqc", "fig7", "fig10", "fig40-x", "queues-ppo"):
        (root / d / "epoch_000005").mkdir(parents=True)
    gone = clear_checkpoints(str(tmp_path), "fig4")
    assert sorted(os.path.basename(g) for g in gone) == ["fig4-mlp", "fig4-vqc"]
    assert sorted(os.listdir(root)) == ["fig10", "fig40-x", "fig7", "queues-ppo"]
    assert clear_checkpoints(str(tmp_path / "nowhere"), "fig4") == []


def test_the_dynamics_part_compares_every_policy_with_the_clairvoyant_bound(tiny_run):
    out, rc, results = tiny_run
    assert DYNAMICS_PARTS == ("queues", "battery", "drift", "sustainable", "contention") and not set(DYNAMICS_PARTS) & set(DEFAULT_PARTS)
    d = results["sustainable"]
    for name in ("sustainable.png", "sustainable_episode.csv", "sustainable_v.csv", "sustainable_bound.csv"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    assert d["scenario"] == "MEQC-Sustainable-v0" and {"local", "greedy", "ppo"} <= set(d["summary"])
    # V x theta grid: 2 x 1 in the tiny settings, every point evaluated
    assert len(d["v_grid"]) == 2 and d["best_lyapunov"] in d["summary"]
    for name, row in d["summary"].items():
        assert np.isfinite(row["mean_cost"]) and 0 <= row["drop_share"] <= 1, name
        assert 0 <= row["mean_battery_j"] <= 20.0 + 1e-6 and row["mean_cpu_wait_s"] >= 0
    assert len(d["series"]["greedy"]["cost"]) == rc.dynamics.slots
    # the clairvoyant value bounds every online policy from below on the same draws
    for name, gap in d["bound"]["gap"].items():
        assert gap >= 1 - 1e-6, name
    report = open(os.path.join(out, "report.md")).read()
    assert "## MEQC-Sustainable-v0: does looking ahead pay?" in report and "Gap to the clairvoyant bound" in report
    # issue 34: `priced` is trained in every dynamics part with its own budget, from the part's own DPP grid, and is
    # in the clairvoyant comparison; its compute and the part's best policy are reported
    priced = d["learners"]["priced"]
    assert priced["settings"]["epochs"] == rc.dynamics.priced_epochs and priced["settings"]["num_envs"] == rc.dynamics.priced_envs
    assert priced["settings"]["v_grid"] == list(rc.dynamics.v) and priced["settings"]["theta_grid"] == list(rc.dynamics.theta)
    assert priced["compute"]["epochs"] == rc.dynamics.priced_epochs and priced["compute"]["env_steps"] > 0
    assert len(priced["train_curve"]) == rc.dynamics.priced_epochs and "priced" in d["bound"]["gap"]
    assert d["ppo_compute"]["env_steps"] == rc.dynamics.epochs * rc.dynamics.envs * rc.dynamics.slots
    bp = d["best_policy"]
    assert d["summary"][bp["name"]]["mean_cost"] == min(r["mean_cost"] for r in d["summary"].values())
    assert bp["runner_up"] != bp["name"] and np.isfinite(bp["vs_runner_up"]["ci95"])
    assert f"**Best policy here: {bp['name']}**" in report and "ppo: trained" in report


def test_a_learner_of_your_own_is_trained_and_reported_by_reproduce(tiny_run):  # and a policy of your own
    """`meqc reproduce --learner` (ReproduceConfig.learners): a user's learner by module path is trained with the
    part's epochs and environments, evaluated on the part's paired slots and reported; one that does not apply to
    the scenario (DROO needs contention) is named in the report with the reason."""
    out, rc, results = tiny_run
    d = results["sustainable"]
    name = "split_bandit:SplitBandit"
    assert name in d["summary"] and np.isfinite(d["summary"][name]["mean_cost"])
    mine = d["learners"][name]
    assert mine["settings"] == {"epochs": rc.dynamics.epochs, "num_envs": rc.dynamics.envs}
    assert len(mine["train_curve"]) == rc.dynamics.epochs and np.isfinite(mine["vs_best_lyapunov"]["excess"])
    assert "droo" in d["skipped"] and "contention" in d["skipped"]["droo"]
    report = open(os.path.join(out, "report.md")).read()
    assert f"| {name} |" in report and f"{name}: " in report and "Not run here: droo" in report
    # `--policies`: a user's policy factory, evaluated on the same paired slots and reported
    assert np.isfinite(d["policies"]["half_to_0"]["vs_best_lyapunov"]["excess"]) and "| half_to_0 |" in report


def test_each_part_family_owns_its_settings_with_quick_and_full_presets():
    from meqc_jax.experiments.settings import ContentionSettings, DynamicsSettings, MapSettings

    full, quick = ReproduceConfig(), ReproduceConfig.quick()
    for name, kind in (("dynamics", DynamicsSettings), ("contention", ContentionSettings), ("qpu_map", MapSettings)):
        assert getattr(full, name) == kind() and getattr(quick, name) == kind.quick()
        assert kind.quick() != kind()  # the quick preset is smaller
    assert quick.dynamics.epochs == 20 and full.dynamics.epochs == 400 and quick.contention.users == (3, 6, 9)
    # a nested part's settings are saved with the reproduction's (reproduce_config.json)
    d = quick.to_dict()
    assert d["dynamics"]["v"] == [0.3, 3.0, 30.0] and d["contention"]["learners"][-1] == "droo"
    for make, words in [(lambda: DynamicsSettings(warmup=20, horizon=10, slots=25), "DynamicsSettings.horizon="),
                        (lambda: ContentionSettings(learners=("nope",)), "ContentionSettings.learners="),
                        (lambda: MapSettings(envs=0), "MapSettings.envs="),
                        (lambda: ReproduceConfig(dynamics=dict(epochs=3)), "ReproduceConfig.dynamics=")]:
        with pytest.raises(ValueError, match=words) as e:
            make()
        assert "\n" not in str(e.value)


def test_config_validation_and_convergence_measure():
    with pytest.raises(ValueError, match=r"ReproduceConfig.seeds="):
        ReproduceConfig(seeds=0)
    with pytest.raises(ValueError, match=r"ReproduceConfig.vqc_figures="):
        ReproduceConfig(vqc_figures=("fig7",))
    with pytest.raises(ValueError, match=r"ReproduceConfig.minibatches="):
        ReproduceConfig(envs=3, slots_per_epoch=5, minibatches=2)
    with pytest.raises(ValueError, match="parts"):
        reproduce(ReproduceConfig.quick(), "/tmp/unused", parts=("fig11",))
    with pytest.raises(ValueError, match=r"reproduce: workers=0 is invalid"):
        reproduce(ReproduceConfig.quick(), "/tmp/unused", workers=0)
    with pytest.raises(ValueError, match=r"ReproduceConfig.update_epochs="):
        ReproduceConfig(update_epochs=0)
    with pytest.raises(ValueError, match=r"ReproduceConfig.epochs_sweep="):
        ReproduceConfig(epochs_sweep=0)
    curve = np.r_[np.linspace(100, 20, 30), np.full(70, 20.0)]
    assert 25 <= epochs_to_converge(curve) <= 32
    assert epochs_to_converge(np.full(10, 5.0)) == 5  # the first full smoothing window


def test_compile_counter_counts_new_programs_only():
    import jax
    import jax.numpy as jnp

    from meqc_jax.compilation import CompileCounter

    f = jax.jit(lambda x: jnp.tanh(x) * 3.0 + 1.0)
    x = jnp.arange(7.0)
    with CompileCounter() as outer:
        with CompileCounter() as first:
            f(x).block_until_ready()
        with CompileCounter() as again:
            f(x + 1).block_until_ready()  # same shapes: the cached program; `x + 1` may compile its own add
    assert first.programs == 1 and first.seconds > 0
    assert again.programs <= 1 and outer.programs == first.programs + again.programs


def test_the_dynamics_verdict_follows_the_paired_interval_and_only_queues_and_battery_are_judged(tiny_run):
    import copy

    from meqc_jax.experiments import sustainable

    out, rc, results = tiny_run
    d = results["sustainable"]
    verdicts = {}
    for excess, want in ((-0.10, "beats myopia"), (0.10, "PPO costs more than greedy, paired 95 % interval above zero"), (0.0, "ties myopic greedy")):
        v = copy.deepcopy(d)
        v["paired"]["ppo_vs_greedy"] = {"excess": excess, "ci95": 0.02}
        lines, claims = sustainable.report("queues", v, rc)
        verdicts[excess] = " ".join(lines)
        assert want in verdicts[excess] and len(claims) == 2
    assert "Learning beats myopia here (the paired" in verdicts[-0.10]
    # the best-policy line follows its paired interval too
    for excess, want in ((-0.05, "the paired 95 % interval is below zero"), (-0.01, "a tie")):
        v = copy.deepcopy(d)
        v["best_policy"]["vs_runner_up"] = {"excess": excess, "ci95": 0.02}
        assert want in " ".join(sustainable.report("sustainable", v, rc)[0])
    assert sustainable.report("sustainable", d, rc)[1] == [] and sustainable.report("drift", d, rc)[1] == []


def test_paper_figures_notebook_shows_every_figure(tiny_reproduce, tmp_path):
    # here, not in test_notebooks.py: the suite runs a file's tests in one worker (pytest -n, --dist loadfile),
    # so the tiny reproduction is computed once
    from test_notebooks import run_notebook

    out, _, _ = tiny_reproduce
    nb = run_notebook("paper_figures.ipynb", {"MEQC_REPRODUCE_DIR": out}, str(tmp_path))
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 7  # Figs. 4-10


def test_parallel_workers_get_each_group_as_one_job_and_a_failing_part_stops_no_other(monkeypatch):
    import meqc_jax.experiments as ex

    jobs = ex.worker_jobs(list(DEFAULT_PARTS))
    assert ["fig4", "fig7", "fig8", "fig9"] in jobs  # Fig. 4 and the sweeps share programs: one worker, in order
    assert sorted(p for job in jobs for p in job) == sorted(DEFAULT_PARTS)
    weights = [sum(ex.PARTS_BY_NAME[p].weight for p in job) for job in jobs]
    assert weights == sorted(weights, reverse=True)  # the heaviest job starts first

    def fake(part, rc, out, progress=False):
        if part == "fig8":
            raise RuntimeError("boom")
        return {"part": part}

    monkeypatch.setattr(ex, "run_part", fake)
    outcome = ex.run_parts(["fig7", "fig8", "fig9"], None, "/tmp/unused")
    assert [p for p, _ in outcome] == ["fig7", "fig8", "fig9"]
    assert isinstance(outcome[1][1], RuntimeError) and outcome[2][1] == {"part": "fig9"}


def test_fig4s_vqc_training_is_compiled_ahead_for_its_part():
    from meqc_jax.compilation import CompileCounter
    from meqc_jax.experiments import ahead_of_time, common, run_precompile

    rc = ReproduceConfig.quick(epochs_mlp=2, epochs_vqc=2, envs=2, slots_per_epoch=10, minibatches=2, chunk=2,
                               sizes=(3, 3, 3), seeds=1, fast_compile=False)  # the suite's XLA level: faster here
    assert ahead_of_time(["fig4", "fig5", "fig7", "fig10"], rc) == ["fig4"]  # quick mode: the VQC in Fig. 4 only
    assert ahead_of_time(["fig4"], ReproduceConfig.quick(vqc_figures=())) == []
    from meqc_jax.experiments import worker_schedule

    order = worker_schedule(list(DEFAULT_PARTS), ["fig4"])  # the compile-ahead job right after its part's job
    assert order[:2] == [("parts", ["fig4", "fig7", "fig8", "fig9"]), ("precompile", "fig4")]
    assert [w for k, w in order if k == "precompile"] == ["fig4"] and len(order) == len(DEFAULT_PARTS) - 3 + 1
    assert worker_schedule(["fig5", "fig10"], []) == [("parts", ["fig5"]), ("parts", ["fig10"])]
    info = run_precompile("fig4", rc)
    assert info["what"] == ["vqc training"] and info["compile"]["programs"] >= 2 and info["wall_s"] > 0
    # what Fig. 4 then trains (its VQC on the three presets) compiles nothing: in this process the learner holds
    # the programs, in another the persistent compilation cache would
    system = common.system(rc, 3)
    configs = [system.replace(preset=p) for p in ("balanced", "delay", "energy")]
    with CompileCounter() as cc:
        learner, _, metrics, runs, _ = common.train(system, "vqc", rc, configs, None, False)
    assert cc.programs == 0 and learner.compiled_chunks == 1 and len(runs) == 3
    assert np.isfinite(np.asarray(metrics.cost)).all()


def test_the_report_says_what_another_worker_compiled_ahead(tiny_run):
    from meqc_jax.experiments import make_report

    _, rc, results = tiny_run
    ahead = {"what": ["vqc training"], "wall_s": 3.5, "compile": {"programs": 4, "compile_s": 3.0}}
    run = {"wall_s": 12.0, "workers": 2, "parts": list(results), "compiled_ahead": {"fig4": ahead}}
    text = make_report(results, rc, run)
    assert "this run took 12 s of wall time" in text and "in 2 process(es)" in text
    assert ("While fig4 started, another worker compiled its vqc training ahead (4 XLA programs, 3.5 s), which fig4 "
            "then loaded from the persistent compilation cache.") in text
    assert "compiled its" not in make_report(results, rc, {**run, "compiled_ahead": {}})
