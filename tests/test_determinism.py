"""Every test draws the same randomness in every process: no seed from `hash()` (salted per process for
strings) or from the clock, so a failure replays on the rerun."""

import pathlib
import re

TESTS = pathlib.Path(__file__).parent
# hash() of an object used as a seed, or a seed taken from the clock; `hash(a) == hash(b)` checks are fine
SEEDED = re.compile(r"(default_rng|seed|key|PRNGKey|RandomState)\([^)\n]*(hash\(|time\.time|time_ns|perf_counter)")


def test_no_test_seeds_from_hash_or_the_clock():
    offenders = [f"{p.name}:{i}: {line.strip()}" for p in sorted(TESTS.glob("*.py")) if p.name != pathlib.Path(__file__).name
                 for i, line in enumerate(p.read_text().splitlines(), 1) if SEEDED.search(line)]
    assert not offenders, "seeds that differ between processes:\n" + "\n".join(offenders)


def test_the_guard_catches_the_forms_it_forbids():
    for line in ("rng = np.random.default_rng(hash((U, E)) % 2**32)", "np.random.seed(int(time.time()))",
                 "jax.random.key(time.time_ns())", "rng = np.random.default_rng(abs(hash(tuple(o))) % 2**32)"):
        assert SEEDED.search(line), line
    assert not SEEDED.search("rng = np.random.default_rng(stable_seed(U, E))")
