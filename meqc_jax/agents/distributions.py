"""The hybrid action distribution (paper Eqs. 17-20): categorical server x clipped-Gaussian split.

The continuous part is a *clipped Gaussian*: a pre-clip sample x ~ N(mean, std) is drawn, the
environment receives phi = clip(x, 0, 1), and every log-probability is that of the pre-clip x.
This is exact for PPO: the policy is a Gaussian over x and the clip belongs to the environment, so
the likelihood ratio of Eqs. 31-32 is a ratio of Gaussian densities at the stored x. Unlike a
sigmoid squashing it puts real mass on phi = 0 and phi = 1, the optima under `sum` latency.

Eq. 18: the joint log-probability is the sum of the two parts' (they are sampled independently
given the observation) and so is the joint entropy.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from meqc_jax.agents.networks import HybridOutput

_LOG_2PI_E = math.log(2.0 * math.pi * math.e)


def sample_hybrid(key, out: HybridOutput):
    """Sample (server, x) per agent; phi = clip(x, 0, 1) is what the environment gets."""
    k_d, k_c = jax.random.split(key)
    server = jax.random.categorical(k_d, out.logits, axis=-1)
    x = out.mean + jnp.exp(out.log_std) * jax.random.normal(k_c, out.mean.shape)
    return server, x


def categorical_log_prob(logits, server):
    """log pi_D(server) of the categorical over servers (Eq. 19)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(logp, server[..., None], axis=-1)[..., 0]


def gaussian_log_prob(mean, log_std, x):
    """log pi_C(x) of the Gaussian over the pre-clip split (Eq. 20)."""
    z = (x - mean) * jnp.exp(-log_std)
    return -0.5 * z**2 - log_std - 0.5 * math.log(2.0 * math.pi)


def hybrid_log_prob(out: HybridOutput, server, x):
    """(log pi_D(server), log pi_C(x)); their sum is Eq. 18's joint log-probability."""
    return categorical_log_prob(out.logits, server), gaussian_log_prob(out.mean, out.log_std, x)


def hybrid_entropy(out: HybridOutput):
    """(H of the categorical, H of the Gaussian over x); their sum is the joint entropy."""
    logp = jax.nn.log_softmax(out.logits, axis=-1)
    h_d = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    h_c = 0.5 * _LOG_2PI_E + out.log_std
    return h_d, h_c


def deterministic_action(out: HybridOutput):
    """Greedy action for evaluation: the most likely server and phi = clip(mean, 0, 1)."""
    return jnp.argmax(out.logits, axis=-1).astype(jnp.int32), jnp.clip(out.mean, 0.0, 1.0)
