"""The settings each family of parts owns (validated, frozen, jax-free), each with its `quick()` preset; the
full preset is the defaults. `ReproduceConfig` holds one of each beside the settings every figure shares:

    rc = ReproduceConfig.quick(dynamics=DynamicsSettings.quick(epochs=40), contention=ContentionSettings(size=6))

* `DynamicsSettings`   the dynamics parts (queues, battery, drift, sustainable: `experiments/sustainable.py`)
* `ContentionSettings` the contention part (`experiments/contention.py`) and the learners it compares
* `MapSettings`        the QPU map (Fig. 10, `experiments/qpu_map.py`)

A bad value is one ValueError line naming the class, the field and what is allowed (`config.FieldChecker`).
"""

from __future__ import annotations

import dataclasses

from meqc_jax.config import FieldChecker, dataclass_to_dict


@dataclasses.dataclass(frozen=True)
class PartLearner:
    """A learner a part trains, through the learner registry (`meqc_jax.learners.learner_spec`): its registered
    name (or entry point, or module path), its preset, settings over it, and which field of the part's settings
    gives its epochs (the part's sizes fill the learner's `num_envs` and `num_minibatches` where those exist)."""

    learner: str
    preset: str | None = None
    settings: tuple[tuple[str, object], ...] = ()
    epochs_field: str = "epochs"


# the contention part's learners, on the project's PPO preset (discount 0: nothing carries between slots there)
# unless named otherwise
CONTENTION_LEARNERS = {
    "ppo_own": PartLearner("ppo", "project", (("reward", "own"),)),  # independent actors, each on its own cost
    # independent actors on -C, a centralized critic
    "ppo_shared": PartLearner("ppo", "project", (("reward", "shared"), ("critic", "central"))),
    # + one actor shared with an agent id
    "mappo": PartLearner("ppo", "project", (("reward", "shared"), ("critic", "central"), ("shared_params", True))),
    # MAPPO whose devices act in index order, each seeing the earlier ones' server choices (PPOConfig.actor_order)
    "mappo_seq": PartLearner("ppo", "project", (("reward", "shared"), ("critic", "central"), ("shared_params", True),
                                                ("actor_order", "sequential"))),
    # not PPO: DROO's learned candidate joint modes, the cheapest played as the model prices it (learners.droo)
    "droo": PartLearner("droo", "swaps", (("candidates", 64),), epochs_field="droo_epochs"),
}


class _Settings:
    def to_dict(self) -> dict:
        return dataclass_to_dict(self)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class DynamicsSettings(_Settings):
    """The dynamics parts: does looking ahead pay? (dynamics-spec; `experiments/sustainable.py`)."""

    size: int = 10  # U = E of the trained learner and the episode comparison (dynamics-spec: 10)
    epochs: int = 400  # PPO epochs (each one episode of `slots` slots x `envs` environments)
    envs: int = 32
    slots: int = 500  # the episode length (dynamics-spec: T = 500)
    eval_envs: int = 64  # instances x one whole episode, per policy, on its own trajectory
    minibatches: int = 8  # PPO minibatches per pass (a divisor of slots x envs is used)
    # drift-plus-penalty's V grid and LODCO's theta as a share of the battery capacity (with a battery): V wide
    # enough that its best is interior at U = E = 10; theta up to 6 x, Sustainable's best (still the edge there,
    # benchmarks/beat_dpp.py); the `priced` learner starts at the grid's best on its own training episodes
    v: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    theta: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
    # the `priced` learner (learners/priced.py), trained in every dynamics part next to PPO: its ES steps and the
    # whole episodes each candidate plays per step (its own budget: the part's PPO epochs x envs would be 20 x as many
    # environment steps: 400 x 32 against 40 x 16 per candidate)
    priced_epochs: int = 40
    priced_envs: int = 16
    small: int = 3  # U = E of the clairvoyant comparison
    horizon: int = 10  # its horizon H (slots)
    warmup: int = 20  # greedy slots before the horizon starts (a carry that is not the reset's)
    bound_instances: int = 20
    bound_seconds: float = 20.0  # HiGHS's time per horizon MIP; past it the proven lower bound is used

    def __post_init__(self):
        c = FieldChecker(self, "DynamicsSettings")
        for name, hi in (("epochs", 10**5), ("envs", 2**16), ("slots", 10**5), ("eval_envs", 10**5),
                         ("minibatches", 2**16), ("small", 8), ("size", 1000), ("horizon", 100),
                         ("bound_instances", 10**4), ("priced_epochs", 10**5), ("priced_envs", 2**16)):
            c.integer(name, 1, hi)
        c.integer("warmup", 0, 10**5)
        c.values("v", 1e-6, 1e6)
        c.real("bound_seconds", 0.0, 1e5)
        c.values("theta", 0.0, 10.0, lo_open=False)
        if self.warmup + self.horizon > self.slots:
            c.fail("horizon", f"at most slots - warmup = {self.slots - self.warmup} (the bound's horizon stays "
                   "inside one episode)")

    @classmethod
    def quick(cls, **overrides) -> DynamicsSettings:
        """20 epochs of 100 slots x 8 environments, 16 held-out episodes, a 3-point V grid, 4 bound instances,
        `priced` for 4 ES steps of 4 episodes."""
        return cls(**{**dict(epochs=20, envs=8, slots=100, eval_envs=16, v=(0.3, 3.0, 30.0), theta=(1.0,),
                             horizon=5, warmup=10, bound_instances=4, priced_epochs=4, priced_envs=4), **overrides})


@dataclasses.dataclass(frozen=True)
class ContentionSettings(_Settings):
    """The contention part: users who share their servers (dynamics-spec section 8; `experiments/contention.py`)."""

    servers: int = 3  # E of the load sweep and of the small learner comparison
    users: tuple[int, ...] = (3, 6, 9, 12)  # U of the load sweep: 1 to 4 users per server
    learn_users: int = 6  # U of the small learner comparison (issue 14: U = 6, E = 3)
    size: int = 10  # U = E of the large learner comparison
    epochs: int = 300  # PPO epochs, each of `slots` slots x `envs` environments
    envs: int = 64
    slots: int = 100
    minibatches: int = 8  # PPO minibatches per pass (a divisor of slots x envs is used)
    eval_envs: int = 100  # held-out instances x eval_slots slots, every policy on the same ones
    eval_slots: int = 100
    br_slots: int = 1024  # fresh slots on which best response's convergence is recorded
    learners: tuple[str, ...] = tuple(CONTENTION_LEARNERS)  # CONTENTION_LEARNERS to train
    droo_epochs: int = 40  # DROO's epochs, each `slots` batches of `envs` fresh slots

    def __post_init__(self):
        c = FieldChecker(self, "ContentionSettings")
        for name, hi in (("servers", 8), ("learn_users", 14), ("size", 14), ("epochs", 10**5), ("envs", 2**16),
                         ("slots", 10**5), ("eval_envs", 10**5), ("eval_slots", 10**5), ("minibatches", 2**16),
                         ("br_slots", 10**6), ("droo_epochs", 10**5)):
            c.integer(name, 1, hi)
        c.values("users", 1, 14, integral=True)
        c.check("learners", isinstance(self.learners, tuple) and len(self.learners) > 0
                and set(self.learners) <= set(CONTENTION_LEARNERS), "a non-empty tuple of " + ", ".join(CONTENTION_LEARNERS))

    @classmethod
    def quick(cls, **overrides) -> ContentionSettings:
        """U = 3, 6, 9 in the load sweep; PPO 30 epochs, DROO 5, of 50 slots x 32 environments; 640 held-out slots."""
        return cls(**{**dict(users=(3, 6, 9), epochs=30, droo_epochs=5, envs=32, slots=50, eval_envs=64,
                             eval_slots=10, br_slots=256), **overrides})


@dataclasses.dataclass(frozen=True)
class MapSettings(_Settings):
    """The QPU map (Fig. 10): where the oracle sends tasks to a QPU, over qubit lifetimes x latency weights."""

    t1_ms: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1000.0, 10000.0)
    lam_d: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)  # lam_e = 1 - lam_d
    envs: int = 50
    slots: int = 20

    def __post_init__(self):
        c = FieldChecker(self, "MapSettings")
        c.integer("envs", 1, 10**5)
        c.integer("slots", 1, 10**5)
        c.values("t1_ms", 1e-9, 1e6)
        c.values("lam_d", 0.0, 1.0, lo_open=False)

    @classmethod
    def quick(cls, **overrides) -> MapSettings:
        """6 lifetimes x 3 weights, 8 instances x 4 slots each."""
        return cls(**{**dict(t1_ms=(0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0), lam_d=(0.1, 0.5, 0.9), envs=8, slots=4),
                      **overrides})


__all__ = ["CONTENTION_LEARNERS", "ContentionSettings", "DynamicsSettings", "MapSettings", "PartLearner"]
