"""meqc_jax.prng: the written-out threefry draws equal jax.random's bit for bit, alone and inside the env."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meqc_jax import MEQCEnv, SystemConfig, prng
from meqc_jax.scenarios import scenario_config

KEYS = jax.random.split(jax.random.key(11), 64)


def _same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("num", [1, 2, 3, 5, 17])
def test_split_equals_jax(num):
    ours = jax.jit(jax.vmap(lambda k: jax.random.key_data(prng.split(k, num))))(KEYS)
    ref = jax.vmap(lambda k: jax.random.key_data(jax.random.split(k, num)))(KEYS)
    _same(ours, ref)


@pytest.mark.parametrize("shape", [(1,), (7,), (10,), (3, 5), (100,)])
def test_bits_uniform_normal_equal_jax(shape):
    def both(k):
        ours = (prng.bits(k, shape), prng.uniform(k, shape), prng.uniform(k, shape, 1e-9, 1e-3),
                prng.uniform(k, shape, -2.5, 7.25), prng.normal(k, shape))
        with prng.reference():
            ref = (prng.bits(k, shape), prng.uniform(k, shape), prng.uniform(k, shape, 1e-9, 1e-3),
                   prng.uniform(k, shape, -2.5, 7.25), prng.normal(k, shape))
        return ours, ref

    ours, ref = jax.jit(jax.vmap(both))(KEYS)
    _same(ours, ref)
    # and jax.random called directly (reference() must route to it)
    _same(ref[0], jax.vmap(lambda k: jax.random.bits(k, shape, dtype=jnp.uint32))(KEYS))
    _same(ref[3], jax.vmap(lambda k: jax.random.uniform(k, shape, minval=-2.5, maxval=7.25))(KEYS))


def test_legacy_keys_and_unjitted_calls():
    raw = jax.random.PRNGKey(5)
    _same(prng.split(raw, 4), jax.random.split(raw, 4))
    _same(prng.uniform(raw, (9,)), jax.random.uniform(raw, (9,)))
    typed = jax.random.key(5)
    _same(jax.random.key_data(prng.split(typed, 3)), jax.random.key_data(jax.random.split(typed, 3)))


def test_threefry_known_answer():
    """Random123's known-answer vector for Threefry-2x32 with 20 rounds (key and counter all ones bits)."""
    x1, x2 = prng.threefry2x32(*(jnp.uint32(0xFFFFFFFF),) * 4)
    assert (int(x1), int(x2)) == (0x1CB996FC, 0xBB002BE7)
    x1, x2 = prng.threefry2x32(*(jnp.uint32(0),) * 4)
    assert (int(x1), int(x2)) == (0x6B200159, 0x99BA4EFE)


def test_bad_shapes_are_refused_in_one_line():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"prng.split: shape=\(-1,\) is invalid"):
        prng.split(key, -1)
    with pytest.raises(ValueError, match=r"prng.uniform: shape=\(2.5,\) is invalid"):
        prng.uniform(key, (2.5,))
    assert prng.bits(key, (0,)).shape == (0,) == jax.random.bits(key, (0,)).shape


def test_non_threefry_keys_fall_back():
    key = jax.random.key(3, impl="rbg")
    _same(prng.uniform(key, (6,)), jax.random.uniform(key, (6,)))
    _same(jax.random.key_data(prng.split(key, 3)), jax.random.key_data(jax.random.split(key, 3)))


@pytest.mark.parametrize("scenario", ["MEQC-v0", "MEQC-Sustainable-v0"])
def test_env_step_unchanged(scenario):
    """A few slots of batch_step (and a reset) with the written-out hash equal the same under jax.random."""
    cfg = scenario_config(scenario, num_users=4, num_servers=3, slots_per_episode=2) if scenario != "MEQC-v0" \
        else SystemConfig(num_users=4, num_servers=3, slots_per_episode=2)
    env = MEQCEnv(cfg)

    def run(keys):
        obs, state = jax.vmap(env.reset)(keys)
        outs = [obs]
        for t in range(3):  # crosses an episode end (automatic reset)
            step_keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(keys)
            action = (jnp.full((keys.shape[0], 4), t % 3), jnp.full((keys.shape[0], 4), 0.25 * t))
            obs, state, reward, done, info = env.batch_step(step_keys, state, action)
            outs.append((obs, state, reward, done, info["cost"].total))
        return outs

    keys = KEYS[:8]
    ours = jax.jit(run)(keys)
    with prng.reference():
        ref = jax.jit(run)(keys)
    _same(ours, ref)
