"""Benchmark-only: the same hybrid multi-agent PPO written the way the paper's stack would be.

PyTorch modules per agent, one environment (`numpy_env.NumpyMEQC`, a NumPy loop over users)
stepped in Python, a Python loop over the agents' modules for acting and for updating. Same
networks (two actor-critics of 2 x 256 tanh layers per agent, categorical x clipped Gaussian),
same losses (per-critic advantages, clipped objectives, value losses, entropy bonus), same
schedule (2 passes per epoch over shuffled minibatches, Adam, per-agent gradient clipping).
Used only by `bench_train.py` for side-by-side timing; never imported by the package.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ActorCritic(nn.Module):
    def __init__(self, obs_dim: int, num_servers: int, hidden: int = 256):
        super().__init__()

        def torso():
            return nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())

        self.torso_d, self.torso_c = torso(), torso()
        self.logits, self.value_d = nn.Linear(hidden, num_servers), nn.Linear(hidden, 1)
        self.mean, self.value_c = nn.Linear(hidden, 1), nn.Linear(hidden, 1)
        self.log_std = nn.Parameter(torch.tensor(-0.5))

    def forward(self, obs):
        zd, zc = self.torso_d(obs), self.torso_c(obs)
        return self.logits(zd), self.value_d(zd)[..., 0], self.mean(zc)[..., 0], self.log_std, self.value_c(zc)[..., 0]


def _observe(sim, state):
    """The env's observation (spec 10) from the NumPy state, same scaling as meqc_jax.env."""
    sc, tk, si = state["scenario"], state["tasks"], sim.si
    U, E = len(sc["f_local"]), len(sc["f_edge"])
    q_max = si.prims_range[1] + 2 * si.c_b + 5
    user = np.stack([sc["f_local"] / max(si.f_local_choices), tk["s"] / (si.frames_range[1] * si.bytes_per_frame),
                     np.log2(tk["n"] / si.cycles_base) / si.cycles_exponent_range[1], tk["q"] / q_max,
                     tk["depth"] / 6460.0, sc["p_tx"] / si.p_tx_range[1]], axis=1)
    qcap = sc["phys_qubits"] // 91 ** sc["k"]
    server = np.concatenate([sc["f_edge"] / max(si.f_edge_choices), np.minimum(qcap / q_max, 4.0),
                             sc["k"] / max(si.k_choices)])
    return np.concatenate([user, tk["g"] / si.gain_range[1], np.broadcast_to(server, (U, 3 * E))], axis=1).astype(np.float32)


class TorchPPO:
    def __init__(self, sim, slots: int, update_epochs=2, minibatch=128, lr=1e-3, clip=0.2, vf=0.5, ent=0.003,
                 max_grad_norm=0.5, scale=1.0, seed=0):
        torch.manual_seed(seed)
        self.sim, self.T = sim, slots
        self.U, self.E = sim.cfg.num_users, sim.cfg.num_servers
        self.obs_dim = 6 + 4 * self.E
        self.agents = [ActorCritic(self.obs_dim, self.E) for _ in range(self.U)]
        self.opts = [torch.optim.Adam(a.parameters(), lr=lr, eps=1e-5) for a in self.agents]
        self.update_epochs, self.minibatch = update_epochs, minibatch
        self.clip, self.vf, self.ent, self.max_grad_norm, self.scale = clip, vf, ent, max_grad_norm, scale
        self.state = sim.reset()
        self.rng = np.random.default_rng(seed)

    def epoch(self):
        T, U = self.T, self.U
        obs_buf = np.zeros((T, U, self.obs_dim), np.float32)
        srv_buf, x_buf = np.zeros((T, U), np.int64), np.zeros((T, U), np.float32)
        lpd_buf, lpc_buf = np.zeros((T, U), np.float32), np.zeros((T, U), np.float32)
        vd_buf, vc_buf, r_buf = np.zeros((T, U), np.float32), np.zeros((T, U), np.float32), np.zeros((T, U), np.float32)
        for t in range(T):
            obs = _observe(self.sim, self.state)
            obs_buf[t] = obs
            with torch.no_grad():
                for u, agent in enumerate(self.agents):  # a Python loop over the agents' modules
                    logits, vd, mean, log_std, vc = agent(torch.from_numpy(obs[u]))
                    dist_d = torch.distributions.Categorical(logits=logits)
                    dist_c = torch.distributions.Normal(mean, log_std.exp())
                    a, x = dist_d.sample(), dist_c.sample()
                    srv_buf[t, u], x_buf[t, u] = int(a), float(x)
                    lpd_buf[t, u], lpc_buf[t, u] = float(dist_d.log_prob(a)), float(dist_c.log_prob(x))
                    vd_buf[t, u], vc_buf[t, u] = float(vd), float(vc)
            sc, tk = self.state["scenario"], self.state["tasks"]
            _, per_user = self.sim.slot_cost(sc, tk, srv_buf[t], np.clip(x_buf[t], 0.0, 1.0))
            r_buf[t] = -np.asarray(per_user) / self.scale
            self.state, _ = self.sim.step(self.state, srv_buf[t], np.clip(x_buf[t], 0.0, 1.0))
        # discount 0 (the project default): advantage = reward - value, target = reward
        for u, (agent, opt) in enumerate(zip(self.agents, self.opts)):
            data = [torch.from_numpy(a[:, u]) for a in (obs_buf, srv_buf, x_buf, lpd_buf, lpc_buf, vd_buf, vc_buf, r_buf)]
            obs, srv, x, old_d, old_c, vd_old, vc_old, r = data
            adv_d, adv_c = r - vd_old, r - vc_old
            for _ in range(self.update_epochs):
                perm = torch.from_numpy(self.rng.permutation(T))
                for start in range(0, T, self.minibatch):
                    idx = perm[start:start + self.minibatch]
                    logits, vd, mean, log_std, vc = agent(obs[idx])
                    dist_d = torch.distributions.Categorical(logits=logits)
                    dist_c = torch.distributions.Normal(mean, log_std.exp())

                    def clipped(logp, old, adv):
                        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                        ratio = (logp - old).exp()
                        return -torch.min(ratio * adv, ratio.clamp(1 - self.clip, 1 + self.clip) * adv).mean()

                    loss = (clipped(dist_d.log_prob(srv[idx]), old_d[idx], adv_d[idx])
                            + clipped(dist_c.log_prob(x[idx]), old_c[idx], adv_c[idx])
                            + self.vf * 0.5 * (((vd - r[idx]) ** 2).mean() + ((vc - r[idx]) ** 2).mean())
                            - self.ent * (dist_d.entropy().mean() + dist_c.entropy().mean()))
                    opt.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(agent.parameters(), self.max_grad_norm)
                    opt.step()
        return float(-r_buf.mean() * self.scale)
