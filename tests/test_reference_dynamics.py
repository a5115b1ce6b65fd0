"""The env against an independent float64 reference of every dynamic (`reference_dynamics_numpy`).

Each case drives `MEQCEnv` (jitted, vmapped over a few instances) with random actions (servers in range;
phi exactly 0, exactly 1, or interior) over tens of slots of carried state, sized so that queues fill
and batteries run dry, and after every slot compares the priced slot and the carry after it with the
reference fed the env's carry before the slot and the env's random draws (arrival order, harvest). Each
case also counts the paths it took, so none can pass vacuously. The drift's and the harvest's random
laws are checked statistically. Every seed is a fixed integer.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meqc_jax import MEQCEnv, SystemConfig
from reference_dynamics_numpy import (DROP_BATTERY, DROP_NONE, DROP_QUEUE, combine, drift_innovation, slot_reference,
                                      user_terms)
from reference_numpy import constants

RTOL = 1e-4
HANDSET = (100.0, 500.0)
# QPU feasibility common (k = 1 or 2, large QPUs, long lifetimes) and QPU work long enough to queue
QUANTUM = dict(k_choices=(1, 2, 3), phys_qubits_range=(2000, 400_000), t1_ms=3.0, quantum_unit_mb=0.02)
SMALL = dict(num_users=5, num_servers=3)


def _cfg(**kw):
    return SystemConfig(**{**SMALL, **kw})


# id -> (config, paths the rollout must take)
QUEUE_PATHS = {"qdrop_cpu", "qdrop_qpu", "waited_cpu", "waited_qpu", "multi_cpu", "multi_qpu", "grant"}
ARB_PATHS = {"grant", "arb_loser"}
CASES = {
    "queues-arrival-sum": (_cfg(dynamics=("queues",), slot_s=4.0, p_task=0.8, **QUANTUM), QUEUE_PATHS | {"notask"}),
    "queues-cheapest-parallel": (_cfg(dynamics=("queues",), slot_s=4.0, arbitration="cheapest",
                                      latency_model="parallel", **QUANTUM), QUEUE_PATHS),
    "battery-arrival-sum": (_cfg(dynamics=("battery",), battery_j=6.0, harvest_mean_j=1.5, p_tx_range_mw=HANDSET,
                                 **QUANTUM), {"bdrop"} | ARB_PATHS),
    "battery-cheapest-parallel": (_cfg(dynamics=("battery",), battery_j=6.0, harvest_mean_j=1.5, p_tx_range_mw=HANDSET,
                                       arbitration="cheapest", latency_model="parallel", p_task=0.7, **QUANTUM),
                                  {"bdrop", "notask"} | ARB_PATHS),
    "drift-arrival-sum": (_cfg(dynamics=("drift",), **QUANTUM), ARB_PATHS | {"feasibility_moves"}),
    "drift-arrivals-cheapest-parallel": (_cfg(dynamics=("drift",), arbitration="cheapest", latency_model="parallel",
                                              p_task=0.4, **QUANTUM), ARB_PATHS | {"notask", "feasibility_moves"}),
    "sustainable-arrival-sum": (_cfg(dynamics=("queues", "battery", "drift"), slot_s=4.0, battery_j=8.0,
                                     harvest_mean_j=2.0, p_tx_range_mw=HANDSET, p_task=0.8, **QUANTUM),
                                {"qdrop_cpu", "bdrop", "grant", "multi_cpu", "notask", "waited_cpu"}),
    "sustainable-cheapest-parallel": (_cfg(dynamics=("queues", "battery", "drift"), slot_s=4.0, battery_j=8.0,
                                           harvest_mean_j=2.0, p_tx_range_mw=HANDSET, arbitration="cheapest",
                                           latency_model="parallel", **QUANTUM),
                                      {"qdrop_cpu", "bdrop", "grant", "multi_cpu", "waited_cpu"}),
    "contention-equal-arrival-sum": (_cfg(dynamics=("contention",), **QUANTUM),
                                     ARB_PATHS | {"multi_offload", "multi_cpu"}),
    "contention-equal-cheapest-parallel": (_cfg(dynamics=("contention",), arbitration="cheapest",
                                                latency_model="parallel", **QUANTUM),
                                           ARB_PATHS | {"multi_offload", "multi_cpu"}),
    "contention-interference-arrival-sum": (_cfg(dynamics=("contention",), contention_uplink="interference",
                                                 **QUANTUM), ARB_PATHS | {"multi_offload", "multi_cpu"}),
    "contention-interference-cheapest-parallel": (_cfg(dynamics=("contention",), contention_uplink="interference",
                                                       arbitration="cheapest", latency_model="parallel", **QUANTUM),
                                                  ARB_PATHS | {"multi_offload", "multi_cpu"}),
    # not registered as scenarios, but the registry composes them: the battery under shared uplinks
    "contention-battery-equal-arrival-sum": (_cfg(dynamics=("battery", "contention"), battery_j=6.0,
                                                  harvest_mean_j=1.5, p_tx_range_mw=HANDSET, **QUANTUM),
                                             {"bdrop", "multi_offload", "multi_cpu"} | ARB_PATHS),
    "all-four-interference-cheapest-parallel": (
        _cfg(dynamics=("queues", "battery", "drift", "contention"), slot_s=4.0, battery_j=8.0, harvest_mean_j=2.0,
             p_tx_range_mw=HANDSET, contention_uplink="interference", arbitration="cheapest",
             latency_model="parallel", p_task=0.8, **QUANTUM),
        {"qdrop_cpu", "bdrop", "grant", "notask", "multi_offload"}),
    # short episodes: automatic resets inside the rollout (the slots after a reset start from a fresh carry)
    "sustainable-episode-boundaries": (_cfg(dynamics=("queues", "battery", "drift"), slots_per_episode=7, slot_s=4.0,
                                            battery_j=8.0, harvest_mean_j=2.0, p_tx_range_mw=HANDSET, p_task=0.8,
                                            **QUANTUM), {"qdrop_cpu", "bdrop", "grant", "notask", "resets"}),
    "contention-queues-equal-arrival-sum": (_cfg(dynamics=("queues", "contention"), slot_s=4.0, **QUANTUM),
                                            QUEUE_PATHS | {"multi_offload"}),
    "contention-queues-interference-cheapest-parallel": (
        _cfg(dynamics=("queues", "contention"), slot_s=4.0, contention_uplink="interference", arbitration="cheapest",
             latency_model="parallel", p_task=0.8, **QUANTUM), QUEUE_PATHS | {"multi_offload", "notask"}),
}


@functools.lru_cache(maxsize=None)
def _jitted(cfg: SystemConfig):
    env = MEQCEnv(cfg)
    return env, jax.jit(jax.vmap(env.reset)), jax.jit(jax.vmap(env.step))


def _np(tree):
    return jax.tree.map(lambda x: np.asarray(x), jax.device_get(tree))


def _at(tree, i):
    """Instance i of a batched pytree, floats as float64."""
    def one(x):
        x = np.asarray(x)[i]
        return x.astype(np.float64) if x.dtype.kind == "f" else x
    return jax.tree.map(one, tree)


def _actions(rng, N, U, E):
    server = rng.integers(0, E, (N, U)).astype(np.int32)
    kind = rng.random((N, U))
    interior = np.where(rng.random((N, U)) < 0.2, 1.0 - 10.0 ** rng.uniform(-4, -1, (N, U)), rng.random((N, U)))
    phi = np.where(kind < 0.35, 0.0, np.where(kind < 0.6, 1.0, interior)).astype(np.float32)
    return server, phi


def rollout(cfg: SystemConfig, seed: int, N: int = 3, T: int = 30):
    """[(state before, info cost, state after, server, phi, done)] over T slots of N instances (NumPy)."""
    env, reset, step = _jitted(cfg)
    U, E = cfg.num_users, cfg.num_servers
    rng = np.random.default_rng(seed)
    _, state = reset(jax.random.split(jax.random.key(seed), N))
    keys = jax.random.split(jax.random.key(seed + 1), T)
    out = []
    for t in range(T):
        server, phi = _actions(rng, N, U, E)
        _, nxt, _, done, info = step(jax.random.split(keys[t], N), state, (jnp.asarray(server), jnp.asarray(phi)))
        out.append((_np(state), _np(info["cost"]), _np(nxt), server, phi, np.asarray(done)))
        state = nxt
    return out


def _close(got, want, rtol=RTOL, atol=1e-9):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return bool(np.all(np.abs(got - want) <= rtol * np.abs(want) + atol))


def check_against_reference(cfg: SystemConfig, records) -> dict:
    """Compare every slot of every instance with the reference; returns the paths taken (counts)."""
    dyn = set(cfg.dynamics)
    n = dict.fromkeys(["slots", "ambiguous", "qdrop_cpu", "qdrop_qpu", "bdrop", "notask", "phi0", "phi1", "interior",
                       "grant", "arb_loser", "waited_cpu", "waited_qpu", "multi_cpu", "multi_qpu", "multi_offload",
                       "feasibility_moves"], 0)
    prev_feasible = {}
    n["resets"] = 0
    for t, (s0, cb, s1, server, phi, done) in enumerate(records):
        N = server.shape[0]
        for i in range(N):
            sc, tk, carry = _at(vars(s0.scenario), i), _at(vars(s0.tasks), i), _at(s0.carry, i)
            nxt = _at(s1.carry, i)
            if done[i]:  # the next state is a fresh episode: its carry is the reset's
                n["resets"] += 1
                check_reset_carry(cfg, _at(vars(s1.scenario), i), nxt)
            harvest = nxt["battery"]["harvest"] if "battery" in dyn and not done[i] else None
            arrival = np.asarray(cb.arrival)[i]
            ref = slot_reference(cfg, sc, tk, carry, server[i], phi[i], arrival, harvest)
            n["slots"] += 1
            if ref["ambiguous"]:  # a decision within float32 rounding of its threshold: either outcome is right
                n["ambiguous"] += 1
                continue
            where = f"slot {t}, instance {i}, server {server[i].tolist()}, phi {phi[i].tolist()}"
            got = {k: np.asarray(getattr(cb, k))[i] for k in (
                "per_user", "latency", "energy", "device_energy", "quantum", "dropped", "drop_reason", "has_task",
                "cpu_cycles", "qpu_seconds", "feasible")}
            assert np.array_equal(got["has_task"], ref["has_task"]), where
            assert np.array_equal(got["feasible"], ref["feasible"]), where
            assert np.array_equal(got["drop_reason"], ref["drop_reason"]), (where, got["drop_reason"], ref["drop_reason"])
            assert np.array_equal(got["dropped"], ref["dropped"]), where
            assert np.array_equal(got["quantum"], ref["quantum"]), (where, got["quantum"], ref["quantum"])
            assert np.array_equal(np.asarray(cb.requested)[i], ref["requested"]), where
            for k in ("per_user", "latency"):
                assert _close(got[k], ref[k]), (k, where, got[k], ref[k])
            for k in ("energy", "device_energy", "cpu_cycles", "qpu_seconds"):
                assert _close(got[k], ref[k], atol=1e-12), (k, where, got[k], ref[k])
            assert _close(np.asarray(cb.total)[i], ref["total"]), where
            if "queues" in dyn and not done[i]:
                q = ref["carry"]["queues"]
                for k, scale in (("cpu_backlog", "cpu_scale"), ("qpu_backlog", "qpu_scale")):
                    got_b = nxt["queues"][k]
                    assert np.all(np.abs(got_b - q[k]) <= RTOL * q[k] + 1e-5 * q[scale]), (k, where, got_b, q[k])
            if "battery" in dyn and not done[i]:
                b = nxt["battery"]["battery"]
                assert np.all(np.abs(b - ref["carry"]["battery"]["battery"])
                              <= RTOL * ref["carry"]["battery"]["battery"] + 1e-5 * cfg.battery_j), (where, b)
                assert np.all((b >= 0) & (b <= cfg.battery_j)), where
                assert np.all((harvest >= 0) & (harvest <= 2 * cfg.harvest_mean_j)), where
            if "drift" in dyn and not done[i]:  # observed one slot late: exactly this slot's t1_slot
                assert np.array_equal(nxt["drift"]["last_t1_slot"], np.asarray(s0.tasks.t1_slot)[i]), where
            # the paths taken
            has = ref["has_task"]
            n["notask"] += int((~has).sum())
            n["phi0"] += int((has & (phi[i] == 0)).sum())
            n["phi1"] += int((has & (phi[i] == 1)).sum())
            n["interior"] += int((has & (phi[i] > 0) & (phi[i] < 1)).sum())
            n["qdrop_cpu"] += int(((ref["drop_reason"] == DROP_QUEUE) & ~ref["requested"]).sum())
            n["qdrop_qpu"] += int(((ref["drop_reason"] == DROP_QUEUE) & ref["requested"]).sum())
            n["bdrop"] += int((ref["drop_reason"] == DROP_BATTERY).sum())
            n["grant"] += int(ref["quantum"].sum())
            served = ref["drop_reason"] == DROP_NONE
            n["arb_loser"] += int((ref["requested"] & served & ~ref["quantum"]).sum())
            n["waited_cpu"] += int(((ref["wait"] > 0) & (ref["cpu_cycles"] > 0)).sum())
            n["waited_qpu"] += int(((ref["wait"] > 0) & ref["quantum"]).sum())
            for e in range(cfg.num_servers):
                at = server[i] == e
                n["multi_cpu"] += int(((ref["cpu_cycles"] > 0) & at).sum() > 1)
                n["multi_qpu"] += int((ref["quantum"] & at).sum() > 1)
                n["multi_offload"] += int((has & (phi[i] < 1) & at).sum() > 1)
            if i in prev_feasible:
                n["feasibility_moves"] += int(not np.array_equal(prev_feasible[i], ref["feasible"]))
            prev_feasible[i] = ref["feasible"]
    return n


def check_reset_carry(cfg, sc, carry):
    """The carry after a reset (dynamics-spec 2-4): empty queues, a charge in battery_j [0.5, 1], t1 nominal."""
    if "queues" in cfg.dynamics:
        assert np.all(carry["queues"]["cpu_backlog"] == 0) and np.all(carry["queues"]["qpu_backlog"] == 0)
    if "battery" in cfg.dynamics:
        b = carry["battery"]["battery"]
        assert np.all((b >= 0.5 * cfg.battery_j) & (b <= cfg.battery_j)), b
    if "drift" in cfg.dynamics:
        np.testing.assert_array_equal(carry["drift"]["t1"], sc["t1"])
        np.testing.assert_array_equal(carry["drift"]["last_t1_slot"], sc["t1"])


@pytest.mark.parametrize("case", list(CASES))
def test_env_matches_the_reference_over_carried_slots(case):
    cfg, paths = CASES[case]
    seed = list(CASES).index(case) * 101 + 7
    n = check_against_reference(cfg, rollout(cfg, seed))
    assert n["ambiguous"] <= 0.02 * n["slots"], n
    for p in paths | {"phi0", "phi1", "interior"}:
        assert n[p] > 0, f"{case}: no {p} in {n}"
    if "queues" not in cfg.dynamics and "battery" not in cfg.dynamics:
        assert n["qdrop_cpu"] == n["qdrop_qpu"] == n["bdrop"] == 0, n


# ---------------------------------------------------------------------------- phi = 1 under queues
PHI1_CFGS = {rule: _cfg(num_users=5, num_servers=3, dynamics=("queues",), slot_s=4.0, arbitration=rule, **QUANTUM)
             for rule in ("cheapest", "arrival")}


@settings(max_examples=12, deadline=None, derandomize=True)
@given(rule=st.sampled_from(sorted(PHI1_CFGS)), seed=st.integers(0, 2**16), named=st.integers(0, 2),
       backlog_s=st.sampled_from([0.0, 30.0, 79.0, 500.0]), others_phi=st.sampled_from([0.0, 0.5]))
def test_a_task_kept_whole_at_home_pays_its_local_cost_at_any_named_server(rule, seed, named, backlog_s, others_phi):
    cfg = PHI1_CFGS[rule]
    env, reset, step = _jitted(cfg)
    U, E = cfg.num_users, cfg.num_servers
    _, state = reset(jax.random.split(jax.random.key(seed), 1))
    f_edge = state.scenario.f_edge
    # every server backlogged by `backlog_s` seconds on both queues; every user has a task
    carry = {**state.carry, "arrivals": {"has_task": jnp.ones((1, U), bool)},
             "queues": {"cpu_backlog": f_edge * backlog_s, "qpu_backlog": jnp.full((1, E), backlog_s)}}
    state = state.replace(carry=carry)
    u = U - 1  # last in index order (`cheapest`); under `arrival` wherever the draw puts it
    server = np.full((1, U), named, np.int32)
    phi = np.full((1, U), others_phi, np.float32)
    phi[0, u] = 1.0
    _, nxt, _, _, info = step(jax.random.split(jax.random.key(seed + 1), 1), state, (jnp.asarray(server),
                                                                                      jnp.asarray(phi)))
    cb, s0, s1 = _np(info["cost"]), _np(state), _np(nxt)
    sc, tk = _at(vars(s0.scenario), 0), _at(vars(s0.tasks), 0)
    t = user_terms(cfg, constants(cfg), sc, tk, u, named, 1.0, 0.0 + cfg.si.bandwidth, cfg.si.noise_power)
    lat, en, cost = combine(cfg, sc["lam_d"][u], sc["lam_e"][u], t["d_L"], t["e_L"], 0.0, 0.0)
    assert not cb.dropped[0, u] and cb.drop_reason[0, u] == DROP_NONE
    assert not cb.quantum[0, u]
    np.testing.assert_allclose(cb.per_user[0, u], cost, rtol=RTOL)
    np.testing.assert_allclose(cb.latency[0, u], lat, rtol=RTOL)
    np.testing.assert_allclose(cb.energy[0, u], en, rtol=RTOL)
    assert cb.cpu_cycles[0, u] == 0 and cb.qpu_seconds[0, u] == 0
    # it adds nothing to any backlog: the same next backlogs as with its task absent
    absent = state.replace(carry={**carry, "arrivals": {"has_task": jnp.ones((1, U), bool).at[0, u].set(False)}})
    _, nxt_absent, _, _, _ = step(jax.random.split(jax.random.key(seed + 1), 1), absent,
                                  (jnp.asarray(server), jnp.asarray(phi)))
    for k in ("cpu_backlog", "qpu_backlog"):
        np.testing.assert_array_equal(s1.carry["queues"][k], np.asarray(nxt_absent.carry["queues"][k]))
    # and the reference agrees on the whole slot
    ref = slot_reference(cfg, sc, tk, _at(s0.carry, 0), server[0], phi[0], cb.arrival[0])
    if not ref["ambiguous"]:
        np.testing.assert_allclose(cb.per_user[0], ref["per_user"], rtol=RTOL, atol=1e-9)
        np.testing.assert_array_equal(cb.drop_reason[0], ref["drop_reason"])


# ---------------------------------------------------------------------------- random laws
def _moments_ok(z, name):
    z = np.asarray(z, np.float64).ravel()
    m = z.size
    assert abs(z.mean()) < 4.0 / math.sqrt(m), (name, z.mean(), m)
    assert abs(z.var() - 1.0) < 4.0 * math.sqrt(2.0 / m), (name, z.var(), m)


def _lag1(z):
    """Lag-1 correlation along axis 0 of z [T, ...], pooled over the other axes."""
    a, b = z[:-1].ravel(), z[1:].ravel()
    return float(np.corrcoef(a, b)[0, 1]), a.size


def test_drift_innovations_jitter_and_late_observation():
    cfg = SystemConfig(num_users=2, num_servers=16, dynamics=("drift",), drift_rho=0.9, drift_sigma=0.7)
    N, T = 24, 40
    records = rollout(cfg, seed=2024, N=N, T=T)
    env = _jitted(cfg)[0]
    nom = np.asarray(records[0][0].scenario.t1, np.float64)  # [N, E]
    t1 = np.stack([np.asarray(r[0].carry["drift"]["t1"], np.float64) for r in records])  # [T, N, E] before slot t
    t1_next = np.stack([np.asarray(r[2].carry["drift"]["t1"], np.float64) for r in records])
    np.testing.assert_array_equal(t1[1:], t1_next[:-1])
    np.testing.assert_allclose(t1[0], nom, rtol=1e-6)  # reset: the nominal lifetime
    z = drift_innovation(cfg, nom[None], t1, t1_next)  # [T, N, E]
    assert np.all(np.abs(np.log(t1_next / nom)) < 8 * cfg.drift_sigma)  # inside the clip: z is the innovation
    _moments_ok(z, "drift innovation")
    r, m = _lag1(z)
    assert abs(r) < 4.0 / math.sqrt(m), ("lag-1 correlation of innovations", r)
    # the slot's lifetime: t1 exp(sigma_t1 z'), z' ~ N(0, 1), independent of the drift's innovation
    t1_slot = np.stack([np.asarray(r[0].tasks.t1_slot, np.float64) for r in records])
    zj = np.log(t1_slot / t1) / cfg.t1_jitter_sigma
    _moments_ok(zj, "jitter")
    r, m = _lag1(zj)
    assert abs(r) < 4.0 / math.sqrt(m), ("lag-1 correlation of the jitter", r)
    c = float(np.corrcoef(zj.ravel(), z.ravel())[0, 1])
    assert abs(c) < 4.0 / math.sqrt(zj.size), c
    # the observation: last slot's t1_slot exactly (the nominal value in the episode's first slot)
    for t, (s0, _, s1, _, _, _) in enumerate(records):
        last = np.asarray(s1.carry["drift"]["last_t1_slot"])
        np.testing.assert_array_equal(last, np.asarray(s0.tasks.t1_slot))
        if t == 0:
            np.testing.assert_allclose(np.asarray(s0.carry["drift"]["last_t1_slot"]), nom, rtol=1e-6)
    raw = jax.vmap(env.raw_observation)(jax.tree.map(jnp.asarray, records[-1][2]))["last_t1"]  # [N, U, E]
    np.testing.assert_array_equal(np.asarray(raw), np.broadcast_to(np.asarray(records[-1][0].tasks.t1_slot)[:, None],
                                                                   np.asarray(raw).shape))


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_drift_is_clipped_at_eight_spreads(side):
    cfg = SystemConfig(num_users=2, num_servers=3, dynamics=("drift",), drift_rho=0.98, drift_sigma=0.5)
    env, reset, step = _jitted(cfg)
    _, state = reset(jax.random.split(jax.random.key(5), 2))
    nom = state.scenario.t1
    far = nom * jnp.exp(side * 60.0 * cfg.drift_sigma)  # 0.98 * 60 spreads: beyond the clip for any sane z
    state = state.replace(carry={**state.carry, "drift": {**state.carry["drift"], "t1": far}})
    U = cfg.num_users
    _, nxt, _, _, _ = step(jax.random.split(jax.random.key(6), 2), state,
                           (jnp.zeros((2, U), jnp.int32), jnp.ones((2, U))))
    want = np.asarray(nom, np.float64) * math.exp(side * 8.0 * cfg.drift_sigma)
    np.testing.assert_allclose(np.asarray(nxt.carry["drift"]["t1"]), want, rtol=1e-5)
    # the next slot's lifetime is drawn around the drifted t1
    ratio = np.log(np.asarray(nxt.tasks.t1_slot, np.float64) / want) / cfg.t1_jitter_sigma
    assert np.all(np.abs(ratio) < 6.0)


def test_harvest_reset_charge_and_task_arrival_rates():
    cfg = SystemConfig(num_users=8, num_servers=2, dynamics=("battery",), battery_j=6.0, harvest_mean_j=1.5,
                       p_tx_range_mw=HANDSET, p_task=0.6)
    N, T = 16, 30
    records = rollout(cfg, seed=77, N=N, T=T)
    h = np.stack([np.asarray(r[2].carry["battery"]["harvest"], np.float64) for r in records])  # [T, N, U]
    hi = 2.0 * cfg.harvest_mean_j
    assert np.all((h >= 0) & (h <= hi))
    sd = hi / math.sqrt(12.0)
    assert abs(h.mean() - cfg.harvest_mean_j) < 4.0 * sd / math.sqrt(h.size), h.mean()
    assert abs(h.var() - sd**2) < 0.1 * sd**2, h.var()  # uniform, not e.g. a constant
    b0 = np.asarray(records[0][0].carry["battery"]["battery"], np.float64)  # after the reset: battery_j U[0.5, 1]
    assert np.all((b0 >= 0.5 * cfg.battery_j) & (b0 <= cfg.battery_j))
    assert abs(b0.mean() - 0.75 * cfg.battery_j) < 4.0 * (0.5 * cfg.battery_j / math.sqrt(12.0)) / math.sqrt(b0.size)
    has = np.stack([np.asarray(r[1].has_task) for r in records])
    sd = math.sqrt(cfg.p_task * (1 - cfg.p_task))
    assert abs(has.mean() - cfg.p_task) < 4.0 * sd / math.sqrt(has.size), has.mean()
    # and every slot of this rollout agrees with the reference too
    n = check_against_reference(cfg, records)
    assert n["bdrop"] > 0 and n["notask"] > 0, n
