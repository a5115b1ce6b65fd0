"""Benchmark-only: the MEQC step as a careful plain-NumPy implementation that loops over users.

This is the comparison point for `bench_env.py` ("how a straightforward simulator would be
written"): per-slot draws with a NumPy Generator, per-server QPU quantities once per slot, then a
Python loop over users for the cost terms (Eqs. 1-12) and a dictionary for the QPU arbitration.
It uses the same constants as meqc_jax (read from `SystemConfig.si`) so its costs can be
cross-checked against `slot_cost`.
"""

from __future__ import annotations

import math

import numpy as np

from meqc_jax import SystemConfig, physics


class NumpyMEQC:
    def __init__(self, config: SystemConfig, seed: int = 0):
        self.cfg = config
        self.si = si = config.si
        self.rng = np.random.default_rng(seed)
        self.bracket = physics.thermal_bracket(si)
        self.p2_per_t1 = physics.two_qubit_gate_power(1.0, si)  # P_2 is proportional to t1
        self.p_q = physics.qubit_static_power(si)
        self.grover = [math.floor(math.pi / 4 * math.sqrt(2.0**q)) for q in range(61)]

    # --- draws (spec 2-3) ---
    def reset(self):
        si, U, E, r = self.si, self.cfg.num_users, self.cfg.num_servers, self.rng
        ld, le = self.cfg.weights
        sc = dict(
            f_local=r.choice(si.f_local_choices, U), p_tx=r.uniform(*si.p_tx_range, U),
            f_edge=r.choice(si.f_edge_choices, E),
            phys_qubits=r.integers(si.phys_qubits_range[0], si.phys_qubits_range[1] + 1, E),
            k=r.choice(si.k_choices, E), t1=np.full(E, si.t1), lam_d=np.full(U, ld), lam_e=np.full(U, le),
        )
        return {"scenario": sc, "tasks": self.draw_tasks(sc), "t": 0}

    def draw_tasks(self, sc):
        si, U, E, r = self.si, self.cfg.num_users, self.cfg.num_servers, self.rng
        prims = r.integers(si.prims_range[0], si.prims_range[1] + 1, U)
        q = prims + 2 * si.c_b + 5
        return dict(
            s=r.integers(si.frames_range[0], si.frames_range[1] + 1, U) * float(si.bytes_per_frame),
            n=si.cycles_base * 2.0 ** r.integers(si.cycles_exponent_range[0], si.cycles_exponent_range[1] + 1, U),
            q=q, depth=3 * prims + np.array([self.grover[x] for x in q]),
            g=r.uniform(*si.gain_range, (U, E)),
            t1_slot=sc["t1"] * np.exp(si.t1_jitter_sigma * r.standard_normal(E)),
        )

    # --- cost (Eqs. 1-12, 13b) with a loop over users ---
    def slot_cost(self, sc, tk, server, phi):
        si, cfg = self.si, self.cfg
        U, E = len(phi), len(sc["f_edge"])
        eps, qcap, lat_unit, pow_unit = [], [], [], []
        for e in range(E):
            k = int(sc["k"][e])
            t1 = float(tk["t1_slot"][e])
            n1 = n_m = 28 / 185 * 64.0**k
            n2 = 64 / 185 * 64.0**k
            p2 = self.p2_per_t1 * t1
            eps.append(si.tau_step / (2 * t1) * self.bracket)
            qcap.append(int(sc["phys_qubits"][e]) // 91**k)
            lat_unit.append(si.tau_1 * n1 + si.tau_2 * n2 + si.tau_m * n_m)
            pow_unit.append(si.tau_1 / si.tau_step * p2 * n1 + p2 * n2 + si.tau_m / si.tau_step * p2 * n_m
                            + self.p_q * 91**k)
        ln2 = math.log(2.0)
        cost_c, cost_q, requested = [0.0] * U, [0.0] * U, [False] * U
        for u in range(U):
            e, p = int(server[u]), float(phi[u])
            s, n = float(tk["s"][u]), float(tk["n"][u])
            cyc, off = s * n, 1.0 - p
            d_l, e_l = p * cyc / sc["f_local"][u], si.chip_coeff * p * cyc
            rate = si.bandwidth * math.log1p(sc["p_tx"][u] * tk["g"][u, e] / si.noise_power) / ln2
            d_o = off * 8.0 * s / rate
            e_o = sc["p_tx"][u] * d_o
            d_e, e_e = off * cyc / sc["f_edge"][e], si.chip_coeff * off * cyc
            work = off * s / si.quantum_unit * tk["q"][u]
            d_q = work * lat_unit[e]
            e_q = (work if cfg.energy_model == "paper" else d_q) * pow_unit[e]
            ld, le = sc["lam_d"][u], sc["lam_e"][u]
            if cfg.latency_model == "sum":
                cost_c[u] = ld * (d_l + d_o + d_e) + le * (e_l + e_o + e_e)
                cost_q[u] = ld * (d_l + d_o + d_q) + le * (e_l + e_o + e_q)
            else:
                cost_c[u] = ld * max(d_l, d_o + d_e) + le * (e_l + e_o + e_e)
                cost_q[u] = ld * max(d_l, d_o + d_q) + le * (e_l + e_o + e_q)
            m = 1.0 - tk["q"][u] * tk["depth"][u] * si.eps_thr * min((eps[e] / si.eps_thr) ** (2 ** int(sc["k"][e])), 1e20)
            requested[u] = p < 1.0 and tk["q"][u] <= qcap[e] and m >= si.success_threshold
        # arbitration: one QPU task per server (Eq. 13b)
        prio = self.rng.uniform(size=U) if cfg.arbitration == "arrival" else cost_q
        best = {}
        for u in range(U):
            if requested[u]:
                e = int(server[u])
                if e not in best or prio[u] < prio[best[e]]:
                    best[e] = u
        granted = set(best.values())
        per_user = [cost_q[u] if u in granted else cost_c[u] for u in range(U)]
        return sum(per_user), per_user

    def step(self, state, server, phi):
        total, _ = self.slot_cost(state["scenario"], state["tasks"], server, phi)
        t = state["t"] + 1
        if t >= self.cfg.slots_per_episode:
            state = self.reset()
        else:
            state = {"scenario": state["scenario"], "tasks": self.draw_tasks(state["scenario"]), "t": t}
        return state, -total
