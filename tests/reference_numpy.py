"""An independent, literal float64 NumPy/Python transcription of the model spec (sections 5-9).

Written from the spec text, not from meqc_jax's code: plain loops over users and servers, every
constant converted from the configuration's paper units here. Tests compare `slot_cost` with it.
"""

from __future__ import annotations

import math

import numpy as np

HBAR = 1.054571817e-34
KB = 1.380649e-23


def constants(cfg):
    """Spec section 6 constants in SI, from the paper-unit fields of a SystemConfig."""
    c = {}
    c["omega"] = 2 * math.pi * cfg.qubit_freq_ghz * 1e9
    c["K"] = cfg.num_stages
    c["A"] = 10 ** (cfg.attenuation_db / 10)
    c["tau1"], c["tau2"], c["taum"] = cfg.tau_1_ns * 1e-9, cfg.tau_2_ns * 1e-9, cfg.tau_m_ns * 1e-9
    c["tau_step"] = max(c["tau1"], c["tau2"], c["taum"])
    K = c["K"]
    c["T"] = [cfg.t_qb_k * (cfg.t_gen_k / cfg.t_qb_k) ** ((i - 1) / (K - 1)) for i in range(1, K + 1)]  # T_1..T_K
    At = [0.0] + [c["A"] ** (i / (K - 1)) for i in range(1, K)]  # Ã_0..Ã_{K-1}
    At.append(At[K - 1])  # Ã_K = Ã_{K-1}
    c["At"] = At
    c["PQ"] = (cfg.t_ext_k / cfg.t_gen_k * cfg.q_gen_uw * 1e-6 + cfg.t_ext_k / cfg.t_hemt_k * cfg.q_hemt_uw * 1e-6
               + cfg.t_ext_k / cfg.t_para_k * cfg.q_para_nw * 1e-9)
    c["B"] = cfg.bandwidth_mhz * 1e6
    c["sigma2"] = 10 ** (cfg.noise_power_dbm / 10) * 1e-3
    c["gamma_chip"] = cfg.chip_coeff
    c["unit"] = cfg.quantum_unit_mb * 1e6
    c["eps_thr"] = cfg.eps_thr
    c["thr"] = cfg.success_threshold
    c["t_ext"] = cfg.t_ext_k
    return c


def n_be(T, omega):
    return 1.0 / (math.exp(HBAR * omega / (KB * T)) - 1.0)


def eps_err(t1, c):
    gamma = 1.0 / t1
    T, At, K = c["T"], c["At"], c["K"]
    s = 0.5 + n_be(T[0], c["omega"])
    for i in range(1, K):  # i = 1..K-1, T[i] is T_{i+1}
        s += (n_be(T[i], c["omega"]) - n_be(T[i - 1], c["omega"])) / At[i]
    return gamma * c["tau_step"] / 2 * s


def powers(t1, c):
    gamma = 1.0 / t1
    p_pi = HBAR * c["omega"] * math.pi**2 / (4 * gamma * c["tau1"] ** 2)
    T, At, K = c["T"], c["At"], c["K"]
    p2 = p_pi * sum((c["t_ext"] - T[i - 1]) / T[i - 1] * (At[i] - At[i - 1]) for i in range(1, K + 1))
    return c["tau1"] / c["tau_step"] * p2, p2, c["taum"] / c["tau_step"] * p2  # P1, P2, PM


def user_option(cfg, c, sc, tk, u, e, phi):
    """(latency, energy, cost) for user u at server e with split phi: classical and quantum options,
    plus whether (u, e) is feasible."""
    s, n = float(tk["s"][u]), float(tk["n"][u])
    q, D = int(tk["q"][u]), int(tk["depth"][u])
    fl, p = float(sc["f_local"][u]), float(sc["p_tx"][u])
    ld, le = float(sc["lam_d"][u]), float(sc["lam_e"][u])
    k = int(sc["k"][e])
    t1 = float(tk["t1_slot"][e])
    dL = phi * s * n / fl
    eL = c["gamma_chip"] * phi * s * n
    r = c["B"] * math.log2(1 + p * float(tk["g"][u][e]) / c["sigma2"])
    dO = (1 - phi) * s * 8 / r
    eO = p * dO
    dE = (1 - phi) * s * n / float(sc["f_edge"][e])
    eE = c["gamma_chip"] * (1 - phi) * s * n
    N1, N2, NM = 28 / 185 * 64**k, 64 / 185 * 64**k, 28 / 185 * 64**k
    w = s / c["unit"]
    dQ = (1 - phi) * w * q * (c["tau1"] * N1 + c["tau2"] * N2 + c["taum"] * NM)
    P1, P2, PM = powers(t1, c)
    pw = P1 * N1 + P2 * N2 + PM * NM + c["PQ"] * 91**k
    eQ = (1 - phi) * w * q * pw if cfg.energy_model == "paper" else dQ * pw

    def combine(d_off, e_off):
        lat = dL + d_off if cfg.latency_model == "sum" else max(dL, d_off)
        en = eL + e_off
        return lat, en, ld * lat + le * en

    qcap = int(sc["phys_qubits"][e]) // 91**k
    M = 1 - q * D * c["eps_thr"] * (eps_err(t1, c) / c["eps_thr"]) ** (2**k)
    feas = q <= qcap and M >= c["thr"]
    return combine(dO + dE, eO + eE), combine(dO + dQ, eO + eQ), feas


def slot_cost_reference(cfg, sc, tk, server, phi, granted=None):
    """Spec 8-9 with loops. Under `cheapest` the grants are computed here; under `arrival` the
    caller passes the grants to check (the random order is the implementation's)."""
    c = constants(cfg)
    U, E = len(sc["f_local"]), len(sc["f_edge"])
    feas = np.array([[user_option(cfg, c, sc, tk, u, e, 0.0)[2] for e in range(E)] for u in range(U)])
    opts = [user_option(cfg, c, sc, tk, u, int(server[u]), float(phi[u])) for u in range(U)]
    requested = [float(phi[u]) < 1.0 and feas[u, int(server[u])] for u in range(U)]
    if cfg.arbitration == "cheapest":
        granted = [False] * U
        for e in range(E):
            best = None
            for u in range(U):
                if requested[u] and int(server[u]) == e:
                    if best is None or opts[u][1][2] < opts[best][1][2]:
                        best = u
            if best is not None:
                granted[best] = True
    per_user, lat, en = [], [], []
    for u in range(U):
        o = opts[u][1] if granted[u] else opts[u][0]
        lat.append(o[0])
        en.append(o[1])
        per_user.append(o[2])
    return {
        "total": sum(per_user), "per_user": np.array(per_user), "latency": np.array(lat), "energy": np.array(en),
        "feasible": feas, "requested": np.array(requested), "granted": np.array(granted, dtype=bool),
    }
