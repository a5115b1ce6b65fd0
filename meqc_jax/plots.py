"""Figures (matplotlib, headless), written atomically."""

from __future__ import annotations

import os
import tempfile

import numpy as np


def _save(fig, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path), suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=130, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def plot_learning_curve(path: str, cost: np.ndarray, baselines: dict, oracle: float, policy: float | None = None,
                        title: str = "") -> None:
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
    ax.axhline(oracle, color="k", lw=1.5, label=f"oracle ({oracle:.1f})")
    if policy is not None:
        ax.axhline(policy, color="C1", lw=1.5, ls="--", label=f"trained, deterministic ({policy:.1f})")
    ax.set_xlabel("epoch (500 slots)" if cost.shape[1] else "epoch")
    ax.set_ylabel("mean system cost per slot")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3, which="both")
    _save(fig, path)
    plt.close(fig)
