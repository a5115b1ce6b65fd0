"""What every part of a reproduction shares: its settings (the figures' own here; each family of parts' in
`experiments/settings.py`, one field each), the system it runs on, and training.

`ReproduceConfig` is jax-free (the CLI validates it before anything heavy is imported); the
helpers below train through the learner interface only (`meqc_jax.learners`, `meqc_jax.loop`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from meqc_jax.config import FieldChecker, SystemConfig, dataclass_to_dict
from meqc_jax.experiments.settings import ContentionSettings, DynamicsSettings, MapSettings, PartLearner
from meqc_jax.learners.ppo import PAPER_EPOCHS
from meqc_jax.scenarios import DEFAULT_SCENARIO, SCENARIOS, scenario_config

PRESETS = ("balanced", "delay", "energy")
TRAINING_PARTS = ("fig4", "fig5", "fig6")


def part_learner(system: SystemConfig, choice: PartLearner, epochs: int, envs: int, minibatches: int | None = None):
    """(the learner `choice` names for `system`, its settings): `choice`'s preset and settings, with the part's
    `epochs`, `envs` and `minibatches` (the largest divisor of an epoch's samples up to it) where the learner's
    settings have those fields. A learner that does not apply to `system` raises a one-line ValueError."""
    import math

    from meqc_jax.learners import learner_spec

    spec = learner_spec(choice.learner, "ReproduceConfig.learners")
    sizes = {"epochs": epochs, "num_envs": envs}
    if minibatches is not None:
        sizes["num_minibatches"] = math.gcd(minibatches, system.slots_per_episode * envs)
    fields = spec.fields()
    config = spec.config(system, choice.preset, **{k: v for k, v in sizes.items() if k in fields},
                         **dict(choice.settings))
    return spec.make(system, config), config


def cost_curve(metrics) -> np.ndarray:
    """The first run's training cost per epoch, from a learner's metrics (NaN per epoch for learners that report
    no `cost`)."""
    curve = getattr(metrics, "cost", None)
    if curve is None:
        return np.full(np.shape(metrics.nonfinite)[-1], np.nan)
    return np.asarray(curve)[0]


def checkpoint_name(text: str) -> str:
    """`text` as a folder name (a module path's ':' and other signs become '_')."""
    import re

    return re.sub(r"[^\w.-]", "_", text)


def user_policies(rc: ReproduceConfig, system: SystemConfig) -> tuple[list, dict]:
    """(the policies of `rc.policies` built for `system`, {name: why} of those whose factory refused it)."""
    from meqc_jax.baselines import make_policy

    built, refused = [], {}
    for name in rc.policies:
        try:
            built.append(make_policy(name, system))
        except ValueError as e:
            refused[name] = str(e)
    return built, refused


@dataclasses.dataclass(frozen=True)
class ReproduceConfig:
    """Settings of a reproduction (validated). `ReproduceConfig.quick()` is the small form."""

    seeds: int = 3
    seed: int = 0
    epochs_mlp: int = PAPER_EPOCHS["mlp"]
    epochs_vqc: int = PAPER_EPOCHS["vqc"]
    epochs_sweep: int | None = None  # MLP epochs of the sweeps (Figs. 7-9); None: epochs_mlp
    epochs_large: int | None = None  # MLP epochs at the larger sizes (Figs. 5-6); None: epochs_mlp
    envs: int = 64
    slots_per_epoch: int = 500  # paper: an epoch is 500 slots
    minibatches: int = 8
    update_epochs: int = 2  # PPO passes over each epoch's data (PPOConfig.update_epochs)
    lr: float = 1e-3  # Adam step size (PPOConfig.lr)
    hidden: tuple[int, ...] = (256, 256)  # the MLP torsos' widths (PPOConfig.hidden; the VQC's are fixed)
    # the random baselines (cheap, and the noisiest costs: a random server choice has a heavy tail) are also
    # evaluated on this many times the held-out instances, on fresh slots, so that their intervals are as
    # narrow as the others'; 1: only on the shared, paired slots
    eval_random_factor: int = 1
    # the learned policies (cheap to act, and the VQC's costs vary most between instances) on this many times the
    # held-out instances too (the shared ones first); their ratio to the oracle stays paired, on the shared slots
    eval_learned_factor: int = 1
    # one actor-critic shared by every device (PPOConfig.shared_params) instead of the paper's one per device:
    # quick mode's choice (it learns fastest per second, docs/learning.md "Quick mode")
    shared_params: bool = False
    oracle_lp_first: bool = False  # SystemConfig.oracle_lp_first for every part's oracle (quick mode: on)
    chunk: int = 10
    eval_envs: int = 100
    eval_slots: int = 100  # per instance: eval_envs x eval_slots held-out slots per run
    # with eval_same_user_slots, eval_envs is for U = E = sizes[0] and Figs. 5-6 use proportionally fewer
    # instances (the same user-slots: their slot costs average over more users, so their intervals are as narrow)
    eval_same_user_slots: bool = False
    sizes: tuple[int, ...] = (10, 20, 30)  # U = E of Figs. 4, 5, 6
    vqc_figures: tuple[str, ...] = ("fig4", "fig5", "fig6")  # which training figures also train the VQC
    f_edge_ghz: tuple[float, ...] = (5.0, 10.0, 15.0, 20.0, 25.0, 30.0)  # Fig. 7
    phys_qubits: tuple[int, ...] = (1000, 2000, 5000, 10000, 15000, 20000)  # Fig. 8
    t1_ms: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)  # Fig. 9
    fast_compile: bool = False  # evaluations without LLVM optimizations (~3x faster compiles), trainings at its level 1
    quick_mode: bool = False
    scenario: str = DEFAULT_SCENARIO  # the registered scenario every part starts from (meqc_jax.scenarios)
    # the settings each family of parts owns (experiments/settings.py), each with its quick preset
    qpu_map: MapSettings = MapSettings()  # Fig. 10 (experiments/qpu_map.py)
    dynamics: DynamicsSettings = DynamicsSettings()  # queues, battery, drift, sustainable (experiments/sustainable.py)
    contention: ContentionSettings = ContentionSettings()  # the contention part (experiments/contention.py)
    # learners the dynamics and contention parts train too (`meqc reproduce --learner`): registered names, installed
    # entry points or module.path:attribute, each at its default preset with the part's epochs and environments
    learners: tuple[str, ...] = ()
    # policies of the user's (`meqc reproduce --policies`: module.path:attribute factories or installed entry points)
    # the dynamics and contention parts evaluate next to theirs, on the same paired slots
    policies: tuple[str, ...] = ()

    def __post_init__(self):
        c = FieldChecker(self, "ReproduceConfig")
        for name, hi in (("seeds", 100), ("epochs_mlp", 10**5), ("epochs_vqc", 10**5), ("envs", 2**16),
                         ("slots_per_epoch", 10**5), ("minibatches", 2**16), ("chunk", 10**5),
                         ("eval_envs", 10**5), ("eval_slots", 10**6)):
            c.integer(name, 1, hi)
        c.integer("seed", 0, 2**31 - 1)
        for name in ("epochs_sweep", "epochs_large"):
            if getattr(self, name) is not None:
                c.integer(name, 1, 10**5)
        c.integer("update_epochs", 1, 1000)
        c.real("lr", 0.0, 1.0)
        c.values("hidden", 1, 65536, integral=True, lo_open=False)
        c.values("sizes", 1, 1000, integral=True)
        c.values("f_edge_ghz", 1e-3, 1e4)
        c.values("phys_qubits", 0, 2**31 - 2, integral=True, lo_open=False)
        c.values("t1_ms", 1e-9, 1e6)
        c.check("vqc_figures", isinstance(self.vqc_figures, tuple) and set(self.vqc_figures) <= set(TRAINING_PARTS),
                "a tuple of the training figures fig4, fig5, fig6")
        c.choice("fast_compile", (False, True))
        c.choice("quick_mode", (False, True))
        c.choice("eval_same_user_slots", (False, True))
        c.choice("shared_params", (False, True))
        c.choice("oracle_lp_first", (False, True))
        c.integer("eval_random_factor", 1, 1000)
        c.integer("eval_learned_factor", 1, 1000)
        c.choice("scenario", tuple(SCENARIOS))
        c.check("policies", isinstance(self.policies, tuple) and all(isinstance(n, str) and n.strip() for n in
                                                                      self.policies),
                "a tuple of module.path:attribute policy factories or installed meqc_jax.policies entry points")
        for name, kind in (("qpu_map", MapSettings), ("dynamics", DynamicsSettings), ("contention", ContentionSettings)):
            c.check(name, isinstance(getattr(self, name), kind), f"a {kind.__name__} (experiments.settings)")
        if (self.envs * self.slots_per_epoch) % self.minibatches:
            c.fail("minibatches", f"a divisor of envs x slots_per_epoch = {self.envs * self.slots_per_epoch}")

    @classmethod
    def quick(cls, **overrides) -> ReproduceConfig:
        """Every figure on small settings (one seed, short epochs) with a learner that has converged at
        U = E = 10: about 70 s on 2 CPU cores (README; docs/learning.md "Quick mode"). The budget and PPO
        settings were chosen by measurement (docs/learning.md "Quick mode", benchmarks/tune_quick.py): 64
        environments x 50 slots per epoch, 2 passes of 64 minibatches (128 gradient steps per epoch at a
        quarter of the arithmetic of 8 passes of 8) at step size 3e-3, 64 x 64 torsos, one actor-critic
        shared by the devices; 20 epochs at U = E = 10 (Fig. 4; the VQC 10), 10 for the sweeps and at
        U = E = 20 and 30 (every count a multiple of `chunk`, so each size compiles one training program); a
        held-out set of 4096 slots at U = E = 10 and the same user-slots at the larger sizes, the random
        baselines on 4 x as many and the learned policies on 2 x (every interval under 2 % of its mean)."""
        base = dict(seeds=1, epochs_mlp=20, epochs_vqc=10, epochs_sweep=10, epochs_large=10, envs=64,
                    slots_per_epoch=50, minibatches=64, update_epochs=2, lr=3e-3, hidden=(64, 64), shared_params=True,
                    chunk=5, eval_envs=4096, eval_slots=1, eval_same_user_slots=True, eval_random_factor=4, eval_learned_factor=2,
                    oracle_lp_first=True,
                    f_edge_ghz=(5.0, 15.0, 30.0), phys_qubits=(1000, 5000, 20000),
                    t1_ms=(0.1, 10.0, 1000.0), vqc_figures=("fig4",), fast_compile=True, quick_mode=True,
                    qpu_map=MapSettings.quick(), dynamics=DynamicsSettings.quick(), contention=ContentionSettings.quick())
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict:
        return dataclass_to_dict(self)


def system(rc: ReproduceConfig, size: int = 10, slots: int | None = None, **kw) -> SystemConfig:
    """The scenario's configuration at U = E = `size` with the reproduction's episode length."""
    return scenario_config(rc.scenario, num_users=size, num_servers=size,
                           slots_per_episode=rc.slots_per_epoch if slots is None else slots,
                           **{"oracle_lp_first": rc.oracle_lp_first, **kw})


def compiler_options(rc: ReproduceConfig):
    """XLA options of the evaluation programs (they run a few slots: `FAST_COMPILE` with `rc.fast_compile`)."""
    from meqc_jax.sharding import FAST_COMPILE

    return FAST_COMPILE if rc.fast_compile else None


def train_compiler_options(rc: ReproduceConfig):
    """XLA options of the training programs with `rc.fast_compile`: LLVM's lighter level (`LIGHT_COMPILE`),
    not none at all: they run for thousands of slots, where unoptimized code costs more than the compile it
    saves (measured: a quick-mode U = E = 10 training ran 2.5x longer, 6.7 s vs 2.7 s, for a compile ~1.4x
    faster); level 1 compiles ~1.4x faster and runs ~3 % slower."""
    from meqc_jax.sharding import LIGHT_COMPILE

    return LIGHT_COMPILE if rc.fast_compile else None


def ppo_config(torso: str, rc: ReproduceConfig, epochs: int | None = None):
    """The PPOConfig of the reproduction's trainings with `torso` (`epochs` overrides `rc.epochs_mlp` or
    `rc.epochs_vqc`)."""
    from meqc_jax.learners.ppo import PPOConfig

    if epochs is None:
        epochs = rc.epochs_vqc if torso == "vqc" else rc.epochs_mlp
    return PPOConfig(torso=torso, epochs=epochs, num_envs=rc.envs, num_minibatches=rc.minibatches,
                     update_epochs=rc.update_epochs, lr=rc.lr, hidden=rc.hidden, shared_params=rc.shared_params)


def check_trainings_fit(part: str, rc: ReproduceConfig, trainings) -> None:
    """Refuse (`compilation.ProgramTooLarge`, one line naming --seeds and the seeds that fit) a part whose trainings
    would not fit the device, from their sizes alone -- nothing is built, traced or compiled, so `reproduce` checks
    every part before any of them starts. `trainings`: (SystemConfig, PPOConfig, configurations) per training of
    the part (`Part.trainings`), each trained for `rc.seeds` seeds per configuration in one program. The bound
    is the epoch's observations the rollout keeps (`learners.ppo.observation_floor_bytes`), split over the devices
    as `loop.fit` splits runs and environments; `fit` still checks XLA's plan of each program before it runs."""
    import math

    import jax

    from meqc_jax.compilation import device_memory_bytes, refuse_if_over
    from meqc_jax.learners.ppo import observation_floor_bytes
    from meqc_jax.sharding import mesh_shape

    have = device_memory_bytes()
    for system_config, ppo, configs in trainings:
        per_run = observation_floor_bytes(system_config, ppo)

        def need(seeds: int) -> int:
            runs = configs * seeds
            return math.ceil(runs * per_run / math.prod(mesh_shape((runs, ppo.num_envs), jax.device_count())))

        if have is None or need(rc.seeds) <= have:
            continue
        fits = [s for s in range(1, 101) if need(s) <= have]
        lower = (f"the seeds (--seeds, allowed 1 to 100: at most {max(fits)} pass this bound here)" if fits else
                 "the environments or slots per epoch (ReproduceConfig.envs, slots_per_epoch): not even one seed fits")
        refuse_if_over(need(rc.seeds), f"reproduce {part}: training {configs * rc.seeds} run(s) ({configs} "
                       f"configuration(s) x {rc.seeds} seed(s)) of U={system_config.num_users}, "
                       f"E={system_config.num_servers} with {ppo.num_envs} envs x {system_config.slots_per_episode} "
                       f"slots per epoch", lower, "an epoch's observations alone, from the sizes", have, at_least=True)


def _training(system_config: SystemConfig, torso: str, rc: ReproduceConfig, configs: list[SystemConfig],
              epochs: int | None):
    """The learner, runs [(config index, seed)] and stacked EnvParams of `train` (nothing compiled yet)."""
    from meqc_jax.env import MEQCEnv
    from meqc_jax.learners import make_learner

    learner = make_learner("ppo", system_config, ppo_config(torso, rc, epochs),
                           compiler_options=train_compiler_options(rc))
    env = learner.env
    runs = [(i, s) for i in range(len(configs)) for s in range(rc.seed, rc.seed + rc.seeds)]
    params = MEQCEnv.stack_params([env.params_for(configs[i]) for i, _ in runs])
    return learner, runs, params


def train(system_config: SystemConfig, torso: str, rc: ReproduceConfig, configs: list[SystemConfig], ckpt: str,
          progress: bool, epochs: int | None = None):
    """One run per (config, seed), vmapped in one program; returns (learner, state, metrics, runs, params).
    `epochs` overrides the torso's epochs (`rc.epochs_mlp`, `rc.epochs_vqc`)."""
    from meqc_jax.loop import fit

    learner, runs, params = _training(system_config, torso, rc, configs, epochs)
    state, metrics = fit(learner, [s for _, s in runs], chunk=rc.chunk, ckpt_dir=ckpt, progress=progress,
                         env_params=params)
    return learner, state, metrics, runs, params


def precompile_training(system_config: SystemConfig, torso: str, rc: ReproduceConfig, configs: list[SystemConfig],
                        epochs: int | None = None) -> int:
    """Compile the programs `train(...)` with these arguments runs, without training (`loop.precompile`): with
    the persistent compilation cache on, a `train` in another process then loads them. Returns the training
    programs compiled."""
    from meqc_jax.loop import precompile

    learner, runs, params = _training(system_config, torso, rc, configs, epochs)
    return precompile(learner, [s for _, s in runs], chunk=rc.chunk, env_params=params)


RANDOM_BASELINES = ("random_offloading", "random_partitioning")


def held_out(system_config: SystemConfig, learned: list, rc: ReproduceConfig, num_envs: int, params, progress: bool):
    """Every learned policy, baseline and the oracle on the same held-out slots (paired), in one program;
    with `rc.eval_random_factor` (`rc.eval_learned_factor`) > 1 the random baselines (the learned policies)
    are evaluated on that many times the instances, the shared ones first (`evaluate`'s `more_instances`;
    their ratios to the oracle stay on the shared slots). Returns the `EvalResult`."""
    from meqc_jax.baselines import POLICY_NAMES
    from meqc_jax.evaluate import HELD_OUT_SEED_OFFSET, evaluate

    more = {**{name: rc.eval_random_factor for name in RANDOM_BASELINES},
            **{pol.name: rc.eval_learned_factor for pol in learned}}
    return evaluate(system_config, [*learned, *POLICY_NAMES], num_envs=num_envs, num_slots=rc.eval_slots,
                    seed=rc.seed + HELD_OUT_SEED_OFFSET, progress=progress, env_params=params,
                    compiler_options=compiler_options(rc), more_instances=more)


def epochs_to_converge(curve: np.ndarray, tol: float = 0.10) -> int:
    """First epoch from which the 5-epoch moving average stays within `tol` of the final cost
    (the mean of the last 10 % of epochs)."""
    curve = np.asarray(curve, np.float64)
    n = len(curve)
    final = curve[-max(1, n // 10):].mean()
    w = min(5, n)
    smooth = np.convolve(curve, np.ones(w) / w, mode="valid")  # smooth[i] averages epochs i+1..i+w
    inside = smooth <= final * (1 + tol)
    for i in range(len(inside)):
        if inside[i:].all():
            return int(i + w)
    return n


def mark(ok: bool) -> str:
    """A claim's verdict word in the report."""
    return "reproduced" if ok else "not reproduced"
