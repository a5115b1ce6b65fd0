"""Shared helpers: random instances (NumPy, independent of the samplers) and conversions."""

from __future__ import annotations

import os
import zlib

# The suite is bound by XLA compilation of many small programs, not by running them: the backend's
# lowest optimization level compiles them faster (measured: the suite in 10:38 vs 12:40 before, same
# machine) and changes no tested result (tests compare runs under the same flags or to references with
# tolerances). Set before JAX starts its backend; a caller's XLA_FLAGS are kept, and a caller who sets
# the optimization level (e.g. to test at XLA's default) keeps theirs.
_caller_flags = os.environ.get("XLA_FLAGS", "")
if "xla_backend_optimization_level" not in _caller_flags:
    os.environ["XLA_FLAGS"] = f"--xla_backend_optimization_level=0 {_caller_flags}".strip()

import jax.numpy as jnp  # noqa: E402
import pytest
import numpy as np
from hypothesis import HealthCheck, settings

from meqc_jax import Scenario, Tasks

# The CLI keeps compiled programs on disk by default; the tests stay hermetic (and every compile counted).
os.environ.setdefault("MEQC_COMPILE_CACHE", "off")

# Tracing dominates the first example; later examples reuse compiled code.
settings.register_profile(
    "meqc", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "meqc"))


def stable_seed(*parts) -> int:
    """A seed from a test's parameters that is the same in every process (Python salts `hash()` of strings per
    process, so a failure seeded by it draws other instances on the rerun)."""
    return zlib.crc32(repr(parts).encode())


def random_instance(rng: np.random.Generator, U: int, E: int, quantum_friendly: bool = False):
    """A random (Scenario, Tasks) drawn with NumPy from the spec's ranges.

    `quantum_friendly` makes QPU feasibility common (k = 1, many physical qubits, long and varied
    lifetimes, small circuits) so that arbitration is exercised.
    """
    if quantum_friendly:
        k = rng.choice([1, 1, 1, 2], size=E)
        phys = rng.integers(2000, 2_000_000, size=E)
        t1 = rng.uniform(0.5e-3, 20e-3, size=E)
        prims = rng.integers(3, 6, size=U)
    else:
        k = rng.choice([1, 2, 3], size=E)
        phys = rng.integers(1000, 5001, size=E)
        t1 = np.full(E, 1e-3)
        prims = rng.integers(3, 10, size=U)
    q = prims + 17
    depth = 3 * prims + np.floor(np.pi / 4 * np.sqrt(2.0**q)).astype(int)
    lam_d = rng.uniform(0, 1, size=U)
    scenario = Scenario(
        f_local=jnp.asarray(rng.choice([1e9, 2e9, 3e9], size=U), dtype=float),
        p_tx=jnp.asarray(rng.uniform(1e-5, 2e-4, size=U), dtype=float),
        f_edge=jnp.asarray(rng.choice([1e10, 1.5e10, 2e10], size=E), dtype=float),
        phys_qubits=jnp.asarray(phys, dtype=jnp.int32),
        k=jnp.asarray(k, dtype=jnp.int32),
        t1=jnp.asarray(t1, dtype=float),
        lam_d=jnp.asarray(lam_d, dtype=float),
        lam_e=jnp.asarray(1 - lam_d, dtype=float),
    )
    tasks = Tasks(
        s=jnp.asarray(rng.integers(1024, 10241, size=U) * 163840.0, dtype=float),
        n=jnp.asarray(3.0 * 2.0 ** rng.integers(3, 10, size=U), dtype=float),
        q=jnp.asarray(q, dtype=jnp.int32),
        depth=jnp.asarray(depth, dtype=jnp.int32),
        g=jnp.asarray(rng.uniform(4, 8, size=(U, E)), dtype=float),
        t1_slot=jnp.asarray(t1 * np.exp(0.1 * rng.standard_normal(E)), dtype=float),
    )
    return scenario, tasks


def as_numpy(tree) -> dict:
    """A Scenario/Tasks dataclass as a dict of float64/int NumPy arrays (for the reference)."""
    return {k: np.asarray(v).astype(np.float64) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
            for k, v in vars(tree).items()}


def rel_close(a, b, rtol=1e-4, atol=0.0):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.all(np.abs(a - b) <= rtol * np.abs(b) + atol)


@pytest.fixture(scope="session")
def tiny_reproduce(tmp_path_factory):
    """One `reproduce` of every figure on tiny settings, shared by the tests that need its output; in two
    worker processes (the CLI's default on a CPU), which also halves its compile-bound wall time."""
    from meqc_jax.experiments import DEFAULT_PARTS, ReproduceConfig, reproduce
    from meqc_jax.experiments.settings import DynamicsSettings, MapSettings

    tiny = dict(epochs_mlp=3, epochs_vqc=3, epochs_sweep=3, epochs_large=3, envs=2, slots_per_epoch=10, minibatches=2,
                update_epochs=2, chunk=3, eval_envs=3,
                eval_slots=3, sizes=(3, 3, 3), f_edge_ghz=(5.0, 30.0), phys_qubits=(1000, 20000),
                t1_ms=(0.1, 1000.0), qpu_map=MapSettings.quick(t1_ms=(0.1, 10.0), lam_d=(0.1, 0.9), envs=2, slots=2),
                dynamics=DynamicsSettings.quick(size=3, epochs=2, envs=2, slots=10, eval_envs=2, minibatches=2,
                                                v=(1.0, 10.0), small=2, horizon=2, warmup=2, bound_instances=2,
                                                priced_epochs=2, priced_envs=2),
                # a user's learner and policy by module path (tests/split_bandit.py), and a learner that does not apply there
                learners=("split_bandit:SplitBandit", "droo"), policies=("split_bandit:make_half_to_server0",))
    out = str(tmp_path_factory.mktemp("reproduce"))
    rc = ReproduceConfig.quick(**tiny)
    # the paper's figures and one dynamics part (all three dynamics: the code paths of the other three)
    return out, rc, reproduce(rc, out, parts=DEFAULT_PARTS + ("sustainable",), log=lambda *a: None, workers=2)
