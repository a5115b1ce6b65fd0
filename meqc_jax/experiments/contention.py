"""The contention part (dynamics-spec section 8, MEQC-Contended-v0): users who share their servers.

Three questions, every policy on the same slots (common random numbers):

* what load costs: cost per slot of every baseline, best-response dynamics and the exact optimum
  (`joint_optimum`, the subset DP) as the users per server grow (U = `contention.users` on E = `contention.servers`);
* the price of anarchy: best-response dynamics' cost over the optimum (and the sequential greedy's)
  vs the load, with how often best response converged and in how many rounds;
* the learners' gap to the optimum: independent PPO on its own cost, independent PPO on the shared
  cost with a centralized critic, MAPPO (one actor shared by the devices with an agent id, a
  centralized critic, the shared cost), and MAPPO whose devices act in index order, each seeing the
  earlier ones' server choices (`PPOConfig.actor_order = "sequential"`), at U = `contention.learn_users` on
  `contention.servers` servers and at U = E = `contention.size` (`ReproduceConfig.contention`).

Writes `contention_load.csv` (cost per policy and load), `contention_learners.csv` (learners against
the yardsticks per size) and `contention.png`.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from meqc_jax import joint
from meqc_jax.env import MEQCEnv
from meqc_jax.evaluate import evaluate, paired_comparison
from meqc_jax.experiments import common
from meqc_jax.experiments.common import ReproduceConfig
from meqc_jax.experiments.settings import CONTENTION_LEARNERS, PartLearner
from meqc_jax.io import atomic_write_csv
from meqc_jax.learners.interface import settings_dict
from meqc_jax.scenarios import scenario_config

SCENARIO = "MEQC-Contended-v0"
YARDSTICKS = ("local", "random_offloading", "greedy", "best_response", "joint_optimum")
LEARNERS = CONTENTION_LEARNERS  # the learners compared, by name: a learner, its preset and settings


def _system(rc: ReproduceConfig, users: int, servers: int):
    return scenario_config(SCENARIO, num_users=users, num_servers=servers, slots_per_episode=rc.contention.slots)


def _train(rc: ReproduceConfig, system, name: str, ckpt: str, progress: bool):
    """The policy `name` learns (a `LEARNERS` entry, or a learner of `rc.learners` at its default preset) and its
    training curve; a DROO epoch is `slots` batches of `envs` fresh slots, a PPO one `slots` slots x `envs`
    environments."""
    from meqc_jax.loop import fit

    choice = LEARNERS.get(name, PartLearner(name))
    learner, settings = common.part_learner(system, choice, getattr(rc.contention, choice.epochs_field), rc.contention.envs,
                                            rc.contention.minibatches)
    epochs = learner.epochs
    chunk = max(c for c in range(1, min(rc.chunk, epochs) + 1) if epochs % c == 0)
    state, metrics = fit(learner, [rc.seed], chunk=chunk, ckpt_dir=ckpt, progress=progress)
    return learner.policy(learner.acting_params(state, 0), name), common.cost_curve(metrics), settings


def _paired_ratio(per_slot: dict, a: str, b: str) -> dict:
    """Mean cost of `a` over that of `b` on the same slots, with the 95 % interval of the paired excess."""
    c = paired_comparison(per_slot, a, b)
    return {"ratio": c["ratio"], "ci95": c["ci95"]}


def _best_response_stats(rc: ReproduceConfig, system) -> dict:
    """How best-response dynamics ends on `contention.br_slots` fresh slots: converged share and rounds."""
    env = MEQCEnv(system)
    _, states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(rc.seed + 41), rc.contention.br_slots))
    br = jax.jit(jax.vmap(lambda s: joint.best_response(system, s)))(states)
    rounds = np.asarray(br.rounds)
    return {"converged_share": float(np.mean(np.asarray(br.converged))), "mean_rounds": float(rounds.mean()),
            "max_rounds": int(rounds.max()), "slots": rc.contention.br_slots}


EVAL_SEED_OFFSET = 5_000_011


def _evaluate(rc: ReproduceConfig, system, policies, progress: bool):
    """Every policy on the part's held-out slots of `system`: one seed for the whole part, and every policy
    on its own trajectory with common random numbers, so that policies evaluated in separate calls (the
    yardsticks of the load sweep, the learners later) are still paired slot for slot."""
    return evaluate(system, list(policies), num_envs=rc.contention.eval_envs, num_slots=rc.contention.eval_slots,
                    seed=rc.seed + EVAL_SEED_OFFSET, progress=progress, compiler_options=common.compiler_options(rc))


def run(name: str, rc: ReproduceConfig, out: str, progress: bool) -> dict:
    E = rc.contention.servers
    load, yardsticks = [], {}  # yardsticks: (U, E) -> (per_slot, summary) of YARDSTICKS, reused by the learners
    for U in rc.contention.users:
        system = _system(rc, U, E)
        res = _evaluate(rc, system, YARDSTICKS, progress)
        yardsticks[(U, E)] = (res.per_slot, res.summary)
        S = res.summary
        load.append({"users": U, "servers": E, "users_per_server": U / E,
                     "mean_cost": {p: S[p]["mean_cost"] for p in YARDSTICKS},
                     "ci95": {p: S[p]["ci95"] for p in YARDSTICKS},
                     "over_optimum": {p: _paired_ratio(res.per_slot, p, "joint_optimum") for p in YARDSTICKS},
                     "best_response": _best_response_stats(rc, system)})
    atomic_write_csv(os.path.join(out, f"{name}_load.csv"),
                     ["users", "servers", "policy", "mean_cost", "ci95", "over_optimum", "over_optimum_ci95"],
                     [[r["users"], r["servers"], p, f"{r['mean_cost'][p]:.6g}", f"{r['ci95'][p]:.6g}",
                       f"{r['over_optimum'][p]['ratio']:.6g}", f"{r['over_optimum'][p]['ci95']:.6g}"]
                      for r in load for p in YARDSTICKS])
    learners, skipped, settings = [], {}, {}
    trained = [*rc.contention.learners, *(n for n in rc.learners if n not in rc.contention.learners)]
    for U, servers in ((rc.contention.learn_users, E), (rc.contention.size, rc.contention.size)):
        system = _system(rc, U, servers)
        pols, curves = [], {}
        for lname in trained:
            try:
                pol, curve, settings[lname] = _train(rc, system, lname, os.path.join(out, "checkpoints", common.checkpoint_name(
                    f"{name}-{lname}-u{U}-e{servers}")), progress)
            except ValueError as e:  # a learner of rc.learners that does not apply here: reported, not trained
                skipped[lname] = str(e)
                continue
            pols.append(pol)
            curves[lname] = curve.tolist()
        done = [n for n in trained if n in curves]
        if (U, servers) not in yardsticks:
            res = _evaluate(rc, system, YARDSTICKS, progress)
            yardsticks[(U, servers)] = (res.per_slot, res.summary)
        yours, refused = common.user_policies(rc, system)  # `meqc reproduce --policies`, on the same slots
        skipped.update(refused)
        res = _evaluate(rc, system, [*pols, *yours], progress)
        per_slot = {**yardsticks[(U, servers)][0], **res.per_slot}
        S = {**yardsticks[(U, servers)][1], **res.summary}
        names = [*YARDSTICKS, *done, *(p.name for p in yours)]
        learners.append({"users": U, "servers": servers, "train_curves": curves,
                         "mean_cost": {p: S[p]["mean_cost"] for p in names}, "ci95": {p: S[p]["ci95"] for p in names},
                         "over_optimum": {p: _paired_ratio(per_slot, p, "joint_optimum") for p in names},
                         "vs_greedy": {p: _paired_ratio(per_slot, p, "greedy") for p in done},
                         "vs_best_response": {p: _paired_ratio(per_slot, p, "best_response") for p in done},
                         "policies": [p.name for p in yours]})
    atomic_write_csv(os.path.join(out, f"{name}_learners.csv"),
                     ["users", "servers", "policy", "mean_cost", "ci95", "over_optimum", "over_optimum_ci95"],
                     [[r["users"], r["servers"], p, f"{r['mean_cost'][p]:.6g}", f"{r['ci95'][p]:.6g}",
                       f"{r['over_optimum'][p]['ratio']:.6g}", f"{r['over_optimum'][p]['ci95']:.6g}"]
                      for r in learners for p in r["mean_cost"]])
    data = {"scenario": SCENARIO, "load": load, "learners": learners, "eval_envs": rc.contention.eval_envs,
            "eval_slots": rc.contention.eval_slots, "epochs": rc.contention.epochs, "envs": rc.contention.envs, "slots": rc.contention.slots,
            "droo_epochs": rc.contention.droo_epochs, "skipped": skipped,
            "learner_settings": {n: settings_dict(c) for n, c in settings.items()}}
    from meqc_jax.plots import plot_contention_part

    plot_contention_part(os.path.join(out, f"{name}.png"), data)
    return data


def _learners(r: dict) -> list[str]:
    return list(r["vs_greedy"])  # the learners trained, in their order


def _best_learner(r: dict) -> str:
    return min(_learners(r), key=lambda n: r["mean_cost"][n])


def report(name: str, d: dict, rc: ReproduceConfig) -> tuple[list[str], list[tuple[str, str, str]]]:
    slots = d["eval_envs"] * d["eval_slots"]
    lines = [f"## {d['scenario']}: users who compete for their servers", "",
             f"Every policy on the same {d['eval_envs']} instances x {d['eval_slots']} slots ({slots} paired slots); "
             "`joint_optimum` is the exact slot optimum (the subset DP, equal to the enumeration of every joint "
             "option where both run); ratios are mean cost over the optimum's on the same slots, with 95 % intervals.", "",
             "| users per server | U, E | " + " | ".join(YARDSTICKS[:-1]) + " | optimum cost | best response converged, mean rounds |",
             "|---|---|" + "---|" * (len(YARDSTICKS) - 1) + "---|---|"]
    for r in d["load"]:
        o = r["over_optimum"]
        br = r["best_response"]
        lines.append(f"| {r['users_per_server']:g} | {r['users']}, {r['servers']} | "
                     + " | ".join(f"{o[p]['ratio']:.3f} ± {o[p]['ci95']:.3f}" for p in YARDSTICKS[:-1])
                     + f" | {r['mean_cost']['joint_optimum']:.1f} | {100 * br['converged_share']:.0f} %, "
                       f"{br['mean_rounds']:.2f} |")
    lines += [f"Not run here: {n} ({why})." for n, why in d.get("skipped", {}).items()]
    for r in d["learners"]:
        lines += [f"Your policy {p} at U = {r['users']}, E = {r['servers']}: {r['over_optimum'][p]['ratio']:.3f} ± "
                  f"{r['over_optimum'][p]['ci95']:.3f} x the optimum on the same slots." for p in r.get("policies", [])]
    lines += ["", "The price of anarchy of the decentralized game is the `best_response` column (its Nash equilibria "
              "over the optimum); the sequential greedy, a central heuristic, is the `greedy` column.", "",
              f"Learners (PPO {d['epochs']} epochs of {d['slots']} slots x {d['envs']} environments, discount 0: "
              "nothing carries between slots"
              + (f"; DROO {d['droo_epochs']} epochs of {d['slots']} batches of {d['envs']} fresh slots, "
                 f"{d['learner_settings']['droo']['candidates']} candidate joint modes per slot priced by the model"
                 if "droo" in d.get("learner_settings", {}) else "")
              + "), cost over the optimum on the same slots:", "",
              "| U, E | " + " | ".join(_learners(d["learners"][0])) + " | greedy | best_response |",
              "|---|" + "---|" * (len(_learners(d["learners"][0])) + 2)]
    for r in d["learners"]:
        o = r["over_optimum"]
        lines.append(f"| {r['users']}, {r['servers']} | " + " | ".join(f"{o[p]['ratio']:.3f} ± {o[p]['ci95']:.3f}"
                                                                     for p in [*_learners(r), "greedy", "best_response"]) + " |")
    small, large = d["learners"][0], d["learners"][-1]
    bs, bl = _best_learner(small), _best_learner(large)
    gap_small = small["over_optimum"][bs]["ratio"]
    lines += ["", f"Where learning pays: the best learner at U = {small['users']}, E = {small['servers']} is {bs} at "
              f"{gap_small:.3f} x the optimum (greedy {small['over_optimum']['greedy']['ratio']:.3f} x); at U = E = "
              f"{large['users']} it is {bl} at {large['vs_greedy'][bl]['ratio']:.3f} x greedy and "
              f"{large['vs_best_response'][bl]['ratio']:.3f} x best response. "
              + ("Learning beats both central heuristics there." if large["vs_greedy"][bl]["ratio"] < 1
                 and large["vs_best_response"][bl]["ratio"] < 1 else
                 "Learning does not beat the central heuristics here: the simultaneous actors see only their own "
                 "device and the sequential ones the earlier devices' choices, while greedy and best response price "
                 "every user's task."), ""]
    load6 = next((r for r in d["load"] if r["users"] == 6 and r["servers"] == 3), None)
    claims = []
    if load6 is not None:
        g = load6["over_optimum"]["greedy"]["ratio"]
        claims.append((f"{d['scenario']}: sequential greedy >= 5 % above the enumerated optimum at U = 6, E = 3 "
                       "(issue 14)", f"{g:.3f} x", common.mark(g >= 1.05)))
    claims.append((f"{d['scenario']}: a learner within 5 % of the optimum at U = {small['users']}, E = "
                   f"{small['servers']} (issue 14)", f"{bs} {gap_small:.3f} x", common.mark(gap_small <= 1.05)))
    vg, vb = large["vs_greedy"][bl]["ratio"], large["vs_best_response"][bl]["ratio"]
    claims.append((f"{d['scenario']}: a learner below greedy and best response at U = E = {large['users']} (issue 14)",
                   f"{bl} {vg:.3f} x greedy, {vb:.3f} x best response", common.mark(vg < 1 and vb < 1)))
    return lines, claims
