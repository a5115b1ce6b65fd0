"""The slot's random draws (model-spec sections 2-3: scenarios, tasks, gains), bit for bit those of
`jax.random`, at a fraction of their cost on a CPU.

`split`, `bits`, `uniform` and `normal` return exactly what the `jax.random` functions of the same
names return for the same key (JAX's default threefry2x32 keys with its partitionable counters,
the default since JAX 0.5): every result of the paper's model for a given seed is unchanged (tested
in tests/test_prng.py against `jax.random` on many keys, shapes and ranges).

Why not call `jax.random` itself: on a CPU, XLA lowers each threefry hash to a rolled loop of five
iterations (to keep compiles short), and a vmapped draw of a few words per instance pays that
loop's overhead per call. A slot draws six such small arrays per instance, so at U = E = 10 the
draws cost about twice as much as one draw of the same number of words (benchmarks/bench_env.py
`--draws`, docs/performance.md). Here the twenty rounds are written out (Salmon et al., SC'11,
"Parallel random numbers: as easy as 1, 2, 3", Threefry-2x32 with 20 rounds), which XLA vectorizes
across the batch like any other elementwise arithmetic: on this project's 2-core CPU 1.65 against
11.5 ns per word at 10 words per instance, a slot's draws 4.4 against 9.3 ms (`bench_env.py --draws`).

The one caveat: written-out arithmetic is fused into its consumers, and XLA's CPU compiler drops
`lax.optimization_barrier`, so a consumer that reads each word many times (an [U] draw broadcast
against [U, E] inside a reduction) recomputes the hash each time. Use these functions where each
word is read once, or its result is stored (the slot's tasks are state); the arrival order of
`cost.arbitrate`, read once per server, keeps `jax.random` (with the hash the slot's pricing
measured 2.8x slower: 7.3 vs 2.6 ms at U = E = 10, N = 8192).

Keys that are not default threefry keys, or a JAX whose counters are not partitionable
(`jax_threefry_partitionable=False`), fall back to `jax.random` (same numbers, JAX's speed).
"""

from __future__ import annotations

import contextlib
import math

import jax
import jax.numpy as jnp
import numpy as np

# Threefry-2x32's rotation constants (two alternating groups of four rounds) and key-schedule parity.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(x, d: int):
    return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


@jax.jit
def threefry2x32(k1, k2, x1, x2):
    """The Threefry-2x32 block cipher (20 rounds) on uint32 words: key (k1, k2), counters (x1, x2)
    broadcast together; returns the two output words. The same function as JAX's `threefry2x32_p`.

    Jitted for the tracer's sake only: its hundred-odd operations are traced once per input shape and, under
    `vmap`, batched once (a slot's dozen draws otherwise re-trace them each time: the quick run's programs
    traced and lowered ~0.3 s faster each); inside a jitted caller XLA inlines it, so the compiled program and
    every number are unchanged."""
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for block in range(5):  # five blocks of four rounds, a key injection after each
        for r in _ROTATIONS[block % 2]:
            x1 = x1 + x2
            x2 = _rotl(x2, r) ^ x1
        x1 = x1 + ks[(block + 1) % 3]
        x2 = x2 + ks[(block + 2) % 3] + np.uint32(block + 1)
    return x1, x2


_reference = False  # set by `reference()`: every draw goes through jax.random


@contextlib.contextmanager
def reference():
    """Inside this block (at trace time) every draw here is `jax.random`'s own: the reference these
    functions are tested against, and a count of the words drawn in the jaxpr (`random_bits`)."""
    global _reference
    old, _reference = _reference, True
    try:
        yield
    finally:
        _reference = old


def _fast(key) -> bool:
    """Whether `key` can take the written-out hash (a default threefry key under partitionable counters)."""
    if _reference or not jax.config.jax_threefry_partitionable:
        return False
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return str(jax.random.key_impl(key)) == "threefry2x32"
    return key.dtype == jnp.uint32 and key.shape[-1:] == (2,)  # a raw (legacy) threefry key


def _check_shape(fn: str, shape) -> tuple[int, ...]:
    """A static shape of non-negative integers (one-line ValueError otherwise, at trace time)."""
    shape = tuple(shape)
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ValueError(f"prng.{fn}: shape={shape!r} is invalid: allowed a tuple of integers >= 0")
    return tuple(int(d) for d in shape)


def _key_words(key):
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return data[..., 0], data[..., 1]


def _counters(n: int):
    """The partitionable counters of n words: (high word, low word) of 0..n-1 (n < 2**32 here)."""
    return jnp.zeros((n,), jnp.uint32), jnp.arange(n, dtype=jnp.uint32)


def _hash(key, n: int):
    """The two 32-bit output words of each of the first `n` counters."""
    k1, k2 = _key_words(key)
    c1, c2 = _counters(n)
    return threefry2x32(k1, k2, c1, c2)


def split(key, num: int = 2):
    """`jax.random.split(key, num)` for a single key (shape []), bit for bit."""
    (num,) = _check_shape("split", (num,))
    if not _fast(key) or key.shape != (() if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else (2,)):
        return jax.random.split(key, num)
    b1, b2 = _hash(key, num)
    data = jnp.stack([b1, b2], axis=-1)
    return jax.random.wrap_key_data(data) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else data


def bits(key, shape: tuple[int, ...]):
    """`jax.random.bits(key, shape)` (uint32 words), bit for bit."""
    shape = _check_shape("bits", shape)
    if not _fast(key) or math.prod(shape) >= 2**32:
        return jax.random.bits(key, shape, dtype=jnp.uint32)
    b1, b2 = _hash(key, math.prod(shape))
    return (b1 ^ b2).reshape(shape)


def uniform(key, shape: tuple[int, ...], minval=0.0, maxval=1.0):
    """`jax.random.uniform(key, shape, minval=, maxval=)` at the default float dtype, bit for bit:
    23 random mantissa bits under an exponent of one give a float in [1, 2), less one, scaled."""
    dtype = jnp.zeros((), float).dtype
    shape = _check_shape("uniform", shape)
    if not _fast(key) or dtype != jnp.float32:
        return jax.random.uniform(key, shape, minval=minval, maxval=maxval)
    minval = jax.lax.broadcast_to_rank(jax.lax.convert_element_type(minval, dtype), len(shape))
    maxval = jax.lax.broadcast_to_rank(jax.lax.convert_element_type(maxval, dtype), len(shape))
    words = bits(key, shape)
    mantissa = jax.lax.shift_right_logical(words, jnp.uint32(32 - 23)) | jnp.uint32(0x3F800000)  # 1.0's exponent
    floats = jax.lax.bitcast_convert_type(mantissa, dtype) - jnp.float32(1.0)
    return jax.lax.max(minval, jax.lax.reshape(floats * (maxval - minval) + minval, shape))


def normal(key, shape: tuple[int, ...]):
    """`jax.random.normal(key, shape)` at the default float dtype, bit for bit: sqrt(2) erfinv(u) with
    u uniform in (-1, 1)."""
    dtype = jnp.zeros((), float).dtype
    shape = _check_shape("normal", shape)
    if not _fast(key) or dtype != jnp.float32:
        return jax.random.normal(key, shape)
    lo = np.nextafter(np.array(-1.0, np.float32), np.array(0.0, np.float32))
    u = uniform(key, shape, lo, np.float32(1.0))
    return jnp.array(np.sqrt(2), dtype) * jax.lax.erf_inv(u)


__all__ = ["bits", "normal", "reference", "split", "threefry2x32", "uniform"]
