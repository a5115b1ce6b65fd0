"""Training throughput: agent-steps per second of full PPO training (rollout + updates), side by side.

    python benchmarks/bench_train.py [--users 10 --servers 10 --envs 64 --epochs 2] [--out ...]

In one run, at U = E (default 10):
  * jax   -- `meqc_jax.learners.ppo` with the project's defaults (2 x 256 actor-critics per agent, two
             update passes), `--envs` environments, `--epochs` epochs of 500 slots timed after
             compilation (median of `--repeats` calls);
  * torch -- `benchmarks/torch_ppo.py`: the same algorithm, networks and update schedule written
             the paper's way (one NumPy environment stepped in Python, a Python loop over the
             agents' PyTorch modules), one epoch of 500 slots timed after a warm-up epoch;
  * flops -- the networks' FLOPs per agent-step (one forward while acting, forward + backward ~
             3 forwards per update pass) times the JAX rate, against the machine's fp32 matmul
             rate measured here with a large jitted `jnp.dot`.
Needs the `bench` extra (PyTorch). Writes benchmarks/results/train.json (atomically).
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from meqc_jax import SystemConfig  # noqa: E402
from meqc_jax.io import atomic_write_json  # noqa: E402
from meqc_jax.learners.ppo import PPOConfig, make_train  # noqa: E402


def network_flops(obs_dim: int, num_servers: int, hidden: tuple[int, ...]) -> int:
    """FLOPs (2 per multiply-add) of one agent's forward pass through both actor-critics."""
    macs = 0
    for heads in (num_servers + 1, 2):  # discrete: logits + V^D; continuous: mean + V^C
        width = obs_dim
        for h in hidden:
            macs += width * h
            width = h
        macs += width * heads
    return 2 * macs


def matmul_rate(n: int = 2048, repeats: int = 10) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.dot)
    f(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a, b).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def bench_jax(system: SystemConfig, envs: int, epochs: int, repeats: int):
    trainer = make_train(system, PPOConfig(num_envs=envs, epochs=epochs))
    state = jax.jit(trainer.init)(jax.random.key(0))
    run = jax.jit(trainer.train_chunk, static_argnums=1)
    t0 = time.perf_counter()
    state, m = run(state, epochs)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, m = run(state, epochs)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    steps = epochs * system.slots_per_episode * envs * system.num_users
    return {"agent_steps_per_s": steps / statistics.median(times), "epoch_s": statistics.median(times) / epochs,
            "compile_s": compile_s, "hidden": list(trainer.ppo.hidden), "update_epochs": trainer.ppo.update_epochs,
            "obs_dim": trainer.obs_dim, "scale": trainer.scale}


def bench_torch(system: SystemConfig, scale: float, threads: int | None):
    import torch

    from numpy_env import NumpyMEQC
    from torch_ppo import TorchPPO

    if threads:
        torch.set_num_threads(threads)
    ref = TorchPPO(NumpyMEQC(system, seed=0), slots=system.slots_per_episode, scale=scale)
    ref.epoch()  # warm-up
    t0 = time.perf_counter()
    ref.epoch()
    t = time.perf_counter() - t0
    return {"agent_steps_per_s": system.slots_per_episode * system.num_users / t, "epoch_s": t,
            "torch_version": torch.__version__, "torch_threads": torch.get_num_threads()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--servers", type=int, default=10)
    ap.add_argument("--envs", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--slots", type=int, default=None, help="slots per epoch (default: the paper's 500)")
    ap.add_argument("--torch-threads", type=int, default=None)
    ap.add_argument("--no-torch", action="store_true", help="jax only (e.g. on a GPU machine without the bench extra)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "train.json"))
    args = ap.parse_args()
    system = SystemConfig(num_users=args.users, num_servers=args.servers,
                          **({} if args.slots is None else {"slots_per_episode": args.slots}))
    j = bench_jax(system, args.envs, args.epochs, args.repeats)
    print(f"jax   : {j['agent_steps_per_s']:.4g} agent-steps/s ({j['epoch_s']:.2f} s/epoch at {args.envs} envs, "
          f"compile {j['compile_s']:.1f} s)", flush=True)
    t = None
    if not args.no_torch:
        t = bench_torch(system, j["scale"], args.torch_threads)
        print(f"torch : {t['agent_steps_per_s']:.4g} agent-steps/s ({t['epoch_s']:.2f} s/epoch, 1 env)", flush=True)
    per_step = network_flops(j["obs_dim"], args.servers, tuple(j["hidden"])) * (1 + 3 * j["update_epochs"])
    rate = matmul_rate()
    achieved = per_step * j["agent_steps_per_s"]
    result = {
        "benchmark": "train", "users": args.users, "servers": args.servers, "envs": args.envs,
        "slots_per_epoch": system.slots_per_episode,
        "device": str(jax.devices()[0]), "backend": jax.default_backend(), "jax_version": jax.__version__,
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "jax": j, "torch": t, "speedup_jax_over_torch": j["agent_steps_per_s"] / t["agent_steps_per_s"] if t else None,
        "flops_per_agent_step": per_step, "achieved_flop_rate": achieved, "matmul_flop_rate": rate,
        "flop_rate_fraction_of_matmul": achieved / rate,
    }
    if t:
        print(f"speedup jax / torch: {result['speedup_jax_over_torch']:.1f}x")
    print(f"network FLOP rate {achieved / 1e9:.1f} GFLOP/s = {100 * achieved / rate:.0f} % of the fp32 matmul rate "
          f"({rate / 1e9:.1f} GFLOP/s)")
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
