"""Env throughput: user-slots per second of jit(vmap(env.step)) vs a NumPy per-user loop vs the RNG floor.

    python benchmarks/bench_env.py [--quick] [--out benchmarks/results/env.json]

For each U = E in {10, 30} and N instances in {1, 64, 1024, 8192, 65536}, measured side by side
in one run (medians over repeats):
  * jax   -- one `jax.jit(env.batch_step)` call on N instances (`env.step` vmapped with the batch axis
             named, so the automatic reset's scenario is drawn only in slots that end an episode);
  * vmap  -- one `jax.jit(jax.vmap(env.step))` call (the reset drawn in every slot; the same numbers);
  * floor -- one jitted, vmapped call that only draws the random numbers of a slot that ends no
             episode (499 of 500): its tasks and its arrival order, with the same samplers
             (step and floor calls alternate, and the ratio is the median of paired ratios);
  * raw   -- the raw floor: as many plain uniform draws per instance as those samplers draw 32-bit
             random words (`raw_draws_per_instance`, counted in their traced program), timed paired
             with the step the same way;
  * hash  -- the raw floor's words through meqc_jax.prng's written-out threefry (the samplers' own
             hash, faster than jax.random's on a CPU), timed paired with the step;
  * numpy -- `benchmarks/numpy_env.py`, one instance at a time with a loop over users; it is
             timed on min(N, 64) instances (its cost per user-slot does not depend on N).
Prints the ratios and writes them as JSON (atomically).

    python benchmarks/bench_env.py --draws [--out benchmarks/results/env_draws.json]

The samplers' cost per 32-bit word by draw size (jax.random's and meqc_jax.prng's), a slot's draws through
each, a slot's draws (jax.random's) against the raw floor, and a fused, bit-identical draw of the same words
(a prototype not adopted): `bench_draws`.

    python benchmarks/bench_env.py --dynamics [--out benchmarks/results/env_dynamics.json]

Item 6 of the dynamics issue, side by side in one run at U = E = 10, N = 8192: the env step with all
three dynamics on (MEQC-Sustainable-v0's dynamics) over the paper's step (target <= 1.5), and the
evaluation of 5 policies on per-policy trajectories over the shared-transition evaluation of the
same policies in the paper's model, where both apply (target <= 2).
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
from numpy_env import NumpyMEQC  # noqa: E402

from meqc_jax import MEQCEnv, SystemConfig, prng, sample_tasks  # noqa: E402
from meqc_jax.io import atomic_write_json  # noqa: E402


def paired_times(fn_a, fn_b, min_reps=7, min_total=2.0, max_reps=200):
    """Alternate fn_a and fn_b so that both see the same machine noise; returns
    (median a, median b, median of per-repeat a/b ratios, repeats)."""
    ta, tb = [], []
    t_start = time.perf_counter()
    while len(ta) < min_reps or (time.perf_counter() - t_start < min_total and len(ta) < max_reps):
        for fn, out in ((fn_a, ta), (fn_b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb), statistics.median(a / b for a, b in zip(ta, tb)), len(ta)


def median_time(fn, min_reps=5, min_total=1.0, max_reps=200):
    times = []
    t_start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - t_start < min_total and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def median_chunk_time(run, state, repeats: int):
    """Median seconds of `repeats` calls of a compiled training chunk `run(state) -> (state, metrics)`, each
    fed the state the last returned and waited for; returns (median s, the final state)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, m = run(state)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), state


def random_words(jaxpr) -> int:
    """How many 32-bit random words one call of a traced function draws: the outputs of its `random_bits`
    equations, nested programs included (a scan body times its length, the largest branch of a cond; a
    while body counts once, its trip count being unknown before it runs)."""
    def inner(sub):  # a Jaxpr or a ClosedJaxpr
        return sub if hasattr(sub, "eqns") else getattr(sub, "jaxpr", None)

    n = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "random_bits":
            n += sum(int(np.prod(v.aval.shape)) for v in eqn.outvars)
            continue
        if eqn.primitive.name == "cond":
            n += max(random_words(inner(b)) for b in eqn.params["branches"])
            continue
        times = int(eqn.params["length"]) if eqn.primitive.name == "scan" else 1
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                j = inner(sub)
                if j is not None and hasattr(j, "eqns"):
                    n += times * random_words(j)
    return n


def bench_jax(cfg: SystemConfig, n: int):
    env = MEQCEnv(cfg)
    U, E = cfg.num_users, cfg.num_servers
    keys = jax.random.split(jax.random.key(0), n)
    _, states = jax.jit(jax.vmap(env.reset))(keys)
    ka, kp = jax.random.split(jax.random.key(1))
    action = (jax.random.randint(ka, (n, U), 0, E), jax.random.uniform(kp, (n, U)))
    step = jax.jit(env.batch_step)
    plain = jax.jit(jax.vmap(env.step))
    step_keys = jax.random.split(jax.random.key(2), n)

    def draws(key, scenario):  # exactly the random numbers env.step draws in a slot that ends no episode
        k_arb, k_tasks, _ = jax.random.split(key, 3)
        return sample_tasks(k_tasks, cfg, scenario), jax.random.uniform(k_arb, (U,))

    floor = jax.jit(jax.vmap(draws))
    # the raw floor: as many plain uniforms as the samplers draw random words, none of their arithmetic
    one_scenario = jax.tree.map(lambda x: x[0], states.scenario)
    with prng.reference():  # the samplers' words, counted as jax.random's random_bits equations
        count = random_words(jax.make_jaxpr(draws)(step_keys[0], one_scenario).jaxpr)
    raw = jax.jit(jax.vmap(lambda key: jax.random.uniform(key, (count,))))
    # the same words through meqc_jax.prng's written-out hash (what the samplers use): the floor of this hash
    raw_hash = jax.jit(jax.vmap(lambda key: prng.uniform(key, (count,))))
    t0 = time.perf_counter()
    jax.block_until_ready(step(step_keys, states, action))
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(floor(step_keys, states.scenario))
    jax.block_until_ready(raw(step_keys))
    jax.block_until_ready(raw_hash(step_keys))
    jax.block_until_ready(plain(step_keys, states, action))
    run_step = lambda: jax.block_until_ready(step(step_keys, states, action))  # noqa: E731
    t_step, t_floor, ratio, reps = paired_times(
        run_step, lambda: jax.block_until_ready(floor(step_keys, states.scenario)))
    _, t_raw, raw_ratio, _ = paired_times(run_step, lambda: jax.block_until_ready(raw(step_keys)))
    _, t_hash, hash_ratio, _ = paired_times(run_step, lambda: jax.block_until_ready(raw_hash(step_keys)))
    _, t_plain, plain_ratio, _ = paired_times(run_step, lambda: jax.block_until_ready(plain(step_keys, states, action)))
    return {"step_s": t_step, "floor_s": t_floor, "ratio": ratio, "reps": reps, "compile_s": compile_s,
            "raw_s": t_raw, "raw_ratio": raw_ratio, "raw_count": count,
            "raw_hash_s": t_hash, "raw_hash_ratio": hash_ratio, "vmap_step_s": t_plain,
            "vmap_over_batch_step": 1.0 / plain_ratio}


def bench_numpy(cfg: SystemConfig, n: int):
    sim = NumpyMEQC(cfg, seed=0)
    U, E = cfg.num_users, cfg.num_servers
    rng = np.random.default_rng(1)
    states = [sim.reset() for _ in range(n)]
    actions = [(rng.integers(0, E, U), rng.uniform(size=U)) for _ in range(n)]

    def run():
        for i in range(n):
            states[i], _ = sim.step(states[i], *actions[i])

    t, reps = median_time(run, min_reps=3, min_total=1.0)
    return {"step_s": t, "reps": reps}


def check_agreement(cfg: SystemConfig) -> float:
    """Max relative difference between the NumPy loop's slot cost and meqc_jax's (cheapest rule)."""
    from meqc_jax import slot_cost

    cfg = cfg.replace(arbitration="cheapest")
    sim = NumpyMEQC(cfg, seed=3)
    rng = np.random.default_rng(4)
    worst = 0.0
    for _ in range(20):
        st = sim.reset()
        server, phi = rng.integers(0, cfg.num_servers, cfg.num_users), rng.uniform(size=cfg.num_users)
        ref, _ = sim.slot_cost(st["scenario"], st["tasks"], server, phi)
        sc = {k: jnp.asarray(v) for k, v in st["scenario"].items()}
        tk = {k: jnp.asarray(v) for k, v in st["tasks"].items()}
        from meqc_jax import Scenario, Tasks

        b = slot_cost(cfg, Scenario(**sc), Tasks(**tk), jnp.asarray(server), jnp.asarray(phi), jax.random.key(0))
        worst = max(worst, abs(float(b.total) - ref) / abs(ref))
    return worst


def bench_dynamics(n: int = 8192, size: int = 10, eval_envs: int = 256, eval_slots: int = 100) -> dict:
    """The dynamics' step over the paper's, and per-policy over shared-transition evaluation (medians, paired)."""
    from meqc_jax.evaluate import evaluate

    paper = SystemConfig(num_users=size, num_servers=size)
    dyn = paper.replace(dynamics=("queues", "battery", "drift"))
    out = {"users": size, "servers": size, "num_envs": n, "dynamics": list(dyn.dynamics)}
    U, E = size, size
    runs = []
    for cfg in (paper, dyn):
        env = MEQCEnv(cfg)
        _, states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), n))
        ka, kp = jax.random.split(jax.random.key(1))
        action = (jax.random.randint(ka, (n, U), 0, E), jax.random.uniform(kp, (n, U)))
        step = jax.jit(jax.vmap(env.step))
        keys = jax.random.split(jax.random.key(2), n)
        jax.block_until_ready(step(keys, states, action))
        runs.append(lambda step=step, keys=keys, states=states, action=action:
                    jax.block_until_ready(step(keys, states, action)))
    t_paper, t_dyn, ratio, reps = paired_times(runs[0], runs[1])  # ratio: paper / dynamics per repeat
    out.update(paper_step_s=t_paper, dynamics_step_s=t_dyn, step_dynamics_over_paper=1.0 / ratio, step_reps=reps)
    pols = ["local", "random_offloading", "random_partitioning", "greedy", "oracle"]
    for tr in ("shared", "per_policy"):  # compile both first
        evaluate(paper, pols, num_envs=eval_envs, num_slots=eval_slots, chunk=eval_slots, transitions=tr)
    t_sh, t_pp, ratio_e, reps_e = paired_times(
        lambda: evaluate(paper, pols, num_envs=eval_envs, num_slots=eval_slots, chunk=eval_slots, transitions="shared"),
        lambda: evaluate(paper, pols, num_envs=eval_envs, num_slots=eval_slots, chunk=eval_slots,
                         transitions="per_policy"), min_reps=5, min_total=5.0)
    out.update(eval_envs=eval_envs, eval_slots=eval_slots, eval_policies=pols, shared_eval_s=t_sh,
               per_policy_eval_s=t_pp, eval_per_policy_over_shared=1.0 / ratio_e, eval_reps=reps_e)
    return out


def bench_draws(n: int = 8192, size: int = 10) -> dict:
    """Why the samplers sit above the raw floor (docs/performance.md): ns per 32-bit word of one vmapped
    `jax.random.bits` call by words per instance; a slot's own draws (tasks + arrival order) against as
    many plain words in one call; and the same words computed bit-identically in one fused threefry call
    (`jax.extend.random.threefry2x32_p` on the draws' keys and counters; JAX's partitionable threefry,
    checked equal), a prototype that was not adopted. Medians, the pairs alternated."""
    from jax.extend.random import threefry2x32_p

    cfg = SystemConfig(num_users=size, num_servers=size)
    env = MEQCEnv(cfg)
    U, E = size, size
    keys = jax.random.split(jax.random.key(2), n)
    _, states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), n))

    def timed(fn, *args):
        f = jax.jit(jax.vmap(fn))
        jax.block_until_ready(f(*args))
        return lambda: jax.block_until_ready(f(*args))

    out = {"num_envs": n, "users": U, "servers": E, "ns_per_word": {}, "prng_ns_per_word": {}}
    for m in (1, 5, 10, 20, 50, 100, 200):  # jax.random's CPU threefry, then meqc_jax.prng's (the same words)
        t, _ = median_time(timed(lambda k, m=m: jax.random.bits(k, (m,)), keys))
        out["ns_per_word"][str(m)] = t / (n * m) * 1e9
        t, _ = median_time(timed(lambda k, m=m: prng.bits(k, (m,)), keys))
        out["prng_ns_per_word"][str(m)] = t / (n * m) * 1e9

    def slot_draws(key, scenario):  # what env.step draws in a slot that ends no episode
        k_arb, k_tasks, _ = jax.random.split(key, 3)
        return sample_tasks(k_tasks, cfg, scenario), jax.random.uniform(k_arb, (U,))

    sizes = [U, U, U, E, U * E, U]  # frames, cycles exponent, primitives, t1 jitter, gains, arrival order

    def fused_bits(key):  # the same 32-bit words as the six separate draws, in one threefry call
        k_arb, k_tasks, _ = jax.random.split(key, 3)
        kf, kj, kp, kg, kt = jax.random.split(k_tasks, 5)
        parts = [(kf, U), (kj, U), (kp, U), (kt, E), (kg, U * E), (k_arb, U)]
        kd = [jax.random.key_data(k) for k, _ in parts]
        k1 = jnp.concatenate([jnp.broadcast_to(d[0], (m,)) for d, (_, m) in zip(kd, parts)])
        k2 = jnp.concatenate([jnp.broadcast_to(d[1], (m,)) for d, (_, m) in zip(kd, parts)])
        c = jnp.concatenate([jnp.arange(m, dtype=jnp.uint32) for _, m in parts])
        b1, b2 = threefry2x32_p.bind(k1, k2, jnp.zeros_like(c), c)
        return b1 ^ b2

    def separate_bits(key):
        k_arb, k_tasks, _ = jax.random.split(key, 3)
        kf, kj, kp, kg, kt = jax.random.split(k_tasks, 5)
        return jnp.concatenate([jax.random.bits(k, (m,)) for k, m in
                                ((kf, U), (kj, U), (kp, U), (kt, E), (kg, U * E), (k_arb, U))])

    words = sum(sizes)
    same = bool(jnp.all(jax.vmap(fused_bits)(keys[:64]) == jax.vmap(separate_bits)(keys[:64])))
    raw = timed(lambda k: jax.random.uniform(k, (words,)), keys)
    def slot_draws_jax(key, scenario):  # the same, every draw through jax.random
        with prng.reference():
            return slot_draws(key, scenario)

    t_slot, t_raw, r_slot, _ = paired_times(timed(slot_draws_jax, keys, states.scenario), raw)
    t_hash, t_jax, r_hash, _ = paired_times(timed(slot_draws, keys, states.scenario),
                                            timed(slot_draws_jax, keys, states.scenario))
    t_fused, t_sep, r_fused, _ = paired_times(timed(fused_bits, keys), timed(separate_bits, keys))
    out.update(slot_draws_prng_s=t_hash, slot_draws_jax_s=t_jax, slot_draws_prng_over_jax=r_hash)
    out.update(words_per_slot=words, slot_draws_s=t_slot, raw_s=t_raw, slot_draws_over_raw=r_slot,
               fused_bits_s=t_fused, separate_bits_s=t_sep, fused_over_separate=r_fused,
               fused_equals_separate=same, threefry_partitionable=bool(jax.config.jax_threefry_partitionable))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N in {1, 64, 1024} and U = E = 10 only")
    ap.add_argument("--dynamics", action="store_true", help="only the dynamics' ratios (module docstring)")
    ap.add_argument("--draws", action="store_true", help="only the samplers' cost per word and the fused-draw "
                    "prototype (bench_draws)")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/env.json, or "
                    "env_dynamics.json with --dynamics)")
    args = ap.parse_args()
    results_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    if args.dynamics:
        out = args.out or os.path.join(results_dir, "env_dynamics.json")
        res = dict(bench_dynamics(), device=str(jax.devices()[0]), jax_version=jax.__version__,
                   cpu_count=os.cpu_count(), date=time.strftime("%Y-%m-%d %H:%M:%S"))
        print(f"U=E={res['users']} N={res['num_envs']}: step with {'+'.join(res['dynamics'])} / paper step = "
              f"{res['step_dynamics_over_paper']:.2f} (median of {res['step_reps']} paired ratios; "
              f"{res['paper_step_s'] * 1e3:.1f} vs {res['dynamics_step_s'] * 1e3:.1f} ms)")
        print(f"evaluation of {len(res['eval_policies'])} policies, {res['eval_envs']} x {res['eval_slots']} slots: "
              f"per-policy / shared = {res['eval_per_policy_over_shared']:.2f} "
              f"({res['shared_eval_s']:.2f} vs {res['per_policy_eval_s']:.2f} s)")
        atomic_write_json(out, res)
        print(f"wrote {out}")
        return
    if args.draws:
        out = args.out or os.path.join(results_dir, "env_draws.json")
        res = dict(bench_draws(), device=str(jax.devices()[0]), jax_version=jax.__version__,
                   cpu_count=os.cpu_count(), date=time.strftime("%Y-%m-%d %H:%M:%S"))
        print("ns per 32-bit word, one vmapped jax.random.bits call of m words per instance, N = "
              f"{res['num_envs']}: " + ", ".join(f"m={m}: {v:.2f}" for m, v in res["ns_per_word"].items()))
        print("ns per word through meqc_jax.prng (the same words): " + ", ".join(
            f"m={m}: {v:.2f}" for m, v in res["prng_ns_per_word"].items()))
        print(f"a slot's draws through meqc_jax.prng / through jax.random: {res['slot_draws_prng_over_jax']:.2f} "
              f"({res['slot_draws_prng_s'] * 1e3:.2f} vs {res['slot_draws_jax_s'] * 1e3:.2f} ms)")
        print(f"a slot's draws ({res['words_per_slot']} words in 6 calls) / as many plain words in one call: "
              f"{res['slot_draws_over_raw']:.2f} ({res['slot_draws_s'] * 1e3:.2f} vs {res['raw_s'] * 1e3:.2f} ms)")
        print(f"the same words in one fused threefry call / six calls: {res['fused_over_separate']:.2f} "
              f"({res['fused_bits_s'] * 1e3:.2f} vs {res['separate_bits_s'] * 1e3:.2f} ms; "
              f"bit-identical: {res['fused_equals_separate']})")
        atomic_write_json(out, res)
        print(f"wrote {out}")
        return
    args.out = args.out or os.path.join(results_dir, "env.json")
    sizes = [10] if args.quick else [10, 30]
    ns = [1, 64, 1024] if args.quick else [1, 64, 1024, 8192, 65536]
    results = {
        "benchmark": "env_step",
        "unit": "user-slots per second (median over repeats)",
        "device": str(jax.devices()[0]),
        "backend": jax.default_backend(),
        "jax_version": jax.__version__,
        "numpy_version": np.__version__,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rows": [],
    }
    hdr = (f"{'U=E':>4} {'N':>6} {'jax us/s':>11} {'floor us/s':>11} {'raw us/s':>11} {'numpy us/s':>11} "
           f"{'step/floor':>10} {'step/raw':>9} {'step/hash':>9} {'jax/numpy':>9} {'vmap/batch':>10}")
    print(hdr)
    for size in sizes:
        cfg = SystemConfig(num_users=size, num_servers=size)
        results.setdefault("numpy_agreement_max_rel_diff", {})[str(size)] = check_agreement(cfg)
        np_res = None
        for n in ns:
            j = bench_jax(cfg, n)
            n_np = min(n, 64)
            if np_res is None or n_np != np_res["n"]:
                np_res = dict(bench_numpy(cfg, n_np), n=n_np)
            user_slots = n * size
            row = {
                "users": size, "servers": size, "num_envs": n,
                "jax_step_s": j["step_s"], "floor_s": j["floor_s"], "jax_compile_s": j["compile_s"],
                "jax_user_slots_per_s": user_slots / j["step_s"],
                "floor_user_slots_per_s": user_slots / j["floor_s"],
                "numpy_instances_timed": n_np,
                "numpy_user_slots_per_s": n_np * size / np_res["step_s"],
                "step_over_floor": j["ratio"],  # median of paired per-repeat ratios
                "raw_s": j["raw_s"], "raw_draws_per_instance": j["raw_count"],
                "raw_user_slots_per_s": user_slots / j["raw_s"],
                "step_over_raw": j["raw_ratio"],  # issue 15's bar: the step at >= 50 % of the raw floor is <= 2
                # the same words through meqc_jax.prng's written-out threefry (the samplers' own hash, faster than
                # jax.random's on a CPU): how far the step is from the randomness it really draws
                "raw_hash_s": j["raw_hash_s"], "step_over_raw_hash": j["raw_hash_ratio"],
                "vmap_step_s": j["vmap_step_s"],  # jax.vmap(env.step): the reset's scenario drawn every slot
                "vmap_over_batch_step": j["vmap_over_batch_step"],  # median of paired ratios
            }
            row["jax_over_numpy"] = row["jax_user_slots_per_s"] / row["numpy_user_slots_per_s"]
            results["rows"].append(row)
            print(f"{size:>4} {n:>6} {row['jax_user_slots_per_s']:>11.3g} {row['floor_user_slots_per_s']:>11.3g} "
                  f"{row['raw_user_slots_per_s']:>11.3g} {row['numpy_user_slots_per_s']:>11.3g} "
                  f"{row['step_over_floor']:>10.2f} {row['step_over_raw']:>9.2f} {row['step_over_raw_hash']:>9.2f} "
                  f"{row['jax_over_numpy']:>9.1f} "
                  f"{row['vmap_over_batch_step']:>10.2f}",
                  flush=True)
            atomic_write_json(args.out, results)
    print(f"NumPy loop vs slot_cost max relative difference: {results['numpy_agreement_max_rel_diff']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
