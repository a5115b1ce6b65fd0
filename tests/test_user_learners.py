"""Every learner a plug-in: registry entries with their settings and presets, `meqc train --learner` for any of
them (DROO included), a user's learner by module path or entry point, and one-line refusals."""

from __future__ import annotations

import dataclasses
import json

import pytest

from meqc_jax import SystemConfig
from meqc_jax.cli import main
from meqc_jax.config import parse_field
from meqc_jax.learners import LEARNER_NAMES, LearnerSpec, learner_names, learner_spec
from meqc_jax.learners.ppo import HPARAM_SETS, PPOConfig
from meqc_jax.scenarios import scenario_config

TINY_TRAIN = ["--users", "3", "--servers", "2", "--slots-per-epoch", "4", "--eval-slots", "8", "--no-progress"]


def test_each_registry_entry_carries_its_settings_class_and_presets():
    paper, queues = scenario_config("MEQC-Paper-v0"), scenario_config("MEQC-Queues-v0")
    for name in LEARNER_NAMES:
        spec = learner_spec(name)
        assert isinstance(spec, LearnerSpec) and spec.name == name and spec.presets and spec.summary
        assert dataclasses.is_dataclass(spec.config_class) and spec.fields()
        for preset in spec.presets:
            assert isinstance(spec.config(queues, preset), spec.config_class)
    ppo = learner_spec("ppo")
    # the presets are PPOConfig.preset's, field for field (what the reproduction and sweeps trained before)
    for preset in HPARAM_SETS:
        assert ppo.config(paper, preset, epochs=7) == PPOConfig.preset(preset, epochs=7)
    assert ppo.preset_for(paper) == "project" and ppo.preset_for(queues) == "lookahead"
    assert ppo.config(paper).epochs == 250 and ppo.config(paper, torso="vqc").epochs == 125  # the paper's
    assert ppo.config(paper, torso="vqc", epochs=3).epochs == 3


def test_settings_parse_by_their_declared_types():
    assert parse_field(PPOConfig, "hidden", "64/32") == (64, 32)
    assert parse_field(PPOConfig, "shared_params", "true") is True
    assert parse_field(PPOConfig, "shaping_theta", "none") is None and parse_field(PPOConfig, "gamma", "0.9") == 0.9
    for field, text, words in [("epochs", "2.5", "an integer"), ("anneal_lr", "maybe", "true or false"),
                               ("nope", "1", "is unknown")]:
        with pytest.raises(ValueError, match=words) as e:
            parse_field(PPOConfig, field, text)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("args, words", [
    (["train", "--learner", "nope"], "--learner='nope' is invalid: allowed one of ppo, droo"),
    (["train", "--learner", "no_such_module_xyz:Learner"], "cannot be imported"),
    (["train", "--learner", "split_bandit:PHI_GRID"], "expected a meqc_jax.learners.LearnerSpec"),
    (["train", "--learner", "split_bandit:Nothing"], "has no attribute 'Nothing'"),
    (["train", "--learner", "droo", "--reward", "own"], "--reward is invalid with --learner droo"),
    (["train", "--learner", "droo"], "DROO"),  # the paper's model: no contention for it to search
    (["train", "--hparams", "swaps"], "--hparams='swaps' is invalid: allowed one of project, paper, lookahead"),
    (["train", "--set", "learner.nope=1"], "--set field 'nope' is unknown"),
    (["train", "--set", "gamma=high"], "--set gamma='high' is invalid: allowed a number"),
    (["train", "--learner", "split_bandit:SplitBandit", "--set", "epochs=0"], "BanditConfig.epochs=0 is invalid"),
    (["sweep", "--grid", "lam_d=0.2", "--policies", "learner:nope"], "'nope' is invalid"),
    (["reproduce", "--quick", "--learner", "no_such_module_xyz:L"], "cannot be imported"),
    (["reproduce", "--quick", "--policies", "greedy"], "--policies: 'greedy' is invalid"),
    (["reproduce", "--quick", "--policies", "split_bandit:nothing_here"], "has no attribute 'nothing_here'"),
])
def test_a_bad_learner_is_one_line_before_anything_runs(args, words, tmp_path, capsys):
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


def test_droo_trains_from_meqc_train_on_the_contended_scenario(tmp_path):
    out = tmp_path / "droo"
    assert main(["train", "--learner", "droo", "--scenario", "MEQC-Contended-v0", "--hparams", "swaps", "--epochs",
                 "1", "--envs", "4", "--set", "candidates=4", "--set", "hidden=16/16", *TINY_TRAIN,
                 "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["learner"] == "droo" and summary["reference"] == "joint_optimum"
    assert summary["learner_config"]["candidates"] == 4 and summary["learner_config"]["swaps"] is True
    assert summary["learner_config"]["hidden"] == [16, 16] and summary["epochs"] == 1
    # the enumerated optimum is the floor of every policy on the same slots; DROO plays a priced candidate
    assert summary["ratio_to_reference"] >= 1 - 1e-6 and "greedy" in summary["baselines"]
    config = json.loads((out / "config.json").read_text())
    assert config["learner"] == "droo" and config["hparams"] == "swaps"
    assert (out / "metrics.csv").read_text().startswith("seed,epoch,cost,argmax_cost,loss,nonfinite")
    assert (out / "learning_curve.png").exists()


def test_an_installed_package_registers_a_learner_through_an_entry_point(tmp_path, monkeypatch):
    dist = tmp_path / "site" / "my_learners_pkg-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-learners-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[meqc_jax.learners]\nbandit_ep = split_bandit:SplitBandit\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert "bandit_ep" in learner_names()
    spec = learner_spec("bandit_ep")
    assert spec.fields() == ("epochs", "num_envs") and set(spec.presets) == {"default", "fast"}
    out = tmp_path / "ep"
    assert main(["train", "--learner", "bandit_ep", "--epochs", "3", "--envs", "2", *TINY_TRAIN, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["learner"] == "bandit_ep" and summary["epochs"] == 3 and summary["hparams"] == "default"
    assert summary["learner_config"] == {"epochs": 3, "num_envs": 2}


def test_a_learner_class_without_a_spec_still_loads(monkeypatch):
    from split_bandit import SplitBandit

    spec = learner_spec("split_bandit:SplitBandit")
    assert spec.build is SplitBandit and spec.config_class is SplitBandit.config_class
    learner = spec.make(SystemConfig(num_users=2, num_servers=2), spec.config(None, "fast"))
    assert learner.epochs == 2
