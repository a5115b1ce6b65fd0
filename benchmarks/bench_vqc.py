"""VQC forward + backward time: the `jax` backend vs the `pennylane` backend vs the paper's torch QNode.

    python benchmarks/bench_vqc.py [--batch 4096] [--quick] [--torch-threads 1] [--out benchmarks/results/vqc.json]

One step = the circuit's <Z_i> for a batch of angle vectors [B, 4] with shared weights [2, 4], then
the vector-Jacobian product of a random cotangent [B, 4] (the gradient of sum(expvals * cotangent))
w.r.t. both angles and weights. Measured side by side:
  * jax       -- `jax.jit` of `jax.vjp` of `jax.vmap(circuit_expvals(..., backend="jax"))`;
  * pennylane -- the same with backend="pennylane" (default.qubit, interface="jax", backprop);
  * torch     -- `benchmarks/torch_vqc.py`: a QNode with interface="torch" called once on the whole
                 [B, 4] batch (parameter broadcasting, as qml.qnn.TorchLayer does), not compiled,
                 backward by torch autograd. Torch runs on one intra-op thread by default: on a small
                 shared machine its thread pool's spin-waits made the step ~40x slower with 2 threads
                 on 2 busy cores (1.25 s vs 31 ms at batch 4096); `--torch-threads 0` keeps torch's default.
The three are called in turn in every round (so machine noise hits them alike); times are medians
over rounds and speedups are medians of the per-round ratios (each function also timed back to
back, for reference). Compile time is the first call of each jitted function (trace + XLA
compile). Writes JSON atomically.
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

from meqc_jax.agents.vqc import _pennylane_qnode, circuit_expvals
from meqc_jax.io import atomic_write_json


def round_robin_times(fns: dict, min_reps: int, min_total: float, max_reps: int = 500):
    """Call every fn once per round until min_reps rounds and min_total seconds; per-fn time lists."""
    times = {name: [] for name in fns}
    t_start = time.perf_counter()
    while True:
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        n = len(times[next(iter(fns))])
        if n >= max_reps or (n >= min_reps and time.perf_counter() - t_start >= min_total):
            return times


def jax_step(backend: str):
    def step(angles, weights, cotangent):
        out, vjp = jax.vjp(lambda a, w: jax.vmap(lambda x: circuit_expvals(x, w, backend))(a), angles, weights)
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
    ap.add_argument("--quick", action="store_true", help="fewer repeats (about 1 s of rounds)")
    ap.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "vqc.json"))
    args = ap.parse_args()

    import torch  # the torch reference is imported only here
    from torch_vqc import TorchVQCStep

    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    rng = np.random.default_rng(0)
    B = args.batch
    angles_np = rng.uniform(-np.pi, np.pi, (B, 4)).astype(np.float32)
    weights_np = rng.uniform(0, 2 * np.pi, (2, 4)).astype(np.float32)
    cot_np = rng.normal(size=(B, 4)).astype(np.float32)
    angles, weights, cot = jnp.asarray(angles_np), jnp.asarray(weights_np), jnp.asarray(cot_np)

    _pennylane_qnode()  # import PennyLane and build the QNode outside the compile timing
    steps, compile_s, outs = {}, {}, {}
    for backend in ("jax", "pennylane"):
        fn = jax_step(backend)
        t0 = time.perf_counter()
        outs[backend] = jax.block_until_ready(fn(angles, weights, cot))
        compile_s[backend] = time.perf_counter() - t0
        steps[backend] = (lambda fn=fn: jax.block_until_ready(fn(angles, weights, cot)))
    torch_step = TorchVQCStep(angles_np, weights_np, cot_np)
    t0 = time.perf_counter()
    outs["torch"] = tuple(t.numpy() for t in torch_step())
    first_torch_s = time.perf_counter() - t0
    steps["torch"] = torch_step

    agreement = {
        "pennylane_vs_jax_max_rel": max_rel_diff(outs["pennylane"], outs["jax"]),
        "torch_vs_jax_max_rel": max_rel_diff(outs["torch"], outs["jax"]),
    }

    min_reps, min_total = (5, 1.0) if args.quick else (15, 5.0)
    times = round_robin_times(steps, min_reps, min_total)
    med = {k: statistics.median(v) for k, v in times.items()}
    # for reference: each function repeated back to back (warm caches and thread pool, no alternation)
    b2b = {k: 1e3 * statistics.median(round_robin_times({k: fn}, min_reps, min_total / 5)[k])
           for k, fn in steps.items()}
    speedup = {
        "pennylane_over_jax": statistics.median(p / j for p, j in zip(times["pennylane"], times["jax"])),
        "torch_over_jax": statistics.median(t / j for t, j in zip(times["torch"], times["jax"])),
    }
    results = {
        "benchmark": "vqc_forward_backward",
        "circuit": "AngleEmbedding(RX) + 2 x BasicEntanglerLayers(RX, CNOT ring) + <Z_i>, 4 qubits",
        "unit": "seconds per forward + backward of a batch (median over rounds)",
        "batch": B,
        "rounds": len(times["jax"]),
        "time_s": med,
        "ms": {k: 1e3 * v for k, v in med.items()},
        "ms_back_to_back": b2b,
        "speedup_jax_vs": {"pennylane": speedup["pennylane_over_jax"], "torch": speedup["torch_over_jax"]},
        "compile_s": compile_s,
        "torch_first_call_s": first_torch_s,
        "agreement": agreement,
        "dtype": "float32 inputs; jax and pennylane backends compute in float32 / complex64, the torch QNode "
                 "returns float64 (PennyLane simulates in complex128)",
        "device": str(jax.devices()[0]),
        "backend": jax.default_backend(),
        "jax_version": jax.__version__,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "pennylane_version": __import__("pennylane").__version__,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    atomic_write_json(args.out, results)

    print(f"batch {B}, {results['rounds']} rounds, device {results['device']}, {os.cpu_count()} CPUs")
    print(f"{'impl':>10} {'fwd+bwd ms':>11} {'jax speedup':>12} {'compile s':>10} {'back-to-back ms':>16}")
    for name in ("jax", "pennylane", "torch"):
        comp = f"{compile_s[name]:.2f}" if name in compile_s else "-"
        sp = "1.0" if name == "jax" else f"{speedup[name + '_over_jax']:.1f}x"
        print(f"{name:>10} {results['ms'][name]:>11.3f} {sp:>12} {comp:>10} {b2b[name]:>16.3f}")
    print(f"agreement (max relative diff of outputs and gradients): {agreement}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
