"""The notebooks run top to bottom (tiny settings) and are committed with their outputs cleared."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

NB_DIR = os.path.join(os.path.dirname(__file__), "..", "notebooks")


def run_notebook(name: str, env: dict, cwd: str):
    nb = nbformat.read(os.path.join(NB_DIR, name), as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": cwd}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


@pytest.mark.parametrize("name", ["quickstart.ipynb", "paper_figures.ipynb", "sweeps.ipynb", "custom_policy.ipynb"])
def test_committed_without_outputs(name):
    nb = nbformat.read(os.path.join(NB_DIR, name), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{name}: clear the outputs before committing"


def test_quickstart_runs(tmp_path):
    nb = run_notebook("quickstart.ipynb", {"MEQC_NOTEBOOK_TINY": "1"}, str(tmp_path))
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "x oracle" in text and "training cost" in text


def test_custom_policy_runs(tmp_path):
    """A ten-line policy against the baselines and the oracle, then a learner written to its own module and
    trained by module path: its summary names it and is measured against the oracle."""
    import json

    nb = run_notebook("custom_policy.ipynb", {"MEQC_NOTEBOOK_TINY": "1"}, str(tmp_path))
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "fast_link_0.2" in text and "x oracle" in text
    summary = json.loads((tmp_path / "runs" / "keep" / "summary.json").read_text())
    assert summary["learner"] == "my_learner:KeepLearner" and summary["reference"] == "oracle"
    assert summary["learner_config"] == {"epochs": 3, "num_envs": 8} and summary["ratio_to_reference"] >= 1 - 1e-6
    assert (tmp_path / "runs" / "keep" / "learning_curve.png").exists()
