"""docs/architecture.md's "Where a change goes" table, row by row: each change made the way the row says
(a registration at run time stands for the one line the row names) reaches the places the row promises.

A row of the table without a test here fails `test_every_row_of_the_table_has_its_test`."""

from __future__ import annotations

import ast
import json
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from meqc_jax import SystemConfig
from meqc_jax.baselines import POLICIES, Policy, PolicyEntry, policy_names
from meqc_jax.cli import main
from meqc_jax.env import MEQCEnv
from meqc_jax.evaluate import evaluate
from meqc_jax.learners import LEARNERS, Learner, make_learner
from meqc_jax.learners.interface import compiled_chunk_program

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
    "a new learner": ["test_a_new_learner_trains_through_fit_and_is_evaluated"],
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
PHI_GRID = jnp.linspace(0.0, 1.0, 5)


@struct.dataclass
class BanditState:
    mean_cost: jnp.ndarray  # [G] running mean slot cost of each constant split phi
    count: jnp.ndarray  # [] batches seen
    key: jnp.ndarray  # raw key data
    epoch: jnp.ndarray  # [] int32


@struct.dataclass
class BanditMetrics:
    best_cost: jnp.ndarray
    nonfinite: jnp.ndarray


class SplitBandit(Learner):
    """A tiny learner written as a user would: every user keeps the same share phi of its task (one of five) and
    offloads the rest to server 0; each epoch prices every phi on a batch of fresh slots (the env's own `price`)
    and keeps running means; it acts with the cheapest."""

    metrics_type = BanditMetrics

    def __init__(self, system: SystemConfig, config=None):
        self.system, self.env = system, MEQCEnv(system)
        self.epochs, self.num_envs = 6, 8
        self.state_batch_axes = BanditState(mean_cost=1, count=1, key=1, epoch=1)
        self.chunk_program = jax.jit(jax.vmap(self.train_chunk, in_axes=(0, None)), static_argnums=1)
        self.chunk_executables: dict = {}

    def action(self, phi):
        return jnp.zeros(self.system.num_users, jnp.int32), jnp.full(self.system.num_users, phi)

    def init(self, key, env_params=None):
        return BanditState(mean_cost=jnp.zeros(PHI_GRID.shape), count=jnp.float32(0.0),
                           key=jax.random.key_data(key), epoch=jnp.int32(0))

    def _epoch(self, state, _):
        key, k_reset, k_price = jax.random.split(jax.random.wrap_key_data(state.key), 3)
        _, envs = jax.vmap(self.env.reset)(jax.random.split(k_reset, self.num_envs))
        price = jax.vmap(lambda k, s, phi: self.env.price(k, s, self.action(phi)).total, in_axes=(0, 0, None))
        costs = jax.vmap(lambda phi: jnp.mean(price(jax.random.split(k_price, self.num_envs), envs, phi)))(PHI_GRID)
        count = state.count + 1.0
        mean = state.mean_cost + (costs - state.mean_cost) / count
        new = BanditState(mean_cost=mean, count=count, key=jax.random.key_data(key), epoch=state.epoch + 1)
        return new, BanditMetrics(best_cost=jnp.min(mean), nonfinite=(~jnp.all(jnp.isfinite(mean))).astype(jnp.float32))

    def train_chunk(self, state, num_epochs):
        return jax.lax.scan(self._epoch, state, None, length=num_epochs)

    def init_batch(self, keys, env_params):
        return jax.vmap(self.init)(keys)

    def compiled_chunk(self, states, num_epochs):
        return compiled_chunk_program(self.chunk_executables, self.chunk_program, states, num_epochs,
                                      "the split bandit", "nothing")

    def epochs_done(self, states):
        return int(np.asarray(states.epoch).reshape(-1)[0])

    def acting_params(self, states, run=None):
        return states.mean_cost if run is None else states.mean_cost[run]

    def policy(self, params, name):
        return Policy(name, lambda key, env_state, obs: self.action(PHI_GRID[jnp.argmin(params)]))

    def sweep_policy(self, stacked_params, name):
        return Policy(name, None, params=stacked_params,
                      act_with=lambda p, key, env_state, obs: self.action(PHI_GRID[jnp.argmin(p)]))

    def param_counts(self):
        return {"per_agent": 0, "agents": 0, "central_critic": 0, "total": int(PHI_GRID.size)}

    def describe(self):
        return {"learner": "row_bandit", "phi_grid": [float(x) for x in PHI_GRID]}


def make_split_bandit(system, config=None):
    return SplitBandit(system, config)


def test_a_new_learner_trains_through_fit_and_is_evaluated(tmp_path, monkeypatch):
    from meqc_jax.loop import fit

    monkeypatch.setitem(LEARNERS, "row_bandit", f"{__name__}:make_split_bandit")
    config = SystemConfig(**SMALL)
    learner = make_learner("row_bandit", config)
    state, metrics = fit(learner, seeds=[0, 1], chunk=4, ckpt_dir=str(tmp_path / "ckpt"))
    assert np.asarray(metrics.best_cost).shape == (2, 6) and learner.epochs_done(state) == 6
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
