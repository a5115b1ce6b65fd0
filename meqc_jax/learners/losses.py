"""Pure loss functions of the hybrid PPO learner (paper Eqs. 26-33), unit-tested on their own.

Each takes arrays and returns arrays; none knows about networks, agents or environments, so a
second learner (e.g. MAPPO) reuses them as they are.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(values, last_value, rewards, dones, gamma: float, lam: float):
    """Generalized advantage estimation, Eq. 26, for one critic.

    values, rewards: [T, N, ...]; dones: [T, N] (True on an episode's last slot: no bootstrap past
    it); last_value: [N, ...], the value of the state after the last slot. Returns
    (advantages, value targets = advantages + values), both [T, N, ...].
    """

    def back(carry, step):
        adv_next, v_next = carry
        v, r, d = step
        nonterminal = 1.0 - d.astype(float)[:, None]
        delta = r + gamma * v_next * nonterminal - v
        adv = delta + gamma * lam * nonterminal * adv_next
        return (adv, v), adv

    _, adv = jax.lax.scan(back, (jnp.zeros_like(last_value), last_value), (values, rewards, dones), reverse=True)
    return adv, adv + values


def normalize(adv):
    """Advantages standardized over the minibatch (zero mean, unit spread)."""
    return (adv - adv.mean()) / (adv.std() + 1e-8)


def clipped_surrogate(logp, old_logp, adv, clip_eps: float):
    """The clipped policy objective as a loss (Eqs. 27-28 / 31-32) and the approximate KL.

    `adv` is standardized over the minibatch first. Returns (loss, approx_kl), both scalars; the
    KL estimate is E[(r - 1) - log r] with r the probability ratio (non-negative, unbiased).
    """
    adv = normalize(adv)
    ratio = jnp.exp(logp - old_logp)
    obj = jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    return -obj.mean(), jnp.mean((ratio - 1) - (logp - old_logp))


def value_loss(prediction, target):
    """The critics' squared error (Eqs. 29 / 33): 0.5 E[(V - target)^2]."""
    return 0.5 * jnp.mean((prediction - target) ** 2)


def value_loss_per_head(prediction, target):
    """`value_loss` for several value heads at once: prediction, target [..., H] -> [H]
    (a centralized critic's V^D and V^C)."""
    err = prediction - target
    return 0.5 * jnp.mean(err**2, axis=tuple(range(err.ndim - 1)))


__all__ = ["clipped_surrogate", "gae", "normalize", "value_loss", "value_loss_per_head"]
