"""A user's own policy, from outside the package: a factory named by module path, or installed through the
`meqc_jax.policies` entry points, runs in `meqc evaluate` and `meqc sweep` with the numbers `evaluate()`
gives it from Python; every way of naming it wrongly is one line."""

from __future__ import annotations

import importlib
import json
import textwrap

import numpy as np
import pytest

from meqc_jax import SystemConfig, sweep
from meqc_jax.baselines import make_policy, parse_policy_names, policy_names
from meqc_jax.cli import main
from meqc_jax.evaluate import evaluate

MODULE = textwrap.dedent('''
    """A user's rules, outside meqc_jax."""
    import jax.numpy as jnp

    from meqc_jax.baselines import Policy


    def make_half(config):
        """Keep 30 % of each task at home, send the rest to server 1."""
        def act(key, env_state, obs):
            return jnp.ones(config.num_users, jnp.int32), jnp.full(config.num_users, 0.3)

        return Policy("half_rule", act)


    not_callable = 3


    def returns_wrong(config):
        return "not a policy"
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_rules.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return importlib.import_module("my_rules")


def test_a_module_path_policy_runs_in_evaluate_with_the_numbers_python_gives(user_module, tmp_path):
    out = tmp_path / "ev"
    assert main(["evaluate", "--users", "3", "--servers", "2", "--policies", "my_rules:make_half,local",
                 "--slots", "8", "--envs", "2", "--seed", "4", "--out", str(out), "--no-progress"]) == 0
    cli = json.loads((out / "summary.json").read_text())
    assert cli["policies"] == ["half_rule", "local"]
    config = SystemConfig(num_users=3, num_servers=2)
    py = evaluate(config, [user_module.make_half(config), "local"], num_envs=2, num_slots=4, seed=4)
    for name in ("half_rule", "local"):
        assert cli["summary"][name]["mean_cost"] == py.summary[name]["mean_cost"]


def test_a_module_path_policy_runs_in_a_sweep_with_each_points_numbers(user_module, tmp_path):
    out = tmp_path / "sw"
    assert main(["sweep", "--grid", "f_edge_ghz=5,20", "--set", "num_users=3", "--set", "num_servers=2",
                 "--policies", "my_rules:make_half,local", "--envs", "2", "--slots", "3", "--out", str(out),
                 "--no-progress"]) == 0
    rows = sweep.read_table(str(out / "results.csv"))
    assert {r["policy"] for r in rows} == {"half_rule", "local"} and len(rows) == 4
    spec = sweep.SweepSpec(grid=(("f_edge_ghz", (5.0, 20.0)),), fixed=(("num_users", 3), ("num_servers", 2)),
                           envs=2, slots=3)
    for f in (5.0, 20.0):
        config = spec.config({"f_edge_ghz": f})
        alone = evaluate(config, [user_module.make_half(config)], num_envs=2, num_slots=3, seed=0)
        row = next(r for r in rows if r["policy"] == "half_rule" and r["f_edge_ghz"] == f)
        assert np.isclose(row["mean_cost"], alone.summary["half_rule"]["mean_cost"], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("spec, words", [
    ("no_such_module_anywhere:make", "cannot be imported"),
    ("my_rules:missing", "has no attribute 'missing'"),
    ("my_rules:not_callable", "names an object of type 'int', not callable"),
    ("my_rules:returns_wrong", "the factory returned an object of type 'str'"),
    ("my_rules", "unknown name(s) my_rules"),
])
def test_a_wrong_path_attribute_or_type_is_one_line(user_module, spec, words, capsys):
    assert main(["evaluate", "--users", "3", "--servers", "2", "--policies", spec, "--slots", "2",
                 "--envs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("meqc evaluate: error: ") and words in err[0], err
    assert "module.path:attribute naming a policy factory" in err[0] or "expected a policy factory" in err[0]


def test_an_installed_package_registers_through_an_entry_point(user_module, tmp_path, monkeypatch):
    dist = tmp_path / "site" / "my_rules_pkg-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-rules-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[meqc_jax.policies]\nhalf_rule_ep = my_rules:make_half\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    config = SystemConfig(num_users=3, num_servers=2)
    assert policy_names(config)[-1] == "half_rule_ep" and parse_policy_names("half_rule_ep") == ("half_rule_ep",)
    assert make_policy("half_rule_ep", config).name == "half_rule"
    with pytest.raises(ValueError, match="unknown name"):
        parse_policy_names("half_rule_typo")
