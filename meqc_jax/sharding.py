"""Placing batch axes on every visible device (`jax.sharding`), with no change on a single device;
and the XLA compile options the package passes to `jax.jit`.

Every long computation in this package is a `vmap` over independent leading batch axes: training
runs (seeds x sweep points) and environments in `loop.fit`, sweep points and instances in
`evaluate.evaluate`. This module factors the available devices over those axes, builds a `Mesh`
whose axis names are the batch axes' names, and places arrays with `NamedSharding`; `jax.jit` then
partitions each program over the devices (GSPMD), so the same code runs on one CPU, several GPUs
or, after `jax.distributed.initialize()`, several hosts (see docs/scaling.md).

The factorization is greedy over the axes in order: axis i gets gcd(size_i, devices left), so an
axis is split only into equal shards. If the sizes cannot absorb all devices (e.g. 3 seeds x 5
environments on 4 devices) the mesh uses fewer devices -- correct, just less parallel -- and
`batch_mesh` says so in a warning. Results do not depend on the placement except for the order of
floating-point sums that cross shards (a training run whose environments are split over devices
averages its minibatch losses shard by shard); see tests/test_sharding.py.
"""

from __future__ import annotations

import math
import os
import platform
import warnings
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# XLA options for programs whose compile time matters more than their run time (they run once, or
# briefly): skipping LLVM's optimizations cuts XLA:CPU compile time about 3x and at most doubles
# the run time of the training program (measured on this project's 2-core CPU).
FAST_COMPILE = (("xla_backend_optimization_level", 0),)
# For programs that run for seconds, not once: LLVM's lighter optimization level. Measured on the quick
# run's U = E = 10 training chunk (5 epochs x 3 runs): compile 4.6 -> 3.2 s, run 3.1 -> 3.2 s (level 0: run 10 s).
LIGHT_COMPILE = (("xla_backend_optimization_level", 1),)


def jit_options(compiler_options) -> dict | None:
    """`compiler_options` as (name, value) pairs (hashable, for caches) -> the dict `jax.jit` takes."""
    return dict(compiler_options) if compiler_options else None


def batch_mesh(names: Sequence[str], sizes: Sequence[int], devices: Sequence | None = None) -> Mesh | None:
    """A mesh over the batch axes `names` (with lengths `sizes`), or None when only one device is used.

    `devices` defaults to all devices of the default backend (`jax.devices()`, every host's after
    `jax.distributed.initialize`).
    """
    if len(names) != len(sizes):
        raise ValueError(f"batch_mesh: {len(names)} axis names for {len(sizes)} sizes")
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("batch_mesh: devices is empty: allowed at least one device")
    shape = mesh_shape(sizes, len(devices))
    used = int(np.prod(shape))
    if used < len(devices):
        warnings.warn(f"batch axes {dict(zip(names, sizes))} split over {used} of {len(devices)} devices "
                      f"(mesh {dict(zip(names, shape))}); sizes divisible by the device count use them all",
                      stacklevel=2)
    if used == 1:
        return None
    return _make_mesh(tuple(shape), tuple(names), devices[:used])


def mesh_shape(sizes: Sequence[int], num_devices: int) -> list[int]:
    """How many devices `batch_mesh` splits each batch axis over (greedy: axis i gets gcd(size_i, devices left))."""
    left, shape = int(num_devices), []
    for size in sizes:
        d = math.gcd(int(size), left)
        shape.append(d)
        left //= d
    return shape


def _make_mesh(shape: tuple[int, ...], names: tuple[str, ...], devices: list) -> Mesh:
    """`jax.make_mesh` (which orders devices by the accelerators' physical topology), with automatic
    (GSPMD) sharding on every axis: the programs here are vmaps, partitioned by the compiler."""
    try:
        auto = (jax.sharding.AxisType.Auto,) * len(names)
        return jax.make_mesh(shape, names, axis_types=auto, devices=devices)
    except (AttributeError, TypeError):  # older jax: no axis types (every Mesh is automatic)
        return Mesh(np.asarray(devices, dtype=object).reshape(shape), names)


def leading_spec(mesh: Mesh | None, ndim: int, axes: int) -> PartitionSpec:
    """The spec that splits the first `axes` dimensions of an `ndim`-array over the mesh's axes."""
    k = min(axes, ndim, len(mesh.axis_names)) if mesh is not None else 0
    return PartitionSpec(*mesh.axis_names[:k]) if k else PartitionSpec()


def place(tree, mesh: Mesh | None, axes=1):
    """`tree` with every leaf's first `axes` dimensions split over the mesh (unchanged without a mesh).

    `axes` is an int for all leaves, or a pytree prefix of `tree` of ints (e.g. 2 for leaves that
    carry an environment axis after the runs axis, 1 for the rest). Leaves with fewer dimensions
    than `axes` are split over as many as they have (scalars are replicated).
    """
    if mesh is None:
        return tree

    multi = jax.process_count() > 1

    def put(leaf, k):
        spec = NamedSharding(mesh, leading_spec(mesh, np.ndim(leaf), k))
        if multi:
            return _put_global(leaf, spec)
        return jax.device_put(leaf, spec)

    if isinstance(axes, int):
        return jax.tree.map(lambda leaf: put(leaf, axes), tree)
    return jax.tree.map(lambda k, sub: jax.tree.map(lambda leaf: put(leaf, k), sub), axes, tree)


def default_device():
    """The device a jitted call without placed inputs runs on (`jax_default_device`, else the first)."""
    d = jax.config.jax_default_device
    if d is None:
        return jax.devices()[0]
    return jax.devices(d)[0] if isinstance(d, str) else d


def abstract(tree, mesh: Mesh | None, axes=1):
    """What `place(tree, mesh, axes)` would hold, as `jax.ShapeDtypeStruct`s carrying the same shardings
    (one device's without a mesh), for leaves that are arrays or abstract values (`jax.eval_shape`'s):
    programs compiled ahead for these accept the placed arrays, and nothing of their size is built."""
    single = None if mesh is not None else jax.sharding.SingleDeviceSharding(default_device())

    def spec(leaf, k):
        shape = tuple(leaf.shape)
        s = single or NamedSharding(mesh, leading_spec(mesh, len(shape), k))
        return jax.ShapeDtypeStruct(shape, leaf.dtype, sharding=s, weak_type=getattr(leaf, "weak_type", False))

    if isinstance(axes, int):
        return jax.tree.map(lambda leaf: spec(leaf, axes), tree)
    return jax.tree.map(lambda k, sub: jax.tree.map(lambda leaf: spec(leaf, k), sub), axes, tree)


def _put_global(leaf, spec: NamedSharding):
    """`leaf` (the same value on every process) as one global array over hosts: each process builds its
    own shards from its copy. (jax.device_put would compare the copies across processes first, which
    fails for NaN entries, e.g. EnvParams' "unset", and refuses typed PRNG keys; keys go as their raw
    words, a trailing axis that is never split, and are wrapped again.)"""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        return jax.device_put(leaf, spec)  # already global: a resharding
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
        data = _put_global(jax.random.key_data(leaf), spec)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    value = np.asarray(leaf)
    return jax.make_array_from_callback(value.shape, spec, lambda index: value[index])


def to_host(x) -> np.ndarray:
    """A global array as NumPy on this host, gathering the other hosts' shards when there are any."""
    if jax.process_count() > 1 and isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def describe(mesh: Mesh | None) -> dict:
    """A JSON-able description of a placement, for run summaries."""
    if mesh is None:
        return {"devices": 1, "mesh": {}}
    return {"devices": int(mesh.devices.size), "mesh": {n: int(s) for n, s in mesh.shape.items()},
            "platform": mesh.devices.flat[0].platform}


def device_description() -> str:
    """One line naming the first device, their count and the host's processor (for summaries and reports)."""
    d = jax.devices()[0]
    return (f"{d.platform}: {getattr(d, 'device_kind', '?')} x {jax.device_count()} "
            f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores)")
