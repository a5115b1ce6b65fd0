"""`drift`: qubit lifetimes that wander (dynamics-spec section 4).

Carry: `t1[E]` in seconds, the nominal lifetime after a reset, following an AR(1) in log space

    log t1[e] <- log t1_nom + rho (log t1[e] - log t1_nom) + sigma_drift sqrt(1 - rho^2) z,  z ~ N(0, 1),

so `drift_sigma` is the stationary spread of log t1 and `drift_rho` its slot-to-slot correlation.
The slot's lifetime is t1[e] exp(sigma_t1 z'), the paper's jitter on top (the tasks hook rescales
the jittered draw of `tasks.sample_tasks`). Partial observability: the observation shows the last
slot's lifetime, never the current one (`last_t1_slot`, the nominal value in an episode's first slot).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from meqc_jax.dynamics.base import Dynamic, ObsSpec


class Drift(Dynamic):
    name = "drift"
    description = "each QPU's t1 follows a log-space AR(1) (drift_rho, drift_sigma); observed one slot late"

    def init(self, key, config, scenario):
        return {"t1": scenario.t1, "last_t1_slot": scenario.t1}

    def tasks(self, carry, config, scenario, tasks):
        # sample_tasks drew t1_slot = t1_nom exp(sigma_t1 z'); the drifted slot lifetime is t1 exp(sigma_t1 z')
        return tasks.replace(t1_slot=tasks.t1_slot * (carry["t1"] / scenario.t1))

    def update(self, carry, outcome, key, config, scenario, tasks):
        rho, sigma = config.drift_rho, config.drift_sigma
        z = jax.random.normal(key, scenario.t1.shape)
        log_nom = jnp.log(scenario.t1)
        log_t1 = log_nom + rho * (jnp.log(carry["t1"]) - log_nom) + sigma * math.sqrt(1.0 - rho * rho) * z
        # 8 stationary spreads either side bound t1 (a z beyond that has probability < 1e-15): float32-safe
        bound = 8.0 * sigma
        return {"t1": jnp.exp(jnp.clip(log_t1, log_nom - bound, log_nom + bound)), "last_t1_slot": tasks.t1_slot}

    def obs_specs(self, config):
        spread = max(3.0 * config.drift_sigma / math.log(2.0), 1.0)
        return (ObsSpec("last_t1", "server", spread,
                        "log2(last slot's t1 / nominal t1) / (3 drift_sigma in log2 units): one slot late",
                        "log2", base=config.si.t1),)

    def observe(self, carry, config, scenario, tasks):
        return {"last_t1": carry["last_t1_slot"]}
