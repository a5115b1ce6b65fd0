"""SI constants and the configuration's constants in SI units; imports nothing of the package.

The bottom layer: `physics` (quantum hardware) and `config` (the validated configuration, which
builds an `SIParams` once) both read from here, so neither has to import the other's module to
know a unit.
"""

from __future__ import annotations

import dataclasses

# Physical constants (CODATA 2018, exact in the SI since 2019).
HBAR = 1.054571817e-34  # J s
K_B = 1.380649e-23  # J / K

# Limits that keep every quantity representable: 91**k must fit in int32 (k <= 4), the compiled
# circuit's depth floor(pi/4 * sqrt(2**q)) must fit in int32 (q <= 60).
MAX_CONCATENATION = 4
MAX_LOGICAL_QUBITS = 60


@dataclasses.dataclass(frozen=True)
class SIParams:
    """The configuration's constants in SI units (J, W, s, Hz, K, bytes). Built once by `SystemConfig.si`."""

    # sampling ranges (spec sections 2-3)
    f_local_choices: tuple[float, ...]  # Hz
    p_tx_range: tuple[float, float]  # W
    f_edge_choices: tuple[float, ...]  # Hz
    phys_qubits_range: tuple[int, int]
    k_choices: tuple[int, ...]
    t1: float  # s
    frames_range: tuple[int, int]
    bytes_per_frame: int
    cycles_base: float
    cycles_exponent_range: tuple[int, int]
    prims_range: tuple[int, int]
    c_b: int
    gain_range: tuple[float, float]
    t1_jitter_sigma: float
    lam_d: float
    lam_e: float
    # channel and classical computing (spec section 3, Eqs. 1-6)
    bandwidth: float  # Hz
    noise_power: float  # W
    chip_coeff: float  # J / cycle
    quantum_unit: float  # bytes per quantum work unit (spec section 7)
    # quantum hardware (spec section 6)
    omega: float  # rad / s
    t_qb: float
    t_gen: float
    t_ext: float
    attenuation: float  # linear
    num_stages: int
    tau_1: float
    tau_2: float
    tau_m: float
    eps_thr: float
    q_gen: float  # W
    q_hemt: float
    t_hemt: float
    q_para: float
    t_para: float
    success_threshold: float

    @property
    def tau_step(self) -> float:
        return max(self.tau_1, self.tau_2, self.tau_m)
