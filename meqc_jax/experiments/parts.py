"""The registry of reproduction parts: one line per figure, naming its module's `run` (train,
evaluate, write the CSV and PNG, return the data) and `report` (its section of report.md).

A new figure is one module with `run(name, rc, out, progress) -> dict` and
`report(name, data, rc) -> (lines, claims)`, plus one line here.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from meqc_jax.experiments import contention, qpu_map, sustainable, sweeps, training


@dataclasses.dataclass(frozen=True)
class Part:
    name: str
    title: str
    run: Callable  # (name, rc, out, progress) -> data (JSON-able dict)
    report: Callable  # (name, data, rc) -> (markdown lines, [(claim, this run, verdict)])
    weight: float = 1.0  # its share of a quick run's wall time (measured): parallel workers start the longest first
    default: bool = True  # run by a plain `meqc reproduce`; False: only when named (--only, --dynamics)
    # parts with the same group compile the same programs (same shapes): parallel workers run a group's parts
    # one after another in one process, so the later ones reuse the first one's compiled programs
    group: str | None = None
    # (name, rc, dry_run=False) -> what it compiles: the programs the part reaches late (e.g. Fig. 4's VQC training,
    # after its MLP's), compiled by another parallel worker into the persistent compilation cache while the part
    # starts; dry_run only names them (without jax). None: nothing to compile ahead
    precompile: Callable | None = None
    # (name, rc) -> [(SystemConfig, PPOConfig, configurations)]: the trainings whose size grows with the seeds, each
    # `rc.seeds` runs per configuration in one program; `reproduce` checks they fit the device before any part
    # starts (`common.check_trainings_fit`). None: nothing to check ahead (`loop.fit` still checks each training)
    trainings: Callable | None = None


PART_LIST = (
    Part("fig4", "training curves at U = E = sizes[0], every preset (MLP and VQC)", training.run, training.report, 60,
         group="u10", precompile=training.precompile, trainings=training.trainings),
    Part("fig5", "training curves at U = E = sizes[1], balanced", training.run, training.report, 35,
         precompile=training.precompile, trainings=training.trainings),
    Part("fig6", "training curves at U = E = sizes[2], balanced", training.run, training.report, 45,
         precompile=training.precompile, trainings=training.trainings),
    Part("fig7", "final cost vs edge CPU speed", sweeps.run, sweeps.report, 12, group="u10",
         trainings=sweeps.trainings),
    Part("fig8", "final cost vs physical qubits per QPU", sweeps.run, sweeps.report, 10, group="u10",
         trainings=sweeps.trainings),
    Part("fig9", "final cost vs qubit lifetime t1", sweeps.run, sweeps.report, 10, group="u10",
         trainings=sweeps.trainings),
    Part("fig10", "the oracle's QPU share over t1 x latency weight (not in the paper)", qpu_map.run, qpu_map.report, 15),
    # docs/spec/dynamics.md: state carried between slots, one part per registered scenario (opt-in)
    *(Part(name, f"{scen}: every policy over an episode, drift-plus-penalty vs V, the clairvoyant gap",
           sustainable.run, sustainable.report, 40, default=False)
      for name, scen in sustainable.SCENARIO_OF_PART.items()),
    # docs/spec/dynamics.md section 8: users who share their servers (opt-in)
    Part("contention", f"{contention.SCENARIO}: cost and price of anarchy vs load, learners against the exact optimum",
         contention.run, contention.report, 60, default=False),
)
PARTS_BY_NAME = {p.name: p for p in PART_LIST}
PARTS = tuple(PARTS_BY_NAME)
DEFAULT_PARTS = tuple(p.name for p in PART_LIST if p.default)  # the paper's figures (+ Fig. 10)
DYNAMICS_PARTS = tuple(p.name for p in PART_LIST if not p.default)

__all__ = ["DEFAULT_PARTS", "DYNAMICS_PARTS", "PARTS", "PARTS_BY_NAME", "PART_LIST", "Part"]
