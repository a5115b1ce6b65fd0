"""How the cost grows with the work: env step vs instances N and vs U = E; training vs environments.

    python benchmarks/bench_scaling.py [--quick] [--parts env_n,env_ue,train] [--max-n 65536]
                                       [--out benchmarks/results/scaling.json]

Parts (each point compiled once, then timed as the median of repeated calls):
  * env_n  -- one `jax.jit(jax.vmap(env.step))` call on N instances, U = E = 10, N = 1, 4, ..., --max-n;
  * env_ue -- the same at N = 1024 (--quick: 256) for U = E = 5 ... 100;
  * train  -- one PPO epoch (`PPOLearner.train_chunk_batch`, rollout + GAE + updates; 50 slots per epoch so that large
              environment counts fit a CPU) at U = E = 10 for 4 ... 1024 environments: agent-steps/s.
Memory per point: XLA's buffer plan of the compiled program (arguments + outputs + temporaries -
aliased, `Compiled.memory_analysis()`: what the device must hold at the peak), the device's own peak
counter where it has one (GPUs), and the process's peak RSS so far (on CPU the device is the host).
Batch axes are split over all visible devices when their sizes allow (`meqc_jax.sharding`).
Writes the JSON atomically after every point and a 4-panel PNG next to it (same name, .png).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_env import median_chunk_time, median_time  # noqa: E402

from meqc_jax import MEQCEnv, SystemConfig, sharding
from meqc_jax.io import atomic_write_json
from meqc_jax.learners.ppo import STATE_BATCH_AXES, PPOConfig, make_train

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def memory(compiled) -> dict:
    out = {"process_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    try:
        ma = compiled.memory_analysis()
        out["xla_plan_bytes"] = int(ma.argument_size_in_bytes + ma.output_size_in_bytes + ma.temp_size_in_bytes
                                    - ma.alias_size_in_bytes)
        out["xla_temp_bytes"] = int(ma.temp_size_in_bytes)
    except Exception as e:  # not every backend reports it
        out["xla_plan_error"] = repr(e)
    stats = jax.devices()[0].memory_stats()
    if stats and "peak_bytes_in_use" in stats:
        out["device_peak_bytes"] = int(stats["peak_bytes_in_use"])
    return out


def env_point(users: int, n: int) -> dict:
    cfg = SystemConfig(num_users=users, num_servers=users)
    env = MEQCEnv(cfg)
    mesh = sharding.batch_mesh(("envs",), (n,))
    keys = sharding.place(jax.random.split(jax.random.key(0), n), mesh)
    _, states = jax.jit(jax.vmap(env.reset))(keys)
    ka, kp = jax.random.split(jax.random.key(1))
    action = sharding.place((jax.random.randint(ka, (n, users), 0, users), jax.random.uniform(kp, (n, users))), mesh)
    step_keys = sharding.place(jax.random.split(jax.random.key(2), n), mesh)
    t0 = time.perf_counter()
    step = jax.jit(jax.vmap(env.step)).lower(step_keys, states, action).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(step(step_keys, states, action))
    t, reps = median_time(lambda: jax.block_until_ready(step(step_keys, states, action)))
    user_slots = n * users
    return {"users": users, "servers": users, "num_envs": n, "step_s": t, "reps": reps, "compile_s": compile_s,
            "user_slots_per_s": user_slots / t, "ns_per_user_slot": 1e9 * t / user_slots,
            "ns_per_user_server_pair": 1e9 * t / (user_slots * users), **memory(step),
            "placement": sharding.describe(mesh)}


def train_point(envs: int, users: int = 10, slots: int = 50, repeats: int = 3) -> dict:
    system = SystemConfig(num_users=users, num_servers=users, slots_per_episode=slots)
    trainer = make_train(system, PPOConfig(num_envs=envs, num_minibatches=4))
    mesh = sharding.batch_mesh(("runs", "envs"), (1, envs))
    state = trainer.init_batch(jax.random.key(0)[None], MEQCEnv.stack_params([trainer.env.default_params()]))
    state = sharding.place(state, mesh, STATE_BATCH_AXES)
    t0 = time.perf_counter()
    run = trainer.chunk_program.lower(state, 1).compile()
    compile_s = time.perf_counter() - t0
    _, state = median_chunk_time(run, state, 1)  # the first call: warm-up
    t, _ = median_chunk_time(run, state, repeats)
    return {"users": users, "servers": users, "num_envs": envs, "slots_per_epoch": slots, "epoch_s": t,
            "compile_s": compile_s, "agent_steps_per_s": envs * slots * users / t, **memory(run),
            "placement": sharding.describe(mesh)}


def plot(path: str, res: dict) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from meqc_jax.plots import save_figure

    fig, ax = plt.subplots(2, 2, figsize=(11, 8), layout="constrained")
    rows = res["parts"].get("env_n", [])
    if rows:
        n = [r["num_envs"] for r in rows]
        ax[0, 0].loglog(n, [r["ns_per_user_slot"] for r in rows], "o-")
        ax[0, 0].set(xlabel="instances N (one call)", ylabel="ns per user-slot", title="env step vs N (U = E = 10)")
        ax[1, 1].loglog(n, [r.get("xla_plan_bytes", np.nan) / 2**20 for r in rows], "o-", label="env step, XLA plan")
    rows = res["parts"].get("env_ue", [])
    if rows:
        ue = [r["users"] * r["servers"] for r in rows]
        ax[0, 1].loglog(ue, [1e3 * r["step_s"] for r in rows], "o-", label="ms per step")
        t0, x0 = rows[0]["step_s"] * 1e3, ue[0]
        ax[0, 1].loglog(ue, [t0 * x / x0 for x in ue], "k--", lw=0.8, label="∝ U·E")
        ax[0, 1].loglog(ue, [t0 * np.sqrt(x / x0) for x in ue], "k:", lw=0.8, label="∝ U")
        ax[0, 1].set(xlabel="U·E (U = E)", ylabel=f"ms per step of N = {rows[0]['num_envs']}",
                     title="env step vs U = E")
        ax[0, 1].legend()
    rows = res["parts"].get("train", [])
    if rows:
        n = [r["num_envs"] for r in rows]
        ax[1, 0].loglog(n, [r["agent_steps_per_s"] for r in rows], "o-")
        ax[1, 0].set(xlabel="environments", ylabel="agent-steps / s",
                     title=f"PPO training (U = E = 10, {rows[0]['slots_per_epoch']} slots/epoch)")
        ax[1, 1].loglog(n, [r.get("xla_plan_bytes", np.nan) / 2**20 for r in rows], "s-",
                        label="training epoch, XLA plan (x = environments)")
    ax[1, 1].set(xlabel="N instances / environments", ylabel="MiB", title="peak device memory (XLA buffer plan)")
    ax[1, 1].legend()
    for a in ax.flat:
        a.grid(True, which="both", alpha=0.3)
        a.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    fig.suptitle(f"meqc_jax scaling on {res['device_kind']} ({res['device_count']} device(s)), {res['date']}")
    save_figure(fig, path)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes only (about a minute on a CPU)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes (two env points, one U = E, one 3-user training): checks the script runs")
    ap.add_argument("--parts", default="env_n,env_ue,train")
    ap.add_argument("--max-n", type=int, default=65536, help="largest N for env_n (powers of 4 up to it)")
    ap.add_argument("--ue-envs", type=int, default=None, help="N for env_ue (default 1024, --quick 256)")
    ap.add_argument("--train-envs", default=None, help="comma-separated environment counts for train")
    ap.add_argument("--out", default=os.path.join(RESULTS, "scaling.json"))
    args = ap.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    for p in parts:
        if p not in ("env_n", "env_ue", "train"):
            sys.exit(f"--parts: unknown part {p!r}: allowed env_n, env_ue, train")
    max_n = min(args.max_n, 16 if args.smoke else 4096) if args.quick or args.smoke else args.max_n
    ns = [1, 16] if args.smoke else [4**k for k in range(20) if 4**k <= max_n]
    ues = [3] if args.smoke else [5, 10, 20] if args.quick else [5, 10, 20, 30, 50, 100]
    ue_envs = args.ue_envs or (16 if args.smoke else 256 if args.quick else 1024)
    train_envs = ([int(x) for x in args.train_envs.split(",")] if args.train_envs
                  else [2] if args.smoke else [4, 16, 64] if args.quick else [4, 16, 64, 256, 1024])
    # the smoke run trains 3 users on 10-slot epochs (U = E = 10 on 50-slot epochs otherwise)
    train_size = dict(users=3, slots=10, repeats=1) if args.smoke else {}
    dev = jax.devices()[0]
    res = {
        "benchmark": "scaling", "device": str(dev), "device_kind": dev.device_kind, "device_count": jax.device_count(),
        "backend": jax.default_backend(), "jax_version": jax.__version__, "cpu_count": os.cpu_count(),
        "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick, "smoke": args.smoke,
        "unit": "seconds per call (median of repeats); memory in bytes", "parts": {},
    }
    png = os.path.splitext(args.out)[0] + ".png"
    for part in parts:
        res["parts"][part] = []
        points = {"env_n": [(10, n) for n in ns], "env_ue": [(u, ue_envs) for u in ues],
                  "train": [(None, n) for n in train_envs]}[part]
        for users, n in points:
            row = train_point(n, **train_size) if part == "train" else env_point(users, n)
            res["parts"][part].append(row)
            if part == "train":
                print(f"train  envs {n:>6}: {row['agent_steps_per_s']:.3g} agent-steps/s, epoch {row['epoch_s']:.2f} s, "
                      f"plan {row.get('xla_plan_bytes', 0) / 2**20:.0f} MiB, compile {row['compile_s']:.1f} s", flush=True)
            else:
                print(f"{part} U=E {users:>3} N {n:>6}: {row['ns_per_user_slot']:8.1f} ns/user-slot, "
                      f"{1e3 * row['step_s']:8.3f} ms/step, plan {row.get('xla_plan_bytes', 0) / 2**20:.1f} MiB",
                      flush=True)
            atomic_write_json(args.out, res)
        plot(png, res)
    print(f"wrote {args.out} and {png}")


if __name__ == "__main__":
    main()
