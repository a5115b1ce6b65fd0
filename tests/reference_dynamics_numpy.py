"""An independent, literal float64 NumPy/Python reference of one slot under every dynamic.

Written from the text of `docs/spec/dynamics.md` (dynamics-spec sections 1-5 and 8) and, where it is silent,
the "Choice" bullets of `docs/model.md` ("Dynamics: state that carries between slots", "Contention"),
not from meqc_jax's code: plain loops over users and servers, in the spec's order of operations.
The paper's per-user terms (model-spec sections 5-7) reuse `tests/reference_numpy.py`'s constants and
quantum-hardware functions.

The random draws of a slot are the env's and are passed in: the arrival order (`info["cost"].arrival`,
lower arrives first), the carry before the slot (`has_task` included), the slot's tasks (`t1_slot`
already drifted) and, for the carry after the slot, the harvest draw and the drift innovation.

Order of the rules in a slot (docs/model.md, "Choice — the order of the rules in a slot"): arrivals
(a user without a task: nothing else applies), then the battery (each user's own e_dev), then the QPU
rule (Eq. 13b without queues, every feasible requester with queues) and the FIFO queues among the
tasks that remain, in arrival order.
"""

from __future__ import annotations

import math

import numpy as np

from reference_numpy import constants, eps_err, powers  # tests/ is on sys.path under pytest (rootdir conftest)

DROP_NONE, DROP_QUEUE, DROP_BATTERY = 0, 1, 2
# relative distance to a threshold (drop bound, battery charge, success threshold, cheapest tie) under
# which float32 rounding in the env may decide either way: such slots are reported as `ambiguous`
AMBIGUOUS_REL = 2e-5


def _near(a, b):
    return abs(a - b) <= AMBIGUOUS_REL * max(abs(a), abs(b), 1e-300)


def user_terms(cfg, c, sc, tk, u, e, phi, bandwidth, noise):
    """Model-spec sections 5 and 7 for user u at server e with split phi, uplink over `bandwidth` Hz
    against noise power `noise` W (the paper: B and sigma^2; contention changes one of them)."""
    s, n = float(tk["s"][u]), float(tk["n"][u])
    q = int(tk["q"][u])
    k = int(sc["k"][e])
    p = float(sc["p_tx"][u])
    cycles = s * n
    d_L = phi * cycles / float(sc["f_local"][u])
    e_L = c["gamma_chip"] * phi * cycles
    r = bandwidth * math.log2(1.0 + p * float(tk["g"][u][e]) / noise)
    d_O = (1.0 - phi) * 8.0 * s / r
    e_O = p * d_O
    d_E = (1.0 - phi) * cycles / float(sc["f_edge"][e])
    e_E = c["gamma_chip"] * (1.0 - phi) * cycles
    N1, N2, NM = 28 / 185 * 64**k, 64 / 185 * 64**k, 28 / 185 * 64**k
    w = s / c["unit"]
    d_Q = (1.0 - phi) * w * q * (c["tau1"] * N1 + c["tau2"] * N2 + c["taum"] * NM)
    P1, P2, PM = powers(float(tk["t1_slot"][e]), c)
    pw = P1 * N1 + P2 * N2 + PM * NM + c["PQ"] * 91**k
    e_Q = (1.0 - phi) * w * q * pw if cfg.energy_model == "paper" else d_Q * pw
    return dict(cycles=cycles, d_L=d_L, e_L=e_L, d_O=d_O, e_O=e_O, d_E=d_E, e_E=e_E, d_Q=d_Q, e_Q=e_Q)


def success(c, sc, tk, u, e):
    """(success probability M of Eq. 10, q <= qcap) for user u on server e at the slot's lifetime."""
    q, D, k = int(tk["q"][u]), int(tk["depth"][u]), int(sc["k"][e])
    M = 1.0 - q * D * c["eps_thr"] * (eps_err(float(tk["t1_slot"][e]), c) / c["eps_thr"]) ** (2**k)
    return M, q <= int(sc["phys_qubits"][e]) // 91**k


def combine(cfg, lam_d, lam_e, d_L, e_L, d_off, e_off):
    lat = d_L + d_off if cfg.latency_model == "sum" else max(d_L, d_off)
    en = e_L + e_off
    return lat, en, lam_d * lat + lam_e * en


def slot_reference(cfg, sc, tk, carry, server, phi, arrival, harvest=None):
    """One slot under `cfg.dynamics`, literally.

    sc, tk: the scenario's and slot's arrays (dicts of NumPy arrays; tk["t1_slot"] as the slot prices
    it); carry: the carry before the slot ({dynamic: {field: array}}); server [U] int and phi [U] in
    range; arrival [U] priorities (lower first); harvest [U] (battery only): the slot's draw.
    Returns per-user arrays, the carry after the slot (queues, battery; drift's `last_t1_slot`) and
    `ambiguous` (a decision within float32 rounding of its threshold).
    """
    c = constants(cfg)
    dyn = set(cfg.dynamics)
    U, E = len(sc["f_local"]), len(sc["f_edge"])
    server = [int(x) for x in server]
    phi = [float(x) for x in phi]
    lam_d = [float(x) for x in sc["lam_d"]]
    lam_e = [float(x) for x in sc["lam_e"]]
    queued, contended = "queues" in dyn, "contention" in dyn
    ambiguous = False

    # section 1: arrivals
    has_task = [bool(x) for x in carry["arrivals"]["has_task"]] if "arrivals" in carry else [True] * U

    # Eq. 11 at the slot's lifetime
    feasible = np.zeros((U, E), dtype=bool)
    for u in range(U):
        for e in range(E):
            M, fits = success(c, sc, tk, u, e)
            feasible[u, e] = fits and M >= c["thr"]
            if fits and _near(M, c["thr"]) and has_task[u] and server[u] == e and phi[u] < 1.0:
                ambiguous = True

    # section 8: the uplink each user transmits over (set before any drop: docs/model.md "who shares the
    # uplink": every user with a task offloading a part to e counts)
    offloaders = [[v for v in range(U) if has_task[v] and phi[v] < 1.0 and server[v] == e] for e in range(E)]
    terms = []
    for u in range(U):
        e = server[u]
        bw, noise = c["B"], c["sigma2"]
        if contended and has_task[u] and phi[u] < 1.0:
            if cfg.contention_uplink == "equal":
                bw = c["B"] / len(offloaders[e])
            else:
                noise = c["sigma2"] + sum(float(sc["p_tx"][v]) * float(tk["g"][v][e]) for v in offloaders[e] if v != u)
        terms.append(user_terms(cfg, c, sc, tk, u, e, phi[u], bw, noise))

    # section 3: the battery (each user's own device energy)
    reason = [DROP_NONE] * U
    if "battery" in dyn:
        charge = [float(x) for x in carry["battery"]["battery"]]
        for u in range(U):
            if has_task[u]:
                e_dev = terms[u]["e_L"] + terms[u]["e_O"]
                if e_dev > charge[u]:
                    reason[u] = DROP_BATTERY
                if _near(e_dev, charge[u]):
                    ambiguous = True
    alive = [has_task[u] and reason[u] == DROP_NONE for u in range(U)]

    # model-spec 8 / dynamics-spec 2: who runs on a QPU, who on a CPU
    requester = [alive[u] and phi[u] < 1.0 and bool(feasible[u, server[u]]) for u in range(U)]
    on_qpu = [False] * U
    if queued:
        on_qpu = list(requester)  # every feasible requester runs on the QPU
    else:
        for e in range(E):
            cands = [u for u in range(U) if requester[u] and server[u] == e]
            if not cands:
                continue
            if cfg.arbitration == "arrival":
                win = min(cands, key=lambda u: (float(arrival[u]), u))
            else:
                qcost = {u: combine(cfg, lam_d[u], lam_e[u], terms[u]["d_L"], terms[u]["e_L"],
                                    terms[u]["d_O"] + terms[u]["d_Q"], terms[u]["e_O"] + terms[u]["e_Q"])[2]
                         for u in cands}
                win = min(cands, key=lambda u: (qcost[u], u))
                if any(v != win and _near(qcost[v], qcost[win]) for v in cands):
                    ambiguous = True
            on_qpu[win] = True
    on_cpu = [alive[u] and phi[u] < 1.0 and not on_qpu[u] for u in range(U)]

    # section 8: processor sharing of e's CPUs without queues (among the tasks that run there)
    d_E = [terms[u]["d_E"] for u in range(U)]
    if contended and not queued:
        for u in range(U):
            if on_cpu[u]:
                m = sum(1 for v in range(U) if on_cpu[v] and server[v] == server[u])
                d_E[u] = terms[u]["d_E"] * m  # f_edge / m_e each

    # section 2: FIFO queues behind the backlog and the slot's earlier arrivals; sequential drops
    wait = [0.0] * U
    cpu_in, qpu_in = [0.0] * E, [0.0] * E  # admitted work: cycles, QPU seconds
    if queued:
        cpu_b = [float(x) for x in carry["queues"]["cpu_backlog"]]
        qpu_b = [float(x) for x in carry["queues"]["qpu_backlog"]]
        order = sorted(range(U), key=lambda u: (float(arrival[u]), u))
        for u in order:
            e = server[u]
            if on_cpu[u]:
                w = (cpu_b[e] + cpu_in[e]) / float(sc["f_edge"][e])
            elif on_qpu[u]:
                w = qpu_b[e] + qpu_in[e]
            else:
                continue
            if _near(w, cfg.max_wait):
                ambiguous = True
            if w > cfg.max_wait:
                reason[u] = DROP_QUEUE  # dropped: joins no queue, the next arrivals see the same wait
                continue
            wait[u] = w
            if on_cpu[u]:
                cpu_in[e] += (1.0 - phi[u]) * terms[u]["cycles"]
            else:
                qpu_in[e] += terms[u]["d_Q"]
    else:
        for u in range(U):
            if on_cpu[u]:
                cpu_in[server[u]] += (1.0 - phi[u]) * terms[u]["cycles"]
            elif on_qpu[u]:
                qpu_in[server[u]] += terms[u]["d_Q"]

    # assemble (section 5 for drops)
    out = {k: np.zeros(U) for k in ("per_user", "latency", "energy", "device_energy", "cpu_cycles", "qpu_seconds")}
    out["quantum"] = np.zeros(U, dtype=bool)
    out["dropped"] = np.array([r != DROP_NONE for r in reason])
    out["drop_reason"] = np.array(reason, dtype=np.int32)
    out["has_task"] = np.array(has_task)
    out["requested"] = np.array(requester)  # after the battery's drops (the order of the rules)
    out["wait"] = np.array(wait)
    for u in range(U):
        t = terms[u]
        if not has_task[u]:
            continue
        if reason[u] != DROP_NONE:
            out["per_user"][u] = lam_d[u] * cfg.drop_penalty
            out["latency"][u] = cfg.drop_penalty
            continue
        if on_qpu[u]:
            d_off, e_off = t["d_O"] + wait[u] + t["d_Q"], t["e_O"] + t["e_Q"]
            out["quantum"][u] = True
            out["qpu_seconds"][u] = t["d_Q"]
        elif on_cpu[u]:
            d_off, e_off = t["d_O"] + wait[u] + d_E[u], t["e_O"] + t["e_E"]
            out["cpu_cycles"][u] = (1.0 - phi[u]) * t["cycles"]
        else:  # phi = 1: the whole task at home, it waits for nothing
            d_off, e_off = 0.0, 0.0
        lat, en, cost = combine(cfg, lam_d[u], lam_e[u], t["d_L"], t["e_L"], d_off, e_off)
        out["latency"][u], out["energy"][u], out["per_user"][u] = lat, en, cost
        out["device_energy"][u] = t["e_L"] + t["e_O"]
    out["total"] = float(out["per_user"].sum())
    out["feasible"] = feasible

    # the carry after the slot
    nxt = {}
    if queued:
        tau = cfg.slot_s
        nxt["queues"] = {
            "cpu_backlog": np.array([max(cpu_b[e] + cpu_in[e] - float(sc["f_edge"][e]) * tau, 0.0) for e in range(E)]),
            "qpu_backlog": np.array([max(qpu_b[e] + qpu_in[e] - tau, 0.0) for e in range(E)]),
            # the scale of each update's terms (float32 cancellation near 0 is relative to it)
            "cpu_scale": np.array([cpu_b[e] + cpu_in[e] + float(sc["f_edge"][e]) * tau for e in range(E)]),
            "qpu_scale": np.array([qpu_b[e] + qpu_in[e] + tau for e in range(E)]),
        }
    if "battery" in dyn:
        cap = cfg.battery_j
        b = []
        for u in range(U):
            x = charge[u] - out["device_energy"][u]  # a dropped task, or none, spends nothing
            if harvest is not None:
                x = min(x + float(harvest[u]), cap)
            b.append(x)
        nxt["battery"] = {"battery": np.array(b)}
    if "drift" in dyn:
        nxt["drift"] = {"last_t1_slot": np.array(tk["t1_slot"], dtype=np.float64)}
    out["carry"] = nxt
    out["ambiguous"] = ambiguous
    return out


def drift_step(cfg, t1_nominal, t1, z):
    """Dynamics-spec 4: log t1' = log t1_nom + rho (log t1 - log t1_nom) + sigma sqrt(1 - rho^2) z, clipped at
    8 stationary spreads either side of log t1_nom (docs/model.md, "Choice — the drift's bound")."""
    rho, sigma = cfg.drift_rho, cfg.drift_sigma
    out = []
    for nom, x, zz in zip(t1_nominal, t1, z):
        ln = math.log(float(nom))
        y = ln + rho * (math.log(float(x)) - ln) + sigma * math.sqrt(1.0 - rho * rho) * float(zz)
        y = min(max(y, ln - 8.0 * sigma), ln + 8.0 * sigma)
        out.append(math.exp(y))
    return np.array(out)


def drift_innovation(cfg, t1_nominal, t1, t1_next):
    """The z that carried t1 to t1_next (the inverse of `drift_step` inside the clip)."""
    rho, sigma = cfg.drift_rho, cfg.drift_sigma
    ln = np.log(np.asarray(t1_nominal, np.float64))
    return (np.log(np.asarray(t1_next, np.float64)) - ln - rho * (np.log(np.asarray(t1, np.float64)) - ln)) / (
        sigma * math.sqrt(1.0 - rho * rho))
