"""The package's shape: enforced layers (import-linter), no private names across modules, and one
source for every option list the CLI offers."""

import ast
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")


def lint(cwd: pathlib.Path) -> subprocess.CompletedProcess:
    # cwd first on the path, so that the copy under test is the package analysed
    return subprocess.run([sys.executable, "-c", LINT], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_layers_contract_is_kept():
    res = lint(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 kept, 0 broken" in res.stdout


def test_layers_contract_fails_on_an_upward_import(tmp_path):
    # a deliberate cycle: the bottom of the physics layer importing the environment
    shutil.copytree(ROOT / "meqc_jax", tmp_path / "meqc_jax", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    physics = tmp_path / "meqc_jax" / "physics.py"
    physics.write_text(physics.read_text() + "\nfrom meqc_jax.env import MEQCEnv  # noqa: E402,F401\n")
    res = lint(tmp_path)
    assert res.returncode != 0
    assert "BROKEN" in res.stdout and "meqc_jax.physics -> meqc_jax.env" in res.stdout, res.stdout


def test_the_architecture_doc_names_the_contracts_layers_in_order():
    """docs/architecture.md's picture lists pyproject's layers (the one list) in its order, so it cannot drift."""
    import re
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as f:
        contract = tomllib.load(f)["tool"]["importlinter"]["contracts"][0]["layers"]
    want = [sorted(m.strip().removeprefix("meqc_jax.") for m in layer.split("|")) for layer in contract]
    doc = (ROOT / "docs" / "architecture.md").read_text()
    block = doc.split("```", 2)[1]
    got = [sorted(n.strip().rstrip("/") for n in m.group(1).split("|"))
           for m in (re.match(r"([a-z_]+/?(?: \| [a-z_]+/?)*)", line) for line in block.splitlines()) if m]
    assert got == want


def carry_reads(path: pathlib.Path) -> list[str]:
    """Places that read a carry by a field's name: `...carry["x"]`, `...carry.get("x")`, `"x" in ...carry`."""
    def named(node):
        return isinstance(node, ast.Constant) and isinstance(node.value, str)

    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        target = None
        if isinstance(node, ast.Subscript) and named(node.slice):
            target = node.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args and named(node.args[0])):
            target = node.func.value
        elif isinstance(node, ast.Compare) and isinstance(node.ops[0], (ast.In, ast.NotIn)) and named(node.left):
            target = node.comparators[0]
        if target is not None and "carry" in ast.unparse(target):
            bad.append(f"{path.name}:{node.lineno}: {ast.unparse(node)[:80]}")
    return bad


def test_the_layers_above_the_env_read_no_carry_field():
    """Evaluation, the per-slot solver and the clairvoyant MIP learn what the carry holds through the dynamics'
    hooks (`Dynamic.metrics`, `drift_terms`, `horizon_inputs`), so a new dynamic needs no change there."""
    bad = [b for name in ("evaluate.py", "slot_solver.py", "clairvoyant.py") for b in carry_reads(ROOT / "meqc_jax" / name)]
    assert not bad, bad
    # the scan finds such reads (the dynamics themselves read their own carry)
    assert carry_reads(ROOT / "meqc_jax" / "dynamics" / "queues.py")


def code_words(path: pathlib.Path) -> list[tuple[int, str]]:
    """Every identifier (names, attributes, arguments, keywords, definitions) and every string literal that is
    not a docstring in one file, with its line: what its code names (its prose is free to cite a dynamic)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    words = []
    for node in ast.walk(tree):
        for attr in ("id", "attr", "arg", "name"):
            if isinstance(getattr(node, attr, None), str):
                words.append((node.lineno, getattr(node, attr)))
        if isinstance(node, ast.alias):
            words += [(node.lineno, part) for part in node.name.split(".")]
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words += [(node.lineno, w) for w in node.value.replace(".", " ").split()]
    return words


def test_the_cost_package_names_no_dynamic_and_no_carry_field():
    """`cost/` runs the pricing pipeline; each dynamic's part lives in its own module (`Dynamic.stage`), so the
    cost code names none of them and none of their carry fields. `has_task` is exempt: it is the priced slot's
    own field (the paper's model fills it with every user), which the arrivals' carry happens to share."""
    import jax

    from meqc_jax import SystemConfig, dynamics
    from meqc_jax.tasks import sample_scenario

    cfg = SystemConfig(num_users=2, num_servers=2)
    scenario = sample_scenario(jax.random.key(0), cfg)
    # the package's own dynamics (a test module may have registered a toy of its own in this process)
    own = (dynamics.ARRIVALS,) + tuple(d for d in map(dynamics.get, dynamics.names())
                                       if type(d).__module__.startswith("meqc_jax."))
    carried = {k for d in own
               for k in (d.init(jax.random.key(0), cfg.replace(dynamics=(d.name,) if d is not dynamics.ARRIVALS else ()),
                                scenario) or {})}
    forbidden = ({d.name for d in own} | carried) - {"has_task"}
    assert {"queues", "battery", "cpu_backlog", "harvest", "t1"} <= forbidden  # the scan knows what it looks for
    bad = [f"{f.relative_to(ROOT)}:{line} names {w!r}" for f in sorted((ROOT / "meqc_jax" / "cost").glob("*.py"))
           for line, w in code_words(f) if w in forbidden]
    assert not bad, bad
    # and it would find one: the queues' module names its own carry
    assert any(w == "cpu_backlog" for _, w in code_words(ROOT / "meqc_jax" / "dynamics" / "queues.py"))


# Private names of other libraries that the tests and benchmarks read on purpose (jax's compile counter).
FOREIGN_PRIVATE = {"_cache_size"}


def private_uses(path: pathlib.Path) -> list[str]:
    """`from meqc_jax.x import _y` and `something._y` (not self/cls, not dunders) in one file."""
    tree = ast.parse(path.read_text())
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("meqc_jax"):
            bad += [f"{path.name}:{node.lineno} imports {a.name}" for a in node.names if a.name.startswith("_")]
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if node.attr in FOREIGN_PRIVATE:
                continue
            bad.append(f"{path.name}:{node.lineno} uses .{node.attr}")
    return bad


def test_no_private_name_is_used_outside_its_module():
    files = [p for d in ("meqc_jax", "tests", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    bad = [b for p in files for b in private_uses(p)]
    assert not bad, "\n".join(bad)


def test_cli_lists_every_policy_part_and_scenario_from_their_owners(capsys):
    from meqc_jax.baselines import POLICY_NAMES
    from meqc_jax.cli import main
    from meqc_jax.experiments import PARTS
    from meqc_jax.learners.ppo import CRITICS, HPARAM_SETS
    from meqc_jax.scenarios import SCENARIOS

    helps = {}
    for command in ("train", "evaluate", "reproduce"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        helps[command] = capsys.readouterr().out
    flat = lambda text: " ".join(text.split())  # noqa: E731  argparse wraps long lines
    for name in POLICY_NAMES:
        assert name in flat(helps["evaluate"]), name
    for part in PARTS:
        assert part in flat(helps["reproduce"]), part
    for command in ("train", "evaluate", "reproduce"):
        for scenario in SCENARIOS:
            assert scenario in flat(helps[command]), (command, scenario)
    for option in (*CRITICS, *HPARAM_SETS):
        assert option in flat(helps["train"])
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    assert all(s in out for s in SCENARIOS), out


@pytest.mark.parametrize("module", ["meqc_jax.config", "meqc_jax.units"])
def test_configuration_modules_import_without_jax(module):
    # the bottom of the configuration layer stays importable without jax (validating a config imports physics)
    code = (f"import sys, importlib; sys.modules['meqc_jax'] = type(sys)('meqc_jax'); "
            f"sys.modules['meqc_jax'].__path__ = [{str(ROOT / 'meqc_jax')!r}]; importlib.import_module({module!r}); "
            "print('jax' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
