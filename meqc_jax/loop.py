"""The host loop for any learner: chunks of epochs in one jitted call, orbax checkpoints, a progress
bar and a NaN stop. It talks to the learner only through `meqc_jax.learners.Learner`.

    learner = make_train(system, PPOConfig(epochs=250))
    states, metrics = fit(learner, seeds=[0, 1, 2], chunk=10, ckpt_dir="runs/x/checkpoints")
    metrics.cost            # [seeds, epochs], one named field per metric
"""

from __future__ import annotations

import io
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from meqc_jax import sharding
from meqc_jax.env import MEQCEnv
from meqc_jax.io import atomic_write_bytes
from meqc_jax.learners.interface import Learner, metric_names
from meqc_jax.progress import ProgressBar

METRICS_FILE = "metrics.npz"  # per checkpoint: every metric so far, by name, [runs, epochs]


def checkpoints(ckpt_dir: str | None) -> list[str]:
    """Complete checkpoints (state and metrics written) in `ckpt_dir`, oldest first."""
    if not ckpt_dir or not os.path.isdir(ckpt_dir):
        return []
    return sorted(d for d in os.listdir(ckpt_dir) if d.startswith("epoch_") and not d.endswith(".tmp")
                  and os.path.exists(os.path.join(ckpt_dir, d, METRICS_FILE)))


def _concat(history: list):
    return jax.tree.map(lambda *xs: np.concatenate(xs, axis=1), *history)


def _save_metrics(path: str, metrics) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{n: np.asarray(getattr(metrics, n)) for n in metric_names(metrics)})
    atomic_write_bytes(path, buf.getvalue())


def _load_metrics(path: str, cls):
    with np.load(path) as f:
        return cls(**{n: f[n] for n in f.files})


def _inputs(learner: Learner, seeds: list[int], chunk, env_params, devices, caller: str):
    """The runs' keys and EnvParams, placed on the devices as `fit` trains them, and that placement (small arrays:
    one key and one set of parameters per run)."""
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"{caller}: chunk={chunk!r} is invalid: allowed an integer >= 1")
    keys = jnp.stack([jax.random.key(s) for s in seeds])
    if env_params is None:
        env_params = MEQCEnv.stack_params([learner.env.default_params()] * len(seeds))
    elif int(jax.tree.leaves(env_params)[0].shape[0]) != len(seeds):
        raise ValueError(f"{caller}: env_params has {jax.tree.leaves(env_params)[0].shape[0]} entries, "
                         f"seeds {len(seeds)}")
    mesh = sharding.batch_mesh(("runs", "envs"), (len(seeds), learner.num_envs), devices)
    keys, env_params = sharding.place((keys, env_params), mesh)
    return keys, env_params, mesh


def _abstract_state(learner: Learner, keys, env_params, mesh):
    """The runs' initial training state as shapes and shardings only (`jax.eval_shape`: nothing is built or run)."""
    shapes = jax.eval_shape(jax.vmap(learner.init), keys, env_params)
    return sharding.abstract(shapes, mesh, learner.state_batch_axes)


def _initial_state(learner: Learner, keys, env_params, mesh):
    """The runs' initial training state, batched over seeds and placed on the devices as `fit` trains it."""
    return sharding.place(learner.init_batch(keys, env_params), mesh, learner.state_batch_axes)


def _chunk_lengths(epochs: int, chunk: int, done: int = 0) -> list[int]:
    """The chunk lengths a training from epoch `done` runs: `chunk`, and a shorter last one where it does not divide."""
    left = epochs - done
    lengths = {min(chunk, left)} if left > 0 else set()
    if left > chunk and left % chunk:
        lengths.add(left % chunk)
    return sorted(lengths)


def _resumed_epochs(ckpt_dir: str | None, resume: bool) -> int:
    """The epochs done by the checkpoint `fit` would resume from (read from its folder's name; 0 without one)."""
    done = checkpoints(ckpt_dir) if ckpt_dir and resume else []
    try:
        return int(done[-1][len("epoch_"):]) if done else 0
    except ValueError:
        return 0


def precompile(learner: Learner, seeds, chunk: int = 10, env_params=None, devices=None) -> int:
    """Compile the programs `fit(learner, seeds, chunk, env_params=..., devices=...)` runs -- one training
    program per chunk length it will use, and the runs' initialization -- without training, and without
    building the runs' state: the training programs are compiled for its shapes and shardings
    (`jax.eval_shape`), refused like `fit`'s when they would not fit the device.

    Its use is JAX's persistent compilation cache (`compilation.enable_persistent_cache`): a process that
    precompiles leaves the programs on disk, and another process's `fit` of the same learner and shapes
    then loads them instead of compiling (`meqc reproduce` has one worker compile what another will train
    later). Everything `fit` computes is unchanged. Returns how many training programs were compiled here."""
    seeds = [int(s) for s in seeds]
    keys, env_params, mesh = _inputs(learner, seeds, chunk, env_params, devices, "precompile")
    state = _abstract_state(learner, keys, env_params, mesh)
    before = learner.compiled_chunks
    for n in _chunk_lengths(learner.epochs, chunk):  # `chunk`, and a shorter last one where it does not divide
        learner.compiled_chunk(state, n)
    init = getattr(learner, "init_program", None)  # the initialization too, where the learner exposes its program
    if init is not None and hasattr(init, "lower"):
        init.lower(keys, env_params).compile()
    return learner.compiled_chunks - before


def fit(learner: Learner, seeds, chunk: int = 10, ckpt_dir: str | None = None, resume: bool = True,
        progress: bool = False, on_chunk=None, env_params=None, devices=None):
    """Train one run per seed for `learner.epochs` epochs in chunks of `chunk` epochs.

    Seeds are vmapped inside one jitted call (one compile, all seeds at once). Between chunks the
    host checks for NaN/inf (a `FloatingPointError` names the first bad epoch and seed), updates
    the progress bar and, with `ckpt_dir`, writes an orbax checkpoint of the full training state plus
    the metrics so far (`epoch_000010/`, ...). With `resume`, the newest checkpoint is loaded and
    training continues from it, bit-identically to an uninterrupted run.
    With `env_params` (EnvParams stacked over the runs, one per seed entry) each run trains on its
    own swept configuration, still in one compiled program (seeds may repeat across points).
    Devices: the runs axis and each run's environment axis are split over `devices` (default: all
    visible devices; see `meqc_jax.sharding`), one program partitioned by `jax.jit`; a single
    device runs it unchanged. Pass `devices=jax.devices()[:1]` to keep everything on one device.
    `on_chunk(epochs_done, metrics so far, seconds)` is called after every chunk.
    A training that would not fit the device is refused before anything of its size is built or run
    (`compilation.ProgramTooLarge`, one line naming the sizes and what to lower): the first chunk's program
    is checked for the runs' state as shapes only (`jax.eval_shape`), first against a lower bound found from
    the shapes (`Learner.memory_floor`), then against XLA's plan of the compiled program, and only then is
    the state initialized.
    Returns (final state batched over seeds, the learner's metrics with leaves [seeds, epochs]).
    """
    import orbax.checkpoint as ocp

    epochs = learner.epochs
    seeds = [int(s) for s in seeds]
    keys, env_params, mesh = _inputs(learner, seeds, chunk, env_params, devices, "fit")
    # refused (ProgramTooLarge) here, from shapes, before the runs' state exists or anything is dispatched
    for n in _chunk_lengths(epochs, chunk, _resumed_epochs(ckpt_dir, resume))[-1:]:
        learner.compiled_chunk(_abstract_state(learner, keys, env_params, mesh), n)
    state = _initial_state(learner, keys, env_params, mesh)
    history: list = []
    done = 0
    ckpt = ocp.StandardCheckpointer() if ckpt_dir else None
    if ckpt is not None and resume and checkpoints(ckpt_dir):
        latest = os.path.join(os.path.abspath(ckpt_dir), checkpoints(ckpt_dir)[-1])
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)  # keeps each leaf's sharding
        state = ckpt.restore(os.path.join(latest, "state"), abstract)
        history = [_load_metrics(os.path.join(latest, METRICS_FILE), learner.metrics_type)]
        done = learner.epochs_done(state)

    bar = ProgressBar(progress, epochs)
    bar.advance(f"epoch {done}/{epochs}", steps=done)
    t0 = time.perf_counter()
    while done < epochs:
        n = min(chunk, epochs - done)
        state, m = learner.train_chunk_batch(state, n)
        m = jax.tree.map(sharding.to_host, m)  # leaves [S, n]
        bad = np.asarray(m.nonfinite) > 0
        if bad.any():
            s_idx, e_idx = np.argwhere(bad)[0]
            bar.close()
            raise FloatingPointError(f"training diverged at epoch {done + e_idx + 1} (seed {seeds[s_idx]}): "
                                     "NaN or inf in the losses or parameters")
        history.append(m)
        done += n
        if ckpt is not None:
            path = os.path.join(os.path.abspath(ckpt_dir), f"epoch_{done:06d}")
            ckpt.save(os.path.join(path, "state"), state, force=True)
            ckpt.wait_until_finished()
            _save_metrics(os.path.join(path, METRICS_FILE), _concat(history))  # last: marks it complete
        bar.advance(f"epoch {done}/{epochs}", steps=n)
        if on_chunk is not None:
            on_chunk(done, _concat(history), time.perf_counter() - t0)
    bar.close()
    return state, _concat(history)


__all__ = ["METRICS_FILE", "checkpoints", "fit", "precompile"]
