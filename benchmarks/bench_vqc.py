"""VQC forward + backward time: the `jax` backend vs the `pennylane` backend vs the paper's torch QNode.

    python benchmarks/bench_vqc.py [--batch 4096] [--quick] [--inner 5] [--torch-threads 1] [--out benchmarks/results/vqc.json]

One step = the circuit's <Z_i> for a batch of angle vectors [B, 4] with shared weights [2, 4], then
the vector-Jacobian product of a random cotangent [B, 4] (the gradient of sum(expvals * cotangent))
w.r.t. both angles and weights. Measured side by side:
  * jax       -- `jax.jit` of `jax.vjp` of `circuit_expvals(angles [B, 4], weights, backend="jax")`,
                 the batched call the VQC torso makes;
  * pennylane -- the same with backend="pennylane" (default.qubit, interface="jax", backprop; the
                 QNode vmapped over the batch inside `circuit_expvals`);
  * torch     -- `benchmarks/torch_vqc.py`: a QNode with interface="torch" called once on the whole
                 [B, 4] batch (parameter broadcasting, as qml.qnn.TorchLayer does), not compiled,
                 backward by torch autograd. Torch runs on one intra-op thread by default: on a small
                 shared machine its thread pool's spin-waits made the step ~40x slower with 2 threads
                 on 2 busy cores (1.25 s vs 31 ms at batch 4096); `--torch-threads 0` keeps torch's default.
Timing protocol (`rounds`): the three take turns, one round after another, so slow phases of a
shared machine hit them alike. Within its turn each function runs `--inner` times back to back:
the first call (`cold`: caches evicted and XLA's thread pool parked by the 30 ms torch turn before
it) is recorded apart, the median of the rest is that round's `warm` time, the steady state a
training loop sees (it calls the circuit over and over inside one jitted program). Reported: medians
over rounds of both, and speedups as medians of per-round ratios of warm times (cold ratios too).
Compile time is the first call of each jitted function (trace + XLA compile). Writes JSON atomically.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from meqc_jax.agents.vqc import pennylane_qnode, circuit_expvals
from meqc_jax.io import atomic_write_json


def round_robin_times(fns: dict, min_rounds: int, min_total: float, inner: int = 5, max_rounds: int = 500):
    """Rounds in which every fn takes its turn: `inner` calls back to back, the first timed apart.

    Returns {name: {"cold": [per round], "warm": [per round: median of calls 2..inner]}}.
    """
    times = {name: {"cold": [], "warm": []} for name in fns}
    t_start = time.perf_counter()
    while True:
        for name, fn in fns.items():
            calls = []
            for _ in range(inner):
                t0 = time.perf_counter()
                fn()
                calls.append(time.perf_counter() - t0)
            times[name]["cold"].append(calls[0])
            times[name]["warm"].append(statistics.median(calls[1:]))
        n = len(times[next(iter(fns))]["cold"])
        if n >= max_rounds or (n >= min_rounds and time.perf_counter() - t_start >= min_total):
            return times


def jax_step(backend: str):
    def step(angles, weights, cotangent):
        out, vjp = jax.vjp(lambda a, w: circuit_expvals(a, w, backend), angles, weights)
        return (out,) + vjp(cotangent)

    return jax.jit(step)


def max_rel_diff(xs, ys) -> float:
    """Over the pairs (outputs, angle gradients, weight gradients): max |x - y| / max |y|."""
    worst = 0.0
    for x, y in zip(xs, ys):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        worst = max(worst, float(np.max(np.abs(x - y)) / np.max(np.abs(y))))
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--quick", action="store_true", help="fewer rounds (about 1 s)")
    ap.add_argument("--inner", type=int, default=5, help="calls per turn (the first is the cold one)")
    ap.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--no-torch", action="store_true",
                    help="skip the torch QNode (also skipped, with a note, when torch is not installed)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "vqc.json"))
    args = ap.parse_args()

    torch = None
    if not args.no_torch:
        try:
            import torch  # the torch reference (the `bench` extra) is imported only here
            from torch_vqc import TorchVQCStep
        except ImportError as err:
            print(f"torch QNode skipped: {err} (pip install -e '.[bench]' to include it)")
            torch = None
    if torch is not None and args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    rng = np.random.default_rng(0)
    B = args.batch
    angles_np = rng.uniform(-np.pi, np.pi, (B, 4)).astype(np.float32)
    weights_np = rng.uniform(0, 2 * np.pi, (2, 4)).astype(np.float32)
    cot_np = rng.normal(size=(B, 4)).astype(np.float32)
    angles, weights, cot = jnp.asarray(angles_np), jnp.asarray(weights_np), jnp.asarray(cot_np)

    pennylane_qnode()  # import PennyLane and build the QNode outside the compile timing
    steps, compile_s, outs = {}, {}, {}
    for backend in ("jax", "pennylane"):
        fn = jax_step(backend)
        t0 = time.perf_counter()
        outs[backend] = jax.block_until_ready(fn(angles, weights, cot))
        compile_s[backend] = time.perf_counter() - t0
        steps[backend] = (lambda fn=fn: jax.block_until_ready(fn(angles, weights, cot)))
    first_torch_s = None
    if torch is not None:
        torch_step = TorchVQCStep(angles_np, weights_np, cot_np)
        t0 = time.perf_counter()
        outs["torch"] = tuple(t.numpy() for t in torch_step())
        first_torch_s = time.perf_counter() - t0
        steps["torch"] = torch_step
    others = [name for name in ("pennylane", "torch") if name in steps]

    agreement = {
        "pennylane_vs_jax_max_rel": max_rel_diff(outs["pennylane"], outs["jax"]),
    }
    if "torch" in outs:
        agreement["torch_vs_jax_max_rel"] = max_rel_diff(outs["torch"], outs["jax"])

    min_rounds, min_total = (5, 1.0) if args.quick else (30, 10.0)
    times = round_robin_times(steps, min_rounds, min_total, inner=max(2, args.inner))
    med = {k: statistics.median(v["warm"]) for k, v in times.items()}
    cold = {k: 1e3 * statistics.median(v["cold"]) for k, v in times.items()}

    def ratio(name, kind):  # median over rounds of (name's time / jax's time) in the same round
        return statistics.median(o / j for o, j in zip(times[name][kind], times["jax"][kind]))

    speedup = {f"{name}_over_jax": ratio(name, "warm") for name in others}
    speedup_cold = {name: ratio(name, "cold") for name in others}
    results = {
        "benchmark": "vqc_forward_backward",
        "circuit": "AngleEmbedding(RX) + 2 x BasicEntanglerLayers(RX, CNOT ring) + <Z_i>, 4 qubits",
        "unit": "seconds per forward + backward of a batch (warm: median over rounds of each turn's "
                "median of calls 2..inner)",
        "protocol": "implementations alternate turns each round; in a turn each runs `inner` calls back to "
                    "back; `cold` is the first call of a turn (after the other implementations ran)",
        "batch": B,
        "rounds": len(times["jax"]["warm"]),
        "inner": max(2, args.inner),
        "time_s": med,
        "ms": {k: 1e3 * v for k, v in med.items()},
        "ms_cold": cold,
        "speedup_jax_vs": {name: speedup[name + "_over_jax"] for name in others},
        "speedup_jax_vs_cold": speedup_cold,
        "compile_s": compile_s,
        "torch_first_call_s": first_torch_s,
        "agreement": agreement,
        "dtype": "float32 inputs; jax and pennylane backends compute in float32 / complex64, the torch QNode "
                 "returns float64 (PennyLane simulates in complex128)",
        "device": str(jax.devices()[0]),
        "backend": jax.default_backend(),
        "jax_version": jax.__version__,
        "torch_version": torch.__version__ if torch is not None else None,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "pennylane_version": __import__("pennylane").__version__,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    atomic_write_json(args.out, results)

    print(f"batch {B}, {results['rounds']} rounds, device {results['device']}, {os.cpu_count()} CPUs")
    print(f"{'impl':>10} {'warm ms':>9} {'jax speedup':>12} {'cold ms':>9} {'cold speedup':>13} {'compile s':>10}")
    for name in ["jax"] + others:
        comp = f"{compile_s[name]:.2f}" if name in compile_s else "-"
        sp = "1.0" if name == "jax" else f"{speedup[name + '_over_jax']:.1f}x"
        spc = "1.0" if name == "jax" else f"{speedup_cold[name]:.1f}x"
        print(f"{name:>10} {results['ms'][name]:>9.3f} {sp:>12} {cold[name]:>9.3f} {spc:>13} {comp:>10}")
    print(f"agreement (max relative diff of outputs and gradients): {agreement}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
