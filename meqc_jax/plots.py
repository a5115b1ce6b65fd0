"""Figures (matplotlib, headless), written atomically."""

from __future__ import annotations

import numpy as np

from meqc_jax.io import atomic_write_with


def save_figure(fig, path: str) -> None:
    """Write a matplotlib figure as PNG atomically (process 0 only in multi-process runs)."""
    atomic_write_with(path, lambda f: fig.savefig(f, format="png", dpi=130, bbox_inches="tight"), suffix=".png")


def plot_learning_curve(path: str, cost: np.ndarray, baselines: dict, oracle: float, policy: float | None = None,
                        title: str = "", reference: str = "oracle") -> None:
    """Training cost per epoch (mean +- std over seeds, `cost` [seeds, epochs]) with the baselines,
    the oracle and the trained policy's held-out cost as reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cost = np.atleast_2d(np.asarray(cost, dtype=np.float64))
    epochs = np.arange(1, cost.shape[1] + 1)
    mean, std = cost.mean(axis=0), cost.std(axis=0)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(epochs, mean, color="C0", lw=2, label=f"PPO training (mean of {cost.shape[0]} seed(s))")
    if cost.shape[0] > 1:
        ax.fill_between(epochs, mean - std, mean + std, color="C0", alpha=0.25, label="+-1 std over seeds")
    styles = ["--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1))]
    for i, (name, value) in enumerate(baselines.items()):
        ax.axhline(value, ls=styles[i % len(styles)], color=f"C{i + 2}", lw=1.2, label=f"{name} ({value:.1f})")
    ax.axhline(oracle, color="k", lw=1.5, label=f"{reference} ({oracle:.1f})")
    if policy is not None:
        ax.axhline(policy, color="C1", lw=1.5, ls="--", label=f"trained, deterministic ({policy:.1f})")
    ax.set_xlabel("epoch (500 slots)" if cost.shape[1] else "epoch")
    ax.set_ylabel("mean system cost per slot")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3, which="both")
    save_figure(fig, path)
    plt.close(fig)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_REF_STYLES = {"local": ("C3", ":"), "random_offloading": ("C4", "--"), "random_partitioning": ("C5", "-."),
               "greedy": ("C2", (0, (5, 1))), "oracle": ("k", "-")}
_POLICY_COLORS = {"mlp": "C0", "vqc": "C1"}


def plot_training_figure(path: str, data: dict, title: str = "", epoch_slots: int = 500) -> None:
    """Figs. 4-6: one panel per weight preset; training cost per epoch of each learned policy (mean
    +- std over seeds) and the held-out cost of the baselines and the oracle as horizontal lines."""
    plt = _plt()
    presets = list(data["presets"])
    fig, axes = plt.subplots(1, len(presets), figsize=(5.4 * len(presets), 4.2), squeeze=False)
    for ax, preset in zip(axes[0], presets):
        e = data["presets"][preset]
        for torso, curves in e["curves"].items():
            c = np.atleast_2d(np.asarray(curves, np.float64))
            x = np.arange(1, c.shape[1] + 1)
            m, s = c.mean(axis=0), c.std(axis=0)
            ax.plot(x, m, color=_POLICY_COLORS.get(torso, "C6"), lw=2,
                    label=f"{torso.upper()} PPO, training ({c.shape[0]} seed{'s' if c.shape[0] > 1 else ''})")
            if c.shape[0] > 1:
                ax.fill_between(x, m - s, m + s, color=_POLICY_COLORS.get(torso, "C6"), alpha=0.25)
            ax.axhline(e["final"][torso], color=_POLICY_COLORS.get(torso, "C6"), lw=1, ls="--",
                       label=f"{torso.upper()} held-out ({e['final'][torso]:.1f})")
        for name, (color, ls) in _REF_STYLES.items():
            if name in e["final"]:
                ax.axhline(e["final"][name], color=color, ls=ls, lw=1.3, label=f"{name} ({e['final'][name]:.1f})")
        ax.set_yscale("log")
        ax.set_xlabel(f"training epoch ({epoch_slots} slots each)")
        if ax is axes[0][0]:
            ax.set_ylabel("mean system cost per slot (Eq. 12)")
        ax.set_title(f"{preset} preset")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6.5, loc="upper right")
    fig.suptitle(title, y=1.02)
    save_figure(fig, path)
    plt.close(fig)


def plot_sweep_figure(path: str, data: dict, logx: bool = False, title: str = "") -> None:
    """Figs. 7-9: held-out cost of the learned policy, the baselines and the oracle at each sweep value."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.4))
    x = np.asarray(data["values"], np.float64)
    for name, cost in data["cost"].items():
        color, ls = _REF_STYLES.get(name, (_POLICY_COLORS.get(name, "C6"), "-"))
        lw = 2.2 if name in _POLICY_COLORS else 1.4
        ax.plot(x, cost, color=color, ls=ls, lw=lw, marker="o", ms=4,
                label=("MLP PPO (trained per point)" if name == "mlp" else name))
    if logx:
        ax.set_xscale("log")
    ax.set_yscale("log")
    _finish_cost_figure(plt, fig, ax, path, data["label"], title, 10)


def _finish_cost_figure(plt, fig, ax, path: str, xlabel: str, title: str, title_size: float) -> None:
    """Labels, grid and legend of a cost-vs-parameter figure; then write and close it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean system cost per slot (Eq. 12)")
    ax.set_title(title, fontsize=title_size)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    save_figure(fig, path)
    plt.close(fig)


def plot_sweep_lines(path: str, curves: dict, field: str, title: str = "") -> None:
    """`meqc sweep`'s default figure: cost vs one swept field, one line per policy with its 95 % interval
    (`curves[policy] = {"x", "cost", "ci95"}`); a log axis where the values span over a decade, categories
    where they are not numbers."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.4))
    xs = next(iter(curves.values()))["x"] if curves else []
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in xs)
    free = iter(["C0", "C1", "C6", "C7", "C8", "C9"] * 4)  # colours the baselines' styles leave free
    for name, c in curves.items():
        color, ls = _REF_STYLES[name] if name in _REF_STYLES else (next(free), "-")
        x = np.asarray(c["x"], np.float64) if numeric else np.arange(len(c["x"]))
        ax.errorbar(x, c["cost"], yerr=np.nan_to_num(np.asarray(c["ci95"], np.float64)), color=color, ls=ls, lw=1.6,
                    marker="o", ms=4, capsize=3, label=name)
    if numeric and xs and min(xs) > 0 and max(xs) / min(xs) > 10:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(np.arange(len(xs)), [str(v) for v in xs], fontsize=7)
    _finish_cost_figure(plt, fig, ax, path, field, title, 9)


def plot_qpu_map(path: str, data: dict) -> None:
    """Fig. 10: the oracle's share of users served by a QPU over qubit lifetime x latency weight,
    one heat map per energy model."""
    plt = _plt()
    models = list(data["models"])
    fig, axes = plt.subplots(1, len(models), figsize=(5.6 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        share = 100 * np.asarray(data["models"][model]["qpu_share"], np.float64)
        im = ax.imshow(share, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=max(1.0, share.max()))
        ax.set_xticks(range(len(data["t1_ms"])), [f"{t:g}" for t in data["t1_ms"]], fontsize=7)
        ax.set_yticks(range(len(data["lam_d"])), [f"{v:g}" for v in data["lam_d"]])
        ax.set_xlabel("qubit lifetime t1 (ms)")
        ax.set_ylabel("latency weight lam_d (lam_e = 1 - lam_d)")
        ax.set_title(f"energy model: {model}")
        for i in range(share.shape[0]):
            for j in range(share.shape[1]):
                ax.text(j, i, f"{share[i, j]:.0f}", ha="center", va="center", fontsize=6,
                        color="w" if share[i, j] < 0.6 * max(1.0, share.max()) else "k")
        fig.colorbar(im, ax=ax, label="users served by a QPU (%)")
    fig.suptitle("Fig. 10: where the QPU pays: the oracle's share of users served by a QPU "
                 "(>= 1 % of the task offloaded), U = E = 10", y=1.03)
    save_figure(fig, path)
    plt.close(fig)


def plot_dynamics_part(path: str, data: dict, title: str = "") -> None:
    """A dynamics part (experiments/sustainable.py): cost per slot over the episode for every policy, total
    cost vs V for drift-plus-penalty with greedy and PPO as lines, and each policy's gap to the
    clairvoyant bound on small instances, and every learner's training curve against its environment steps."""
    plt = _plt()
    fig, (a0, a1, a2, a3) = plt.subplots(1, 4, figsize=(20, 4.2))
    shown = ["local", "random_offloading", "greedy", data["best_lyapunov"], "ppo"]
    for i, name in enumerate(shown):
        c = np.asarray(data["series"][name]["cost"])
        w = max(1, len(c) // 25)
        smooth = np.convolve(c, np.ones(w) / w, mode="valid")
        a0.plot(np.arange(len(smooth)) + w, smooth, color=f"C{i}", lw=1.5, label=name)
    a0.set_xlabel("slot of the episode")
    a0.set_ylabel("system cost per slot (moving average)")
    a0.set_yscale("log")
    a0.legend(fontsize=8)
    v = np.array([row[1] for row in data["v_grid"]])
    cost = np.array([row[2] for row in data["v_grid"]])
    order = np.argsort(v, kind="stable")
    a1.plot(v[order], cost[order], "o-", color="C3", label="lyapunov (each theta)")
    for name, ls, col in (("greedy", "--", "C2"), ("ppo", "-", "C4")):
        a1.axhline(data["summary"][name]["mean_cost"], ls=ls, color=col, label=name)
    a1.set_xscale("log")
    a1.set_xlabel("V (weight of the cost in drift-plus-penalty)")
    a1.set_ylabel("mean cost per slot")
    a1.legend(fontsize=8)
    gaps = data["bound"]["gap"]
    names = [n for n in gaps if not n.startswith("lyapunov") or n == data["bound"]["best_lyapunov"]]
    a2.bar(range(len(names)), [gaps[n] for n in names], color=[f"C{i}" for i in range(len(names))])
    a2.axhline(1.0, color="k", lw=1)
    a2.set_xticks(range(len(names)), [n.replace("(", "\n(") for n in names], fontsize=7, rotation=30)
    a2.set_ylabel(f"cost / clairvoyant bound (U = E = {data['bound']['size']}, H = {data['bound']['horizon']})")
    curves = [("ppo", data["train_curve"], data.get("ppo_compute"))]
    curves += [(n, r["train_curve"], r.get("compute")) for n, r in data.get("learners", {}).items()]
    # against environment steps where the learners count them (a user's learner may not: then against epochs)
    by_steps = any(c and c.get("env_steps") for _, _, c in curves)
    for i, (name, curve, compute) in enumerate(curves):
        curve = np.asarray(curve, float)
        steps = (compute or {}).get("env_steps")
        if not np.isfinite(curve).any() or (by_steps and not steps):  # no training cost, or not on this axis
            continue
        x = np.arange(1, len(curve) + 1) * (steps / len(curve) if by_steps else 1.0)
        a3.plot(x, curve, color=f"C{i + 4}", lw=1.5, label=name)
    a3.axhline(data["summary"][data["best_lyapunov"]]["mean_cost"], ls=":", color="C3", label=data["best_lyapunov"])
    a3.set_xscale("log")
    a3.set_xlabel("environment steps of training" if by_steps else "training epoch")
    a3.set_ylabel("training cost per slot")
    a3.legend(fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path)
    plt.close(fig)


def plot_contention_part(path: str, data: dict) -> None:
    """The contention part (experiments/contention.py): cost per slot vs users per server for every
    yardstick, the price of anarchy (best response and greedy over the optimum) vs load, and every
    learner's cost over the optimum at the two sizes compared."""
    plt = _plt()
    fig, (a0, a1, a2) = plt.subplots(1, 3, figsize=(15, 4.2))
    load = data["load"]
    x = [r["users_per_server"] for r in load]
    names = list(load[0]["mean_cost"])
    for i, name in enumerate(names):
        color, ls = _REF_STYLES.get(name, (f"C{(i + 6) % 10}", "-"))
        if name == "joint_optimum":
            color, ls = "k", "-"
        a0.errorbar(x, [r["mean_cost"][name] for r in load], yerr=[r["ci95"][name] for r in load], color=color,
                    ls=ls, marker="o", ms=4, lw=1.5, capsize=2, label=name)
    a0.set_xlabel(f"users per server (E = {load[0]['servers']})")
    a0.set_ylabel("mean system cost per slot")
    a0.set_yscale("log")
    a0.legend(fontsize=8)
    for name, color in (("best_response", "C1"), ("greedy", "C2")):
        ratio = [r["over_optimum"][name]["ratio"] for r in load]
        ci = [r["over_optimum"][name]["ci95"] for r in load]
        a1.errorbar(x, ratio, yerr=ci, color=color, marker="o", capsize=2, label=name)
    a1.axhline(1.0, color="k", lw=1)
    a1.set_xlabel("users per server")
    a1.set_ylabel("cost / exact optimum")
    a1.set_title("price of anarchy (best_response) and greedy", fontsize=9)
    a1.legend(fontsize=8)
    groups = data["learners"]
    shown = [n for n in groups[0]["over_optimum"] if n not in ("local", "random_offloading", "joint_optimum")]
    width = 0.8 / len(groups)
    for j, r in enumerate(groups):
        vals = [r["over_optimum"][n]["ratio"] for n in shown]
        errs = [r["over_optimum"][n]["ci95"] for n in shown]
        a2.bar(np.arange(len(shown)) + j * width, vals, width, yerr=errs, capsize=2, color=f"C{j}",
               label=f"U = {r['users']}, E = {r['servers']}")
    a2.axhline(1.0, color="k", lw=1)
    a2.set_xticks(np.arange(len(shown)) + width * (len(groups) - 1) / 2, shown, fontsize=8, rotation=20)
    a2.set_ylabel("cost / exact optimum")
    a2.legend(fontsize=8)
    fig.suptitle(f"{data['scenario']}: contention for uplinks and edge CPUs")
    save_figure(fig, path)
    plt.close(fig)
