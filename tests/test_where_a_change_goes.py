"""docs/architecture.md's "Where a change goes" table, row by row: each change made the way the row says
(a registration at run time stands for the one line the row names) reaches the places the row promises.

A row of the table without a test here fails `test_every_row_of_the_table_has_its_test`."""

from __future__ import annotations

import ast
import csv
import json
import pathlib
import re

import jax.numpy as jnp
import numpy as np

from meqc_jax import SystemConfig
from meqc_jax.baselines import POLICIES, Policy, PolicyEntry, policy_names
from meqc_jax.cli import main
from meqc_jax.evaluate import evaluate
from meqc_jax.learners import LEARNERS, make_learner
from split_bandit import PHI_GRID

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = dict(num_users=3, num_servers=2, slots_per_episode=4)

# the table's rows (their first cell, up to the first parenthesis) -> the tests that exercise them
ROW_TESTS = {
    "a new dynamic": ["test_plugin_dynamic.py::test_it_registers_with_its_own_drop_code_and_observation_field",
                      "test_plugin_dynamic.py::test_a_task_sent_to_a_down_server_drops_and_the_rest_price_as_before",
                      "test_plugin_dynamic.py::test_planners_avoid_a_down_server_and_predict_what_the_env_charges",
                      "test_plugin_dynamic.py::test_it_evaluates_and_trains_with_ppo"],
    "a new scenario": ["test_a_new_scenario_is_listed_and_runs_from_the_cli"],
    "a new baseline": ["test_a_new_baseline_is_listed_and_evaluated_from_the_cli"],
    "a new learner": ["test_a_new_learner_trains_through_fit_and_is_evaluated",
                      "test_a_new_learner_trains_from_meqc_train_and_meqc_sweep",
                      "test_experiments.py::test_a_learner_of_your_own_is_trained_and_reported_by_reproduce"],
    "a new figure": ["test_a_new_figure_is_reproduced_and_reported"],
    "a new CLI option list": ["test_the_cli_holds_no_option_list_of_its_own"],
    "a policy of your own, outside the package": [
        "test_user_policies.py::test_a_module_path_policy_runs_in_evaluate_with_the_numbers_python_gives",
        "test_user_policies.py::test_a_module_path_policy_runs_in_a_sweep_with_each_points_numbers",
        "test_user_policies.py::test_an_installed_package_registers_through_an_entry_point"],
}


def _table_rows() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("## Where a change goes", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| change")]
    return [re.split(r"\s*\(|\s*\|", row[2:], maxsplit=1)[0].strip() for row in rows]


def test_every_row_of_the_table_has_its_test():
    assert _table_rows() == list(ROW_TESTS), "docs/architecture.md's table and ROW_TESTS list different rows"
    here = {n.name for n in ast.parse(pathlib.Path(__file__).read_text()).body if isinstance(n, ast.FunctionDef)}
    for tests in ROW_TESTS.values():
        for test in tests:
            file, _, name = test.rpartition("::")
            names = here if not file else {n.name for n in ast.walk(ast.parse((ROOT / "tests" / file).read_text()))
                                           if isinstance(n, ast.FunctionDef)}
            assert name in names, f"{test} is named in ROW_TESTS but does not exist"


# ---------------------------------------------------------------------------- a new scenario
def test_a_new_scenario_is_listed_and_runs_from_the_cli(tmp_path, capsys):
    from meqc_jax import scenarios

    name = "MEQC-RowTest-v0"
    scenarios.register(name, "three users, two servers, a 3 GHz edge", **SMALL, f_edge_choices_ghz=(3.0,))
    try:
        assert main(["scenarios"]) == 0
        assert name in capsys.readouterr().out
        out = tmp_path / "ev"
        assert main(["evaluate", "--scenario", name, "--policies", "greedy", "--slots", "4", "--envs", "2",
                     "--out", str(out), "--no-progress"]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["scenario"] == name
        assert summary["config"]["num_users"] == 3 and summary["config"]["f_edge_choices_ghz"] == [3.0]
    finally:
        del scenarios.SCENARIOS[name]


# ---------------------------------------------------------------------------- a new baseline
def _half_on_first(config: SystemConfig) -> Policy:
    def act(key, env_state, obs):
        return jnp.zeros(config.num_users, jnp.int32), jnp.full(config.num_users, 0.5)

    return Policy("row_half", act)


def test_a_new_baseline_is_listed_and_evaluated_from_the_cli(tmp_path, monkeypatch):
    monkeypatch.setitem(POLICIES, "row_half", PolicyEntry(_half_on_first, "half of each task on server 0"))
    config = SystemConfig(num_users=3, num_servers=2)  # what `meqc evaluate --users 3 --servers 2` builds
    assert "row_half" in policy_names(config)
    out = tmp_path / "ev"
    assert main(["evaluate", "--users", "3", "--servers", "2", "--policies", "row_half,local", "--slots", "8",
                 "--envs", "2", "--seed", "3", "--out", str(out), "--no-progress"]) == 0
    cli = json.loads((out / "summary.json").read_text())["summary"]
    res = evaluate(config, ["row_half", "local"], num_envs=2, num_slots=4, seed=3)
    for name in ("row_half", "local"):
        assert cli[name]["mean_cost"] == res.summary[name]["mean_cost"]
    assert cli["row_half"]["mean_cost"] != cli["local"]["mean_cost"]


# ---------------------------------------------------------------------------- a new learner
# the learner is a user's module outside the package (tests/split_bandit.py); a LEARNERS line registers it
def test_a_new_learner_trains_through_fit_and_is_evaluated(tmp_path, monkeypatch):
    from meqc_jax.loop import fit

    monkeypatch.setitem(LEARNERS, "row_bandit", "split_bandit:LEARNER")
    config = SystemConfig(**SMALL)
    learner = make_learner("row_bandit", config)
    state, metrics = fit(learner, seeds=[0, 1], chunk=4, ckpt_dir=str(tmp_path / "ckpt"))
    assert np.asarray(metrics.cost).shape == (2, 6) and learner.epochs_done(state) == 6
    # resumed from its last checkpoint: nothing left to train, the same state back
    again, _ = fit(learner, seeds=[0, 1], chunk=4, ckpt_dir=str(tmp_path / "ckpt"))
    np.testing.assert_array_equal(np.asarray(again.mean_cost), np.asarray(state.mean_cost))
    # the learned split, evaluated on the same slots as every constant split it chose among: the cheapest of them
    best = int(np.argmin(np.asarray(state.mean_cost[0])))
    assert best < 4  # phi = 1 (all local) is the dearest split here: it offloads
    consts = [Policy(f"phi{i}", lambda k, s, o, phi=PHI_GRID[i]: learner.action(phi)) for i in sorted({best, 4})]
    res = evaluate(config, [learner.policy(learner.acting_params(state, 0), "row_bandit"), *consts],
                   num_envs=16, num_slots=4, seed=9)
    chosen = res.summary[f"phi{best}"]["mean_cost"]
    assert res.summary["row_bandit"]["mean_cost"] == chosen  # it acts with the split it learned, on the same slots
    assert chosen < res.summary["phi4"]["mean_cost"]


def test_a_new_learner_trains_from_meqc_train_and_meqc_sweep(tmp_path, monkeypatch):
    """The registry line alone: `meqc train --learner` (its preset and `--set`) writes every output, and a sweep
    trains it per cell; its numbers are those of the learner built from Python."""
    monkeypatch.setitem(LEARNERS, "row_bandit", "split_bandit:LEARNER")
    out = tmp_path / "tr"
    assert main(["train", "--learner", "row_bandit", "--hparams", "fast", "--set", "num_envs=4", "--users", "3",
                 "--servers", "2", "--slots-per-epoch", "4", "--eval-slots", "8", "--seeds", "2", "--out", str(out),
                 "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["learner"] == "row_bandit" and summary["hparams"] == "fast" and summary["epochs"] == 2
    assert summary["learner_config"] == {"epochs": 2, "num_envs": 4}
    assert set(summary["policy_cost_per_seed"]) == {"row_bandit_seed0", "row_bandit_seed1"}
    assert summary["reference"] == "oracle" and summary["ratio_to_reference"] >= 1 - 1e-6
    assert (out / "learning_curve.png").exists() and len((out / "metrics.csv").read_text().splitlines()) == 1 + 2 * 2
    # the same learner from Python, on the same held-out slots: the same cost
    from split_bandit import BanditConfig, SplitBandit

    from meqc_jax.evaluate import HELD_OUT_SEED_OFFSET
    from meqc_jax.loop import fit

    learner = SplitBandit(SystemConfig(**SMALL), BanditConfig(epochs=2, num_envs=4))
    state, _ = fit(learner, [0, 1])
    res = evaluate(SystemConfig(**SMALL), [learner.policy(learner.acting_params(state, 0), "b0")], num_envs=8,
                   num_slots=1, seed=HELD_OUT_SEED_OFFSET)
    assert res.summary["b0"]["mean_cost"] == summary["policy_cost_per_seed"]["row_bandit_seed0"]
    sw = tmp_path / "sw"
    assert main(["sweep", "--grid", "lam_d=0.2,0.8", "--set", "num_users=3", "--set", "num_servers=2", "--set",
                 "slots_per_episode=4", "--policies", "learner:row_bandit,local", "--envs", "2", "--slots", "2",
                 "--train-epochs", "2", "--out", str(sw), "--no-progress"]) == 0
    rows = [r for r in csv.DictReader(open(sw / "results.csv")) if r["policy"] == "learner:row_bandit"]
    assert len(rows) == 2 and all(np.isfinite(float(r["mean_cost"])) for r in rows)


# ---------------------------------------------------------------------------- a new figure
def _row_run(name, rc, out, progress):
    from meqc_jax.io import atomic_write_csv

    res = evaluate(SystemConfig(**SMALL), ["local", "greedy"], num_envs=2, num_slots=4, seed=rc.seed)
    costs = {n: res.summary[n]["mean_cost"] for n in ("local", "greedy")}
    atomic_write_csv(f"{out}/{name}.csv", ["policy", "cost"], [[n, f"{c:.6g}"] for n, c in costs.items()])
    return {"costs": costs}


def _row_report(name, data, rc):
    c = data["costs"]
    return ([f"## {name}: greedy against local", "", f"greedy {c['greedy']:.4f}, local {c['local']:.4f}", ""],
            [("greedy costs less than local", f"{c['greedy'] / c['local']:.3f} x", "yes" if c["greedy"] < c["local"]
              else "no")])


def test_a_new_figure_is_reproduced_and_reported(tmp_path, monkeypatch):
    from meqc_jax.experiments import PARTS_BY_NAME, Part

    monkeypatch.setitem(PARTS_BY_NAME, "rowfig", Part("rowfig", "a row test's figure", _row_run, _row_report, 1,
                                                      default=False))
    out = tmp_path / "rp"
    assert main(["reproduce", "--quick", "--only", "rowfig", "--workers", "1", "--out", str(out),
                 "--no-progress"]) == 0
    data = json.loads((out / "rowfig.json").read_text())
    assert set(data["costs"]) == {"local", "greedy"} and (out / "rowfig.csv").exists()
    report = (out / "report.md").read_text()
    assert "## rowfig: greedy against local" in report and "| greedy costs less than local |" in report
    assert "| rowfig |" in report  # its line in "Where the time went"


# ---------------------------------------------------------------------------- a new CLI option list
def test_the_cli_holds_no_option_list_of_its_own():
    """Every `choices=` of the CLI is `list(NAME)` of a name imported from the module that owns the list, so a
    new entry there appears in the CLI (and its --help) by itself."""
    tree = ast.parse((ROOT / "meqc_jax" / "cli.py").read_text())
    imported = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    owned = {"_config"}  # `from meqc_jax import config as _config`: its attributes are the config module's lists
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "choices":
            v = node.value
            assert isinstance(v, ast.Call) and getattr(v.func, "id", None) == "list" and len(v.args) == 1, \
                f"cli.py line {v.lineno}: choices must be list(<an imported registry>), not {ast.unparse(v)}"
            arg = v.args[0]
            root = arg.id if isinstance(arg, ast.Name) else getattr(arg.value, "id", None)
            assert root in imported | owned, f"cli.py line {v.lineno}: {ast.unparse(arg)} is not imported from its owner"
            found.append(ast.unparse(arg))
    assert len(found) >= 8  # scenarios, presets, models, torsos, backends, hparams, rewards, critics, ...
