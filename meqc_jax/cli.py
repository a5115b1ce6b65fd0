"""Command-line interface: `meqc reproduce | demo | evaluate | train | sweep | scenarios | info`.

Arguments are validated before anything is traced; a bad one prints a one-line error and exits
with status 2, never a traceback. Every list of choices (scenarios, policies, parts, presets,
models, torsos, rewards, ...) is read from the module that owns it, so a new one appears in
`--help` by itself.
"""

from __future__ import annotations

import argparse
import sys
import time

from meqc_jax import config as _config
from meqc_jax.agents.networks import TORSOS
from meqc_jax.agents.vqc import BACKENDS as VQC_BACKENDS
from meqc_jax.baselines import POLICIES
from meqc_jax.compilation import ProgramTooLarge
from meqc_jax.env import REWARDS
from meqc_jax.experiments import DEFAULT_PARTS, DYNAMICS_PARTS, PARTS, PARTS_BY_NAME
from meqc_jax.learners import LEARNER_NAMES, learner_spec
from meqc_jax.learners.ppo import ACTOR_INPUTS, ACTOR_ORDERS, CRITICS, PAPER_EPOCHS
from meqc_jax.scenarios import DEFAULT_SCENARIO, SCENARIOS


def _positive_int(name: str, hi: int, lo: int = 1):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer in [{lo}, {hi}], got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{name} must be an integer in [{lo}, {hi}], got {v}")
        return v

    return parse


class CLIError(Exception):
    """A bad argument found after parsing; `main` prints it as one line and exits with 2."""


class _Renamed(argparse.Action):
    """A flag that was renamed: refused in one line that names the new one."""

    def __init__(self, option_strings, dest, new: str, **kw):
        self.new = new
        super().__init__(option_strings, dest, nargs="?", **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is renamed {self.new} (the actor-critic torso: mlp or vqc); give "
                     f"{self.new}{'' if values is None else ' ' + values}")


def _writable_out(path: str) -> str:
    """`path` as an output folder we can write, checked before anything is compiled (CLIError if not)."""
    import os
    import tempfile

    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise CLIError(f"--out={path!r} is invalid: cannot write there ({e.strerror or e}); "
                       "allowed a folder this user can create and write") from None
    return path


def _add_scenario_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", choices=list(SCENARIOS), default=DEFAULT_SCENARIO,
                   help=f"registered scenario to start from (default {DEFAULT_SCENARIO}; `meqc scenarios` lists them)")


# (flag, SystemConfig field, argparse keywords): given flags override the scenario's values
_SYSTEM_ARGS = (
    ("--users", "num_users", dict(type=_positive_int("--users", 1000))),
    ("--servers", "num_servers", dict(type=_positive_int("--servers", 1000))),
    ("--preset", "preset", dict(choices=list(_config.WEIGHT_PRESETS))),
    ("--energy-model", "energy_model", dict(choices=list(_config.ENERGY_MODELS))),
    ("--latency-model", "latency_model", dict(choices=list(_config.LATENCY_MODELS))),
    ("--arbitration", "arbitration", dict(choices=list(_config.ARBITRATIONS))),
)


def _add_system_args(p: argparse.ArgumentParser, learner_fields: bool = False) -> None:
    _add_scenario_arg(p)
    for flag, field, kw in _SYSTEM_ARGS:
        p.add_argument(flag, default=None, help=f"SystemConfig.{field} (default: the scenario's)", **kw)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="set_fields",
                   help="any other SystemConfig field (repeatable), e.g. t1_ms=10, f_edge_ghz=20 (every server at "
                        "20 GHz), phys_qubits=5000; tuple values as a/b/c"
                        + ("; or a field of the learner's settings (e.g. gamma=0.9, hidden=64/64 for ppo; "
                           "candidates=16 for droo), also written learner.FIELD=VALUE" if learner_fields else ""))
    p.add_argument("--seed", type=int, default=0)


def _parse_sets(items) -> dict:
    """`--set FIELD=VALUE` items as SystemConfig overrides (the aliases of `meqc sweep` included)."""
    from meqc_jax import sweep

    out = {}
    for item in items:
        field, sep, value = item.partition("=")
        field = field.strip()
        try:
            if not sep or not field or field == "scenario":
                raise sweep.SweepError(f"--set {item!r} is invalid: allowed FIELD=VALUE with a SystemConfig field")
            name, convert = sweep.ALIASES.get(field, (field, lambda v: v))
            out[name] = convert(sweep.parse_value(field, value.strip()))
        except sweep.SweepError as e:
            raise CLIError(str(e)) from None
    return out


def _config_from_args(args, **extra):
    from meqc_jax.scenarios import scenario_config

    given = {field: getattr(args, flag[2:].replace("-", "_")) for flag, field, _ in _SYSTEM_ARGS}
    given = {**_parse_sets(getattr(args, "set_fields", [])), **{k: v for k, v in given.items() if v is not None}}
    try:
        return scenario_config(args.scenario, **{**given, **extra})
    except ValueError as e:
        raise CLIError(str(e)) from None


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meqc", description="Mobile edge-quantum computing offloading, in JAX.")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() first (multi-host runs: start the same command on every "
                        "host; the cluster is detected from SLURM / Open MPI / TPU settings, or given by the three "
                        "options below); batch axes then span every host's devices and process 0 writes the outputs")
    p.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="with --distributed: process 0's address (default: auto-detected, or $JAX_COORDINATOR_ADDRESS)")
    p.add_argument("--num-processes", type=_positive_int("--num-processes", 10**6), default=None,
                   help="with --distributed: number of processes (default: auto-detected)")
    p.add_argument("--process-id", type=_positive_int("--process-id", 10**6 - 1, lo=0), default=None, help="with --distributed: this process's id, 0-based")
    p.add_argument("--compile-cache", default=None, metavar="DIR|off",
                   help="keep compiled XLA programs in DIR so that the next run skips compiling them (default: "
                        "$MEQC_COMPILE_CACHE, else ~/.cache/meqc_jax/xla/<machine>, one folder per processor kind); "
                        "'off' disables")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("scenarios", help="list the registered scenarios (name, what it holds, its overrides)")
    inf = sub.add_parser("info", help="what this installation runs on: versions, backend, devices and their memory, "
                                      "processes, the compilation cache, optional extras")
    inf.add_argument("--json", action="store_true", help="print the same as one JSON object")
    inf.add_argument("--out", default=None, metavar="FILE.json", help="also write the JSON to FILE (atomically)")
    d = sub.add_parser("demo", help="build the env, run a few slots with a random policy, print the cost breakdown")
    _add_system_args(d)
    d.add_argument("--slots", type=_positive_int("--slots", 100_000), default=5)
    d.add_argument("--envs", type=_positive_int("--envs", 1_000_000), default=1024,
                   help="parallel instances stepped in one jitted call (default 1024)")

    ev = sub.add_parser("evaluate", help="evaluate baselines and the oracle on the same slots; write summary.json and per_slot.csv")
    _add_system_args(ev)
    ev.add_argument("--policies", default="all", help="'all' or a comma-separated subset of: " + "; ".join(
        f"{n} ({e.description})" for n, e in POLICIES.items()) + "; or your own: module.path:attribute naming a "
        "factory (SystemConfig) -> Policy, or a name an installed package registers (entry point meqc_jax.policies)")
    ev.add_argument("--slots", type=_positive_int("--slots", 10**8), default=10_000,
                    help="total slots evaluated (over all instances), default 10000")
    ev.add_argument("--envs", type=_positive_int("--envs", 10**6), default=100,
                    help="parallel instances; each runs ceil(slots / envs) slots (default 100)")
    ev.add_argument("--out", default=None, help="output folder (default runs/evaluate-<time>)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")

    tr = sub.add_parser("train", help="train a learner (default the paper's hybrid multi-agent PPO, or any registered "
                                      "or your own); write metrics, curve, checkpoints, summary")
    _add_system_args(tr, learner_fields=True)
    tr.add_argument("--learner", default=None, metavar="NAME|module.path:attribute",
                    help="the learner to train: " + "; ".join(f"{n}" for n in LEARNER_NAMES) + " (default: the best measured for the scenario's model: priced where state carries between slots, "
                         "droo under contention, ppo on the paper's model); an "
                         "installed package's entry point (group meqc_jax.learners); or your own: module.path:attribute "
                         "naming a LearnerSpec, or a Learner class or factory (SystemConfig, config) -> Learner")
    tr.add_argument("--policy", action=_Renamed, new="--torso", help=argparse.SUPPRESS)
    tr.add_argument("--torso", choices=list(TORSOS), default=None,
                    help="ppo: actor-critic torso, mlp (2 x 256, the default) or vqc (64 -> 4-qubit circuit -> 64, "
                         "paper IV-C)")
    tr.add_argument("--vqc-backend", choices=list(VQC_BACKENDS), default=None,
                    help="ppo: circuit simulator for --torso vqc (default jax: ~10x faster than the PennyLane QNode)")
    tr.add_argument("--epochs", type=_positive_int("--epochs", 10**6), default=None,
                    help="epochs of --slots-per-epoch slots (default: the learner's; ppo, the paper's: " + ", ".join(
                        f"{e} for {t}" for t, e in PAPER_EPOCHS.items()) + ")")
    tr.add_argument("--seeds", type=_positive_int("--seeds", 1000), default=1, help="independent runs (seeds seed..seed+S-1)")
    tr.add_argument("--envs", type=_positive_int("--envs", 2**20), default=None,
                    help="parallel environments (the learner's num_envs; default the learner's, ppo 64)")
    tr.add_argument("--hparams", default=None, metavar="PRESET",
                    help="the learner's named settings (" + "; ".join(
                        f"{n}: {', '.join(learner_spec(n).presets)}" for n in LEARNER_NAMES) + "); ppo's 'paper' is "
                         "discount 0.95 and the shared reward, 'project' measured best for the paper's model, "
                         "'lookahead' measured for scenarios with dynamics (default: project, or lookahead when the "
                         "scenario carries state); droo's 'swaps' also prices every one-device change")
    tr.add_argument("--reward", choices=list(REWARDS), default=None, help="ppo: override the hparams' reward")
    tr.add_argument("--critic", choices=list(CRITICS), default=None,
                    help="ppo: value functions: per-agent heads (local) or one centralized critic over all agents' "
                         "observations (central); 'auto' (project default): central exactly for the shared reward")
    tr.add_argument("--shared-params", action="store_true",
                    help="ppo: one actor-critic shared by every device, with an agent id (MAPPO with --reward shared)")
    tr.add_argument("--actor-order", choices=list(ACTOR_ORDERS), default=None,
                    help="ppo: 'simultaneous' (the paper) or 'sequential': devices act in index order, each seeing how "
                         "many earlier ones offload to each server (contention, dynamics-spec 8; default: the "
                         "hparams', sequential under lookahead)")
    tr.add_argument("--actor-inputs", choices=list(ACTOR_INPUTS), default=None,
                    help="ppo: 'own' (each device's observation, the paper) or 'global' (every device's as well)")
    tr.add_argument("--slots-per-epoch", type=_positive_int("--slots-per-epoch", 10**6), default=500)
    tr.add_argument("--minibatches", type=_positive_int("--minibatches", 2**20), default=None,
                    help="ppo: minibatches per update (num_minibatches)")
    tr.add_argument("--chunk", type=_positive_int("--chunk", 10**6), default=10, help="epochs per jitted chunk/checkpoint")
    tr.add_argument("--eval-slots", type=_positive_int("--eval-slots", 10**8), default=10_000,
                    help="held-out slots for the final paired evaluation (default 10000)")
    tr.add_argument("--out", default=None, help="output folder (default runs/train-<time>)")
    tr.add_argument("--no-resume", action="store_true", help="ignore checkpoints already in --out")
    tr.add_argument("--no-progress", action="store_true")

    sw = sub.add_parser("sweep", help="a grid of scenarios x SystemConfig fields x policies x seeds in as few "
                                      "compiled programs as the shapes allow; results.csv, summary.json, a figure "
                                      "per field; resumable")
    _add_scenario_arg(sw)
    sw.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                    help="a swept field and its values (repeat for more fields; the grid is their product): any "
                         "SystemConfig field, scenario, or f_edge_ghz / phys_qubits (every server / QPU at one "
                         "value); tuple values as a/b/c")
    sw.add_argument("--config", default=None, metavar="FILE.toml",
                    help="the sweep as TOML: [grid] FIELD = [values], optional [set] fixed fields, and keys "
                         "policies, seeds, envs, slots, ... (flags given here win)")
    sw.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a SystemConfig field fixed at VALUE for every point (e.g. num_users=6)")
    sw.add_argument("--policies", default=None,
                    help="comma-separated: all (the registered policies that apply), policy names, ppo / ppo-vqc "
                         "or learner:NAME (a learner trained per cell at its default preset, then evaluated: "
                         + ", ".join(f"learner:{n}" for n in LEARNER_NAMES) + ", or learner:module.path:attribute), "
                         "or module.path:attribute naming a policy factory; default all")
    sw.add_argument("--seeds", type=_positive_int("--seeds", 1000), default=None, help="seeds per point (default 1)")
    sw.add_argument("--envs", type=_positive_int("--envs", 10**6), default=None,
                    help="instances per cell (default 64)")
    sw.add_argument("--slots", type=_positive_int("--slots", 10**7), default=None,
                    help="slots per instance (default 50)")
    sw.add_argument("--chunk-cells", type=_positive_int("--chunk-cells", 10**6), default=None,
                    help="cells (point x seed) per compiled call and per saved chunk (default: a group's, up to 256)")
    sw.add_argument("--train-epochs", type=_positive_int("--train-epochs", 10**5), default=None,
                    help="trained policies: epochs per cell (default 20)")
    sw.add_argument("--max-hours", type=float, default=None,
                    help="refuse a sweep estimated (from its first chunk) to take longer (default 24)")
    sw.add_argument("--yes", action="store_true", help="go on past --max-hours")
    sw.add_argument("--out", default=None, help="output folder (default runs/sweep-<time>); rerun to resume")
    sw.add_argument("--no-progress", action="store_true")

    rp = sub.add_parser("reproduce", help="reproduce the paper's Figs. 4-9 (+ Fig. 10, the QPU map): PNG + CSV "
                                          "per figure and report.md")
    _add_scenario_arg(rp)
    rp.add_argument("--quick", action="store_true", help="small settings: every figure in a few minutes on a CPU")
    rp.add_argument("--seeds", type=_positive_int("--seeds", 100), default=None,
                    help="seeds per run (default 3; --quick: 1)")
    rp.add_argument("--epochs", type=_positive_int("--epochs", 10**5), default=None,
                    help="override the epochs of every training (default: the paper's " + ", ".join(
                        f"{e} {t}" for t, e in PAPER_EPOCHS.items()) + "; --quick: fewer)")
    rp.add_argument("--only", default=None, help="comma-separated subset of the parts: " + ", ".join(PARTS))
    rp.add_argument("--dynamics", action="store_true",
                    help="also run the dynamics parts (" + ", ".join(DYNAMICS_PARTS) + "): one per scenario with "
                         "carried state")
    rp.add_argument("--learner", action="append", default=[], metavar="NAME|module.path:attribute",
                    help="a learner the dynamics and contention parts also train and report (repeatable): "
                         + ", ".join(LEARNER_NAMES) + ", an installed meqc_jax.learners entry point, or your own "
                         "module.path:attribute; at its default preset with the part's epochs and environments; a "
                         "part where it does not apply says so in the report")
    rp.add_argument("--policies", default=None, metavar="module.path:attribute,...",
                    help="policies of your own the dynamics and contention parts evaluate next to theirs, on the same "
                         "paired slots: comma-separated module.path:attribute factories (SystemConfig) -> Policy or "
                         "installed meqc_jax.policies entry points")
    rp.add_argument("--out", default=None, help="output folder (default runs/reproduce, or runs/reproduce-quick)")
    rp.add_argument("--force", action="store_true", help="redo parts already finished in --out")
    rp.add_argument("--workers", type=_workers, default="auto", metavar="N|auto",
                    help="parts run side by side in N processes (auto: one per CPU core up to 4 on a CPU, 1 on an "
                         "accelerator or under --distributed); every number is the same as with 1")
    rp.add_argument("--no-progress", action="store_true")
    return p


def _workers(text: str):
    if text == "auto":
        return text
    try:
        return _positive_int("--workers", 64)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"--workers must be auto or an integer in [1, 64], got {text!r}") from None



def demo(args) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from meqc_jax import MEQCEnv

    config = _config_from_args(args)
    env = MEQCEnv(config)
    U, E, N = config.num_users, config.num_servers, args.envs
    console = Console()
    console.print(f"[bold]{env}[/bold], {N} parallel instances, random policy "
                  f"(server uniform, phi ~ U[0, 1]), backend {jax.default_backend()}")

    def random_policy(key):
        ks, kp = jax.random.split(key)
        return jax.random.randint(ks, (N, U), 0, E), jax.random.uniform(kp, (N, U))

    reset = jax.jit(jax.vmap(env.reset))
    step = jax.jit(env.batch_step)
    key = jax.random.key(args.seed)
    key, k_reset = jax.random.split(key)
    _, state = reset(jax.random.split(k_reset, N))
    table = Table(title="Per slot, mean over instances: system cost C (Eq. 12), per-user latency and energy")
    for col in ("slot", "cost C", "latency s", "energy J", "QPU share", "feasible", "step ms"):
        table.add_column(col, justify="right")
    for t in range(args.slots):
        key, k_act, k_step = jax.random.split(key, 3)
        action = random_policy(k_act)
        t0 = time.perf_counter()
        _, state, _, _, info = step(jax.random.split(k_step, N), state, action)
        c = jax.block_until_ready(info["cost"])
        ms = (time.perf_counter() - t0) * 1e3
        table.add_row(
            str(t), f"{float(jnp.mean(c.total)):.1f}", f"{float(jnp.mean(c.latency)):.2f}",
            f"{float(jnp.mean(c.energy)):.2f}", f"{float(jnp.mean(c.quantum)):.3f}",
            f"{float(jnp.mean(jnp.any(c.feasible, axis=-1))):.3f}", f"{ms:.1f}" + ("*" if t == 0 else ""),
        )
    console.print(table)
    console.print("* includes compilation. QPU share: users served by a QPU; feasible: users with a feasible server.")
    per_user = np.asarray(c.per_user)
    console.print(f"last slot: per-user cost median {np.median(per_user):.2f}, "
                  f"max {per_user.max():.2f}; clipped actions {int(jnp.sum(c.clipped_server + c.clipped_phi))}")
    return 0


def evaluate_cmd(args) -> int:
    import math
    import os

    from rich.console import Console
    from rich.table import Table

    from meqc_jax.baselines import make_policy, parse_policy_names, policy_names
    from meqc_jax.evaluate import evaluate
    from meqc_jax.io import atomic_write_csv, atomic_write_json

    try:
        names = parse_policy_names(args.policies)
    except ValueError as e:
        raise CLIError(str(e)) from None
    config = _config_from_args(args)
    if args.policies.strip() == "all":  # the policies that apply: with dynamics, lyapunov instead of the oracle
        names = policy_names(config)
    elif config.dynamics and "oracle" in names:
        raise CLIError(f"--policies: oracle is invalid with dynamics {config.dynamics!r} (no per-slot optimum); "
                       f"allowed: {', '.join(policy_names(config))}")
    try:  # a user's factory (module.path:attribute or an entry point) is called now, before anything is traced
        pols = [make_policy(n, config) for n in names]
    except ValueError as e:
        raise CLIError(str(e)) from None
    names = [p.name for p in pols]
    envs = min(args.envs, args.slots)
    steps = math.ceil(args.slots / envs)
    out = _writable_out(args.out or os.path.join("runs", time.strftime("evaluate-%Y%m%d-%H%M%S")))
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(f"evaluating {', '.join(names)} on {args.scenario}, U={config.num_users}, E={config.num_servers}, "
                  f"preset={config.preset}: "
                  f"{envs} instances x {steps} slots = {envs * steps} slots, seed {args.seed}")
    t0 = time.perf_counter()
    # refused (exit 2, one line) from the instances' shapes when they would not fit, before any is reset
    res = evaluate(config, pols, num_envs=envs, num_slots=steps, seed=args.seed, progress=not args.no_progress,
                   fit_hint="--envs, or the users and servers (--users, --servers)")
    wall = time.perf_counter() - t0

    table = Table(title=f"Mean slot cost over {envs * steps} paired slots (95 % CI over instances)")
    cols = ["policy", "cost", "+-95%", "x oracle", "latency s", "energy J", "QPU share", "feasible", "dropped"]
    for col in cols:
        table.add_column(col, justify="left" if col == "policy" else "right", no_wrap=True)
    for name in names:
        s = res.summary[name]
        ratio = s.get("ratio_to_oracle")
        table.add_row(name, f"{s['mean_cost']:.2f}", f"{s['ci95']:.2f}", "-" if ratio is None else f"{ratio:.4f}",
                      f"{s['mean_latency']:.3f}", f"{s['mean_energy']:.3f}", f"{s['quantum_share']:.4f}",
                      f"{s['feasible_share']:.4f}", f"{s['drop_share']:.4f}")
    console.print(table)
    atomic_write_json(os.path.join(out, "summary.json"), {
        "config": config.to_dict(), "num_envs": envs, "slots_per_env": steps, "seed": args.seed,
        "policies": names, "summary": res.summary, "wall_s": {"total": wall, **res.wall_s},
        "placement": res.placement, "scenario": args.scenario, "transitions": res.transitions,
    })
    rows = []
    for name in names:
        m = res.per_slot[name]
        T, N = m["cost"].shape
        for t in range(T):
            for n in range(N):
                rows.append([name, t, n] + [f"{float(m[k][t, n]):.9g}" for k in
                                            ("cost", "latency", "energy", "quantum_share", "feasible_share",
                                             "drop_share")])
    atomic_write_csv(os.path.join(out, "per_slot.csv"), ["policy", "slot", "env", "cost", "latency", "energy",
                                                         "quantum_share", "feasible_share", "drop_share"], rows)
    console.print(f"wrote {out}/summary.json and {out}/per_slot.csv ({wall:.1f} s)")
    return 0


# `meqc train`'s flags that set a field of the learner's settings: (flag, attribute of args, field)
_LEARNER_FLAGS = (("--epochs", "epochs", "epochs"), ("--envs", "envs", "num_envs"), ("--torso", "torso", "torso"),
                  ("--vqc-backend", "vqc_backend", "vqc_backend"), ("--reward", "reward", "reward"),
                  ("--critic", "critic", "critic"), ("--minibatches", "minibatches", "num_minibatches"),
                  ("--actor-order", "actor_order", "actor_order"), ("--actor-inputs", "actor_inputs", "actor_inputs"),
                  ("--shared-params", "shared_params", "shared_params"))


def _learner_settings(spec, args) -> tuple[dict, list[str]]:
    """The learner's settings `meqc train`'s flags and `--set` give, and the `--set` items left for SystemConfig: an
    item is the learner's when written `learner.FIELD=VALUE` or when FIELD is one of its settings' fields."""
    from meqc_jax.config import parse_field

    fields = spec.fields()
    settings, system_items = {}, []
    for item in args.set_fields:
        field, sep, value = item.partition("=")
        field = field.strip()
        named = field.startswith("learner.")
        field = field.removeprefix("learner.")
        if sep and (named or field in fields):
            if spec.config_class is None:
                raise CLIError(f"--set {item!r} is invalid: learner {spec.name!r} takes no settings")
            try:
                settings[field] = parse_field(spec.config_class, field, value.strip(), "--set")
            except ValueError as e:
                raise CLIError(f"learner {spec.name!r}: {e}") from None
        else:
            system_items.append(item)
    for flag, attr, field in _LEARNER_FLAGS:
        value = getattr(args, attr)
        if value is None or value is False:
            continue
        if field not in fields:
            raise CLIError(f"{flag} is invalid with --learner {args.learner}: its settings have no field {field!r}; "
                           f"allowed --set with one of: {', '.join(fields) or '(none)'}")
        settings.setdefault(field, value)
    return settings, system_items


def train_cmd(args) -> int:
    import os

    from rich.console import Console

    from meqc_jax import train
    from meqc_jax.learners import learner_spec

    if args.learner is None:  # the best learner measured for the scenario's model (`learners.default_learner`)
        from meqc_jax.learners import default_learner
        from meqc_jax.scenarios import scenario_config

        args.learner = default_learner(scenario_config(args.scenario))
    try:
        spec = learner_spec(args.learner)
    except ValueError as e:
        raise CLIError(str(e)) from None
    settings, args.set_fields = _learner_settings(spec, args)
    config = _config_from_args(args, slots_per_episode=args.slots_per_epoch)
    try:  # every bad preset, field or value, and a learner that does not apply to the scenario: one line, now
        training = train.prepare(config, args.learner, args.hparams, settings)
    except ValueError as e:
        raise CLIError(str(e)) from None
    out = _writable_out(args.out or os.path.join("runs", time.strftime("train-%Y%m%d-%H%M%S")))
    console = Console(width=None if sys.stdout.isatty() else 120)
    try:
        train.run(training, out, range(args.seed, args.seed + args.seeds), chunk=args.chunk,
                  eval_slots=args.eval_slots, scenario=args.scenario, resume=not args.no_resume,
                  progress=not args.no_progress, log=console.print,
                  fit_hint="--eval-slots, or the users and servers (--users, --servers)")
    except FloatingPointError as e:
        raise CLIError(str(e)) from None
    return 0


def sweep_cmd(args) -> int:
    import dataclasses
    import os

    from rich.console import Console

    from meqc_jax import sweep

    if args.max_hours is not None and not (args.max_hours > 0 and args.max_hours < float("inf")):
        raise CLIError(f"--max-hours={args.max_hours!r} is invalid: allowed a number > 0")
    try:
        fixed = list(_parse_sets(args.set).items())  # SystemConfig names (aliases such as f_edge_ghz mapped)
        given = dict(policies=None if args.policies is None else tuple(
            p.strip() for p in args.policies.split(",") if p.strip()), seeds=args.seeds, envs=args.envs,
            slots=args.slots, chunk_cells=args.chunk_cells, train_epochs=args.train_epochs,
            max_hours=args.max_hours)
        if args.scenario != DEFAULT_SCENARIO or args.config is None:
            given["scenario"] = args.scenario
        if args.config is not None:
            spec = sweep.spec_from_toml(args.config, **given)
            grid = sweep.parse_grid(args.grid)
            if grid or fixed:
                spec = dataclasses.replace(spec, grid=tuple({**dict(spec.grid), **dict(grid)}.items()),
                                           fixed=tuple({**dict(spec.fixed), **dict(fixed)}.items()))
        else:
            spec = sweep.SweepSpec(grid=sweep.parse_grid(args.grid), fixed=tuple(fixed),
                                   **{k: v for k, v in given.items() if v is not None})
        sweep.plan(spec)  # every point's configuration validated before anything compiles
    except sweep.SweepError as e:
        raise CLIError(str(e)) from None
    out = _writable_out(args.out or os.path.join("runs", time.strftime("sweep-%Y%m%d-%H%M%S")))
    console = Console(width=None if sys.stdout.isatty() else 120)
    try:
        sweep.run(spec, out, progress=not args.no_progress, confirm=args.yes, log=console.print)
    except (sweep.SweepError, sweep.SweepTooLong) as e:
        raise CLIError(str(e)) from None
    console.print(f"wrote {out}/results.csv, summary.json and a figure per swept field")
    return 0


def scenarios_cmd(args) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Registered scenarios (meqc_jax.make(name, **overrides))")
    for col in ("name", "what it holds", "overrides of SystemConfig"):
        table.add_column(col, overflow="fold")
    for name, reg in SCENARIOS.items():
        table.add_row(name, reg.description, ", ".join(f"{k}={v!r}" for k, v in reg.overrides.items()) or "-")
    Console(width=None if sys.stdout.isatty() else 120).print(table)
    return 0


def info_cmd(args) -> int:
    import json
    import os

    from meqc_jax.doctor import collect, render

    out = None if args.out is None else os.path.abspath(args.out)
    if out is not None:
        _writable_out(os.path.dirname(out))
    info = collect()
    print(json.dumps(info, indent=1) if args.json else "\n".join(render(info)))
    if out is not None:
        from meqc_jax.io import atomic_write_json

        atomic_write_json(out, info)
    return 0


def reproduce_cmd(args) -> int:
    import os

    from rich.console import Console

    from meqc_jax.experiments import ReproduceConfig, default_workers, device_description, reproduce

    parts = DEFAULT_PARTS + (DYNAMICS_PARTS if args.dynamics else ())
    if args.only is not None:
        parts = tuple(x.strip() for x in args.only.split(",") if x.strip())
        bad = [x for x in parts if x not in PARTS_BY_NAME]  # the registry as it is now (a part added after import)
        if bad or not parts:
            raise CLIError(f"--only={args.only!r} is invalid: allowed a comma-separated subset of "
                           + ", ".join(PARTS_BY_NAME))
    overrides = {"scenario": args.scenario}
    if args.learner:
        try:  # a user's module is imported now: a wrong path or type is refused before any part runs
            for name in args.learner:
                learner_spec(name)
        except ValueError as e:
            raise CLIError(str(e)) from None
        overrides["learners"] = tuple(dict.fromkeys(args.learner))
    if args.policies is not None:
        from meqc_jax.baselines import is_user_policy, user_factory

        names = tuple(dict.fromkeys(n.strip() for n in args.policies.split(",") if n.strip()))
        try:  # a user's module is imported now: a wrong path or attribute is refused before any part runs
            for name in names:
                if not is_user_policy(name):
                    raise ValueError(f"--policies: {name!r} is invalid: allowed module.path:attribute naming a "
                                     "policy factory, or an installed meqc_jax.policies entry point (the parts "
                                     "evaluate the registered policies already)")
                user_factory(name)
        except ValueError as e:
            raise CLIError(str(e)) from None
        overrides["policies"] = names
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    if args.epochs is not None:
        overrides.update(epochs_mlp=args.epochs, epochs_vqc=args.epochs, epochs_sweep=args.epochs,
                         epochs_large=args.epochs)
    try:
        rc = ReproduceConfig.quick(**overrides) if args.quick else ReproduceConfig(**overrides)
    except ValueError as e:
        raise CLIError(str(e)) from None
    out = _writable_out(args.out or os.path.join("runs", "reproduce-quick" if args.quick else "reproduce"))
    console = Console(width=None if sys.stdout.isatty() else 120)
    workers = default_workers() if args.workers == "auto" else args.workers
    console.print(f"reproducing {', '.join(parts)} ({'quick' if args.quick else 'full'}) on {device_description()} "
                  f"-> {out}" + (f" ({workers} worker processes)" if workers > 1 else ""))
    t0 = time.perf_counter()
    reproduce(rc, out, force=args.force, parts=parts, progress=not args.no_progress, log=console.print,
              workers=workers)
    console.print(f"done in {time.perf_counter() - t0:.0f} s: figures, CSVs and report.md in {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.distributed:
        import jax

        try:
            # CPU processes need a collectives backend to form one mesh (gloo ships with jaxlib); accelerators
            # use their own, so this changes nothing there
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        except (AttributeError, ValueError):  # a jax without the option (older) or without gloo
            pass
        try:
            jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                                       process_id=args.process_id)
        except Exception as e:  # no cluster detected, coordinator unreachable, or jax already initialized
            print(f"meqc: error: --distributed: jax.distributed.initialize() failed: {e}", file=sys.stderr)
            return 2
    if args.command not in ("scenarios", "info"):  # info reports the cache folder, it does not create it
        from meqc_jax.compilation import enable_persistent_cache

        try:
            enable_persistent_cache(args.compile_cache)
        except OSError as e:
            print(f"meqc: error: --compile-cache={args.compile_cache!r} is invalid: {e.strerror or e}; "
                  "allowed a folder this user can create, or off", file=sys.stderr)
            return 2
    commands = {"demo": demo, "evaluate": evaluate_cmd, "train": train_cmd, "reproduce": reproduce_cmd,
                "scenarios": scenarios_cmd, "sweep": sweep_cmd, "info": info_cmd}
    try:
        return commands[args.command](args)
    except CLIError as e:
        print(f"meqc {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ProgramTooLarge as e:  # a compiled program's memory plan exceeds the device: refused before it ran
        print(f"meqc {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
