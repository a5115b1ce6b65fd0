"""The README's Python snippets run as written, and its two set-up commands are the documented ones."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_python_snippets_run():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:  # later blocks use names from earlier ones, as a reader would
        exec(compile(block, "README.md", "exec"), namespace)
    assert float(namespace["breakdown"].total) > 0


def test_readme_starts_with_exactly_two_setup_commands():
    text = (ROOT / "README.md").read_text()
    head = text.split("## ")[0]
    cmds = re.findall(r"```bash\n(.*?)\n```", head, flags=re.S)
    assert len(cmds) == 2
    assert cmds[0].endswith("meqc reproduce --quick") and cmds[1].endswith("pytest -q")
    assert cmds[1] in (ROOT / ".ci" / "run").read_text()
