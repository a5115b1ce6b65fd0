"""The specifications the code cites live in the repository, and every cited section exists.

Citations name the model spec (docs/spec/model.md) as "model-spec section 8", "spec section 9",
"spec 11", "(spec 5, 7)", "spec sections 4-9", "the spec-11 MIP", and the dynamics spec
(docs/spec/dynamics.md) as "dynamics-spec section 2", "dynamics-spec sections 1 and 5",
"dynamics-spec 1-5, 8", "dynamics-spec.md sections 1-5". A bare "spec" is the model spec. Each
cited number must be a "## N." heading of that file. No tracked file may point outside the
repository (`../shared/...`). No JAX needed: plain text over `git ls-files`.
"""

import json
import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SELF = pathlib.Path(__file__).resolve().relative_to(ROOT).as_posix()
SPEC_FILES = {"model": "docs/spec/model.md", "dynamics": "docs/spec/dynamics.md"}
SCANNED_DIRS = ("meqc_jax/", "tests/", "benchmarks/", "docs/", "notebooks/")
SCANNED_EXTS = (".py", ".md", ".toml", ".ipynb")
OUTSIDE = b"../shared"

# One citation: which spec, then its section numbers. Between the words: blanks, or one line break
# with what continues a comment, quote or docstring on the next line.
_SEP = r"(?:[ \t]*\n[ \t#>*\"]*|[ \t]+)"
_NUM = r"\d+(?!\d)(?!\.\d)"
_RANGE = rf"{_NUM}(?:[ \t]*[-\u2013\u2014][ \t]*{_NUM})?"
_LIST = rf"{_RANGE}(?:[ \t]*(?:,|&|\band\b|\bor\b)[ \t]*{_RANGE})*"
_CITE = re.compile(  # "model-spec section 8", "spec 11", "dynamics-spec.md sections 1-5", "spec-11"
    rf"(?<![\w/.-])(?:(?P<kind>model|dynamics)-)?spec(?:\.md)?"
    rf"(?:-(?=\d)|{_SEP}(?:sections?{_SEP})?)(?P<nums>{_LIST})",
    re.IGNORECASE)
_PATH_CITE = re.compile(  # "docs/spec/dynamics.md section 2", "[`docs/spec/model.md`](spec/model.md) section 8"
    rf"spec/(?P<kind>model|dynamics)\.md(?:#[\w-]*)?`?(?:\]\([^)\s]*\))?{_SEP}sections?{_SEP}(?P<nums>{_LIST})",
    re.IGNORECASE)


def _repo_files() -> list[str]:
    """Tracked files plus untracked ones git does not ignore (new files count before their commit)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return sorted({p for p in out.decode().split("\0") if p and (ROOT / p).is_file()})


def _scanned(path: str) -> bool:
    if path == SELF or not path.endswith(SCANNED_EXTS):
        return False
    return path.startswith(SCANNED_DIRS) or "/" not in path  # top level: README.md, pyproject.toml, ...


def _numbers(text: str) -> list[int]:
    """'1-5, 8' -> [1, 2, 3, 4, 5, 8]; a reversed or absurd range gives -1 (never a heading)."""
    out = []
    for part in re.split(r",|&|\band\b|\bor\b", text):
        ends = [int(x) for x in re.findall(r"\d+", part)]
        if len(ends) == 1:
            out.append(ends[0])
        elif len(ends) == 2:
            lo, hi = ends
            out.extend(range(lo, hi + 1) if 0 <= hi - lo <= 50 else [-1])
    return out


def citations(text: str) -> list[tuple[int, str, str, list[int]]]:
    """Every spec citation of `text`: (line, kind 'model' | 'dynamics', the citation, its sections)."""
    found = []
    for pattern in (_CITE, _PATH_CITE):
        for m in pattern.finditer(text):
            kind = (m.group("kind") or "model").lower()
            line = text.count("\n", 0, m.start()) + 1
            found.append((m.start(), line, kind, " ".join(m.group(0).split()), _numbers(m.group("nums"))))
    return [f[1:] for f in sorted(found)]


def _texts(path: str):
    """(where, text) pieces of a file: the file itself, or for a notebook one per cell."""
    raw = (ROOT / path).read_text(encoding="utf-8", errors="replace")
    if not path.endswith(".ipynb"):
        yield path, raw
        return
    for i, cell in enumerate(json.loads(raw).get("cells", [])):
        src = cell.get("source", "")
        yield f"{path} (cell {i})", "".join(src) if isinstance(src, list) else src


def headings(kind: str) -> set[int]:
    text = (ROOT / SPEC_FILES[kind]).read_text(encoding="utf-8")
    return {int(n) for n in re.findall(r"^## (\d+)\. \S", text, flags=re.M)}


def test_spec_files_exist_with_numbered_sections():
    for kind in SPEC_FILES:
        nums = headings(kind)
        assert nums and nums == set(range(1, max(nums) + 1)), (SPEC_FILES[kind], sorted(nums))
    assert max(headings("model")) >= 11 and max(headings("dynamics")) >= 8


def test_no_file_points_outside_the_repository():
    bad = []
    for path in _repo_files():
        if path == SELF:
            continue
        for n, line in enumerate((ROOT / path).read_bytes().split(b"\n"), 1):
            if OUTSIDE in line:
                bad.append(f"{path}:{n}: {line.decode(errors='replace').strip()[:120]}")
    assert not bad, "references to files outside the repository (cite docs/spec/*.md or the paper " \
                    "by title instead):\n" + "\n".join(bad)


def test_every_cited_spec_section_exists():
    known = {kind: headings(kind) for kind in SPEC_FILES}
    seen, dangling = 0, []
    for path in filter(_scanned, _repo_files()):
        for where, text in _texts(path):
            for line, kind, cite, nums in citations(text):
                seen += 1
                missing = [n for n in nums if n not in known[kind]]
                if missing:
                    dangling.append(f"{where}:{line}: {cite!r} -> {SPEC_FILES[kind]} has no section "
                                    f"{', '.join(map(str, missing))}")
    assert not dangling, "dangling spec citations:\n" + "\n".join(dangling)
    assert seen >= 50, f"only {seen} citations found: has the citation pattern stopped matching?"


@pytest.mark.parametrize("text, expected", [
    ("paper Eqs. 1-12, as pinned down by spec sections 4-9.", [("model", [4, 5, 6, 7, 8, 9])]),
    ("(dynamics-spec section 2; model-spec section 8's `arrival` rule)", [("dynamics", [2]), ("model", [8])]),
    ("# dynamics-spec sections 1 and 5 (the paper's model)", [("dynamics", [1, 5])]),
    ("| state carried between slots | dynamics-spec 1\u20135, 8 |", [("dynamics", [1, 2, 3, 4, 5, 8])]),
    ("(spec 5, 7): and spec 11, dynamics-spec 7", [("model", [5, 7]), ("model", [11]), ("dynamics", [7])]),
    ('"""A learner (dynamics-spec\nsection 8, `MEQC-Contended-v0`)."""', [("dynamics", [8])]),
    ("# the split (dynamics-spec\n    # sections 2, 3, 7), shapes", [("dynamics", [2, 3, 7])]),
    ("The spec-11 MIP; Deviation (spec 6).", [("model", [11]), ("model", [6])]),
    ("(dynamics-spec.md sections 1-5); (model-spec.md section 11)", [("dynamics", [1, 2, 3, 4, 5]), ("model", [11])]),
    ("see [`docs/spec/dynamics.md`](spec/dynamics.md) section 2", [("dynamics", [2])]),
    ("dynamics-spec section 9", [("dynamics", [9])]),
    ("spec = SweepSpec(grid); obs_specs(config); PartitionSpec('runs'); the spec's text; spec 1.5",
     []),
])
def test_the_citation_pattern(text, expected):
    assert [(kind, nums) for _, kind, _, nums in citations(text)] == expected


def test_a_dangling_citation_is_caught():
    dynamics = headings("dynamics")
    assert any(n not in dynamics for _, _, _, nums in citations("(dynamics-spec section 9)") for n in nums)
