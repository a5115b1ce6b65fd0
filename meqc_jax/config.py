"""System configuration: every default of the model spec as a typed, frozen, validated field.

Fields carry the paper's units (GHz, mW, MB, dB, ms, ...) so that a configuration reads like the
paper's Section V-A; `SystemConfig.si` converts them to SI exactly once. Validation runs in
`__post_init__`, i.e. before anything is traced, and raises a one-line `ValueError` naming the
field, the offending value and the allowed range.

The dataclass is frozen and hashable, so it can be passed as a static argument to `jax.jit`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from typing import Literal

from meqc_jax.units import MAX_CONCATENATION, MAX_LOGICAL_QUBITS, SIParams

ENERGY_MODELS = ("paper", "power_time")
LATENCY_MODELS = ("sum", "parallel")
ARBITRATIONS = ("arrival", "cheapest")
CONTENTION_UPLINKS = ("equal", "interference")  # dynamics-spec section 8

# Spec section 2: preference weights (lam_d, lam_e) of the three presets.
WEIGHT_PRESETS: dict[str, tuple[float, float]] = {
    "balanced": (0.5, 0.5),
    "delay": (0.9, 0.1),
    "energy": (0.1, 0.9),
}

def _fail(field: str, value, allowed: str, owner: str = "SystemConfig"):
    raise ValueError(f"{owner}.{field}={value!r} is invalid: allowed {allowed}")


def _is_real(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _in_range(x, lo, hi, lo_open: bool, integral: bool = False) -> bool:
    if integral and not (isinstance(x, int) and not isinstance(x, bool)):
        return False
    if not _is_real(x):
        return False
    return (x > lo if lo_open else x >= lo) and (hi is None or x <= hi)


def _range_text(lo, hi, lo_open: bool) -> str:
    return f"{'(' if lo_open else '['}{lo}, {'inf)' if hi is None else str(hi) + ']'}"


def dataclass_to_dict(obj) -> dict:
    """A frozen configuration dataclass as a plain JSON-serialisable dict (tuples become lists);
    shared by SystemConfig, PPOConfig and ReproduceConfig."""
    def plain(v):
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return dataclass_to_dict(v)  # nested settings (ReproduceConfig's per-part ones)
        return list(v) if isinstance(v, tuple) else v

    return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def field_types(cls) -> dict:
    """{field: its resolved type} of a configuration dataclass (annotations written as strings resolved)."""
    return typing.get_type_hints(cls)


def parse_field(cls, field: str, text, label: str = "--set"):
    """The value of `cls`'s field `field` from text (or an already typed value, e.g. from TOML), typed as the field
    is declared: bool as true/false, int, float, str, a Literal's options, `X | None` also from 'none', a tuple's
    elements separated by '/'. A bad name or value is one ValueError line starting `label field=...`."""
    hints = field_types(cls)
    if field not in hints:
        raise ValueError(f"{label} field {field!r} is unknown: allowed {', '.join(hints)}")
    hint = hints[field]
    args, origin = typing.get_args(hint), typing.get_origin(hint)
    if origin is tuple:
        items = list(text) if isinstance(text, (list, tuple)) else [x for x in str(text).split("/") if x.strip()]
        return tuple(parse_scalar(field, x, args[0], label) for x in items)
    if origin is Literal:
        if text not in args:
            raise ValueError(f"{label} {field}={text!r} is invalid: allowed one of {', '.join(args)}")
        return text
    kinds = [a for a in (args or (hint,)) if a is not type(None)]
    if type(None) in args and str(text).strip().lower() in ("none", "null"):
        return None
    return parse_scalar(field, text, kinds[0], label)


def parse_scalar(field: str, text, kind, label: str = "--set"):
    """One scalar of type `kind` (str, bool, int or float) from text; a bad value is one ValueError line."""
    if kind is str:
        return str(text).strip()
    if kind is bool:
        if isinstance(text, bool):
            return text
        if str(text).strip().lower() in ("true", "1", "yes"):
            return True
        if str(text).strip().lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"{label} {field}={text!r} is invalid: allowed true or false")
    try:
        value = kind(text) if not isinstance(text, str) else kind(float(text)) if kind is int else kind(text)
        if kind is int and float(text) != value:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"{label} {field}={text!r} is invalid: allowed {'an integer' if kind is int else 'a number'}") \
            from None
    return value


class FieldChecker:
    """Range checks for the fields of a frozen configuration dataclass, each failing with one line
    `Owner.field=value is invalid: allowed ...` (shared by SystemConfig and the learner's config)."""

    def __init__(self, obj, owner: str):
        self.obj, self.owner = obj, owner

    def fail(self, name, allowed):
        _fail(name, getattr(self.obj, name), allowed, self.owner)

    def check(self, name, ok: bool, allowed: str):
        if not ok:
            self.fail(name, allowed)

    def integer(self, name, lo, hi=None):
        self.check(name, _in_range(getattr(self.obj, name), lo, hi, lo_open=False, integral=True),
                   f"an integer in {_range_text(lo, hi, lo_open=False)}")

    def real(self, name, lo, hi=None, lo_open=True):
        self.check(name, _in_range(getattr(self.obj, name), lo, hi, lo_open),
                   f"a finite number in {_range_text(lo, hi, lo_open)}")

    def choice(self, name, options):
        self.check(name, getattr(self.obj, name) in options, "one of " + ", ".join(map(str, options)))

    def values(self, name, lo, hi=None, integral=False, lo_open=True, pair=False):
        """A tuple of numbers in range: a (low, high) pair, or a non-empty tuple of choices."""
        v = getattr(self.obj, name)
        kind = "integers" if integral else "finite numbers"
        rng = _range_text(lo, hi, lo_open)
        allowed = (f"a pair (low, high) of {kind} in {rng} with low <= high" if pair
                   else f"a non-empty tuple of {kind} in {rng}")
        ok = isinstance(v, tuple) and (len(v) == 2 if pair else len(v) > 0)
        ok = ok and all(_in_range(x, lo, hi, lo_open, integral) for x in v)
        self.check(name, ok and not (pair and v[0] > v[1]), allowed)


@dataclasses.dataclass(frozen=True)
class SystemConfig:
    """Every knob of the MEQC model (spec sections 1-9), in the paper's units.

    Defaults are the spec's. Sizes: `num_users` (U agents), `num_servers` (E), `slots_per_episode`.
    Options: `energy_model` in {paper, power_time}, `latency_model` in {sum, parallel},
    `arbitration` in {arrival, cheapest}, `preset` in {balanced, delay, energy} (optionally
    overridden by `lam_d`/`lam_e`); `dynamics`, the opt-in carried state (empty: the paper).
    """

    # --- sizes and options (spec sections 1, 7-9) ---
    num_users: int = 10
    num_servers: int = 10
    slots_per_episode: int = 500
    energy_model: Literal["paper", "power_time"] = "paper"
    latency_model: Literal["sum", "parallel"] = "sum"
    arbitration: Literal["arrival", "cheapest"] = "arrival"
    preset: Literal["balanced", "delay", "energy"] = "balanced"
    lam_d: float | None = None  # latency weight; None -> the preset's
    lam_e: float | None = None  # energy weight; None -> the preset's
    # opt-in dynamics carried between slots (meqc_jax.dynamics; docs/spec/dynamics.md); () = the paper's model
    dynamics: tuple[str, ...] = ()
    # the oracle (spec 11) solves a colliding slot's LP relaxation first and keeps it when integral: the same
    # optimum in a third of the time, but ties between equal-cost assignments may break otherwise than the
    # MIP's (their replayed float32 costs then differ by <= ~2e-6 relative), so it is opt-in (quick mode)
    oracle_lp_first: bool = False

    # --- dynamics constants (docs/spec/dynamics.md sections 1-5); unused while `dynamics` is empty ---
    p_task: float = 1.0  # probability that a user has a task in a slot (section 1)
    slot_s: float = 25.0  # tau, the slot length in seconds: what a server drains per slot (section 2)
    max_wait_s: float | None = None  # longest admitted queue wait, s; None -> 20 slot_s (section 2)
    drop_penalty_s: float | None = None  # latency charged for a dropped task, s; None -> max_wait_s (section 5)
    battery_j: float = 20.0  # device battery capacity, J (section 3)
    harvest_mean_j: float = 2.0  # mean energy harvested per slot, J; h ~ U[0, 2 harvest_mean_j] (section 3)
    drift_rho: float = 0.98  # slot-to-slot correlation of log t1 (section 4)
    drift_sigma: float = 1.0  # stationary standard deviation of log t1 (section 4)
    # section 8 (`contention`): how the users offloading to one server share its uplink: "equal" (B / n_e
    # each) or "interference" (the full band, the co-server transmitters' received power added to the noise)
    contention_uplink: Literal["equal", "interference"] = "equal"

    # --- scenario, drawn per episode (spec section 2) ---
    f_local_choices_ghz: tuple[float, ...] = (1.0, 2.0, 3.0)
    p_tx_range_mw: tuple[float, float] = (0.01, 0.2)
    f_edge_choices_ghz: tuple[float, ...] = (10.0, 15.0, 20.0)
    phys_qubits_range: tuple[int, int] = (1000, 5000)
    k_choices: tuple[int, ...] = (1, 2, 3)
    t1_ms: float = 1.0

    # --- tasks and channel, drawn per slot (spec section 3) ---
    frames_range: tuple[int, int] = (1024, 10240)
    frame_pixels: tuple[int, int] = (128, 128)
    bytes_per_pixel: int = 10
    cycles_base: float = 3.0  # n = cycles_base * 2**j
    cycles_exponent_range: tuple[int, int] = (3, 9)
    prims_range: tuple[int, int] = (3, 9)
    c_b: int = 6
    gain_range: tuple[float, float] = (4.0, 8.0)
    t1_jitter_sigma: float = 0.1

    # --- channel and classical computing constants (spec section 3) ---
    bandwidth_mhz: float = 20.0
    noise_power_dbm: float = -60.0
    chip_coeff: float = 1e-11  # J per cycle
    quantum_unit_mb: float = 1.0  # w = s / (quantum_unit_mb * 1e6 bytes)

    # --- quantum hardware (spec section 6, Appendices A-C) ---
    qubit_freq_ghz: float = 6.0
    t_qb_k: float = 0.1
    t_gen_k: float = 300.0
    t_ext_k: float = 300.0
    attenuation_db: float = 40.0
    num_stages: int = 5
    tau_1_ns: float = 25.0
    tau_2_ns: float = 100.0
    tau_m_ns: float = 100.0
    eps_thr: float = 2e-4
    q_gen_uw: float = 10.0
    q_hemt_uw: float = 50.0
    t_hemt_k: float = 70.0
    q_para_nw: float = 10.0
    t_para_k: float = 4.0
    success_threshold: float = 2.0 / 3.0

    def __post_init__(self):
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self):
        c = FieldChecker(self, "SystemConfig")
        integer, real, choice, choices = c.integer, c.real, c.choice, c.values
        pair = functools.partial(c.values, pair=True)

        integer("num_users", 1, 65536)
        integer("num_servers", 1, 65536)
        integer("slots_per_episode", 1, 10**9)
        choice("energy_model", ENERGY_MODELS)
        choice("latency_model", LATENCY_MODELS)
        choice("arbitration", ARBITRATIONS)
        choice("preset", tuple(WEIGHT_PRESETS))
        c.check("oracle_lp_first", isinstance(self.oracle_lp_first, bool), "True or False")
        for name in ("lam_d", "lam_e"):
            if getattr(self, name) is not None:
                real(name, 0.0, 1.0, lo_open=False)
        # names are checked against the registry of meqc_jax.dynamics when an env is built
        c.check("dynamics", isinstance(self.dynamics, tuple) and all(isinstance(n, str) and n for n in self.dynamics)
                and len(set(self.dynamics)) == len(self.dynamics), "a tuple of distinct dynamics names")
        real("p_task", 0.0, 1.0, lo_open=False)
        real("slot_s", 1e-6, 1e6, lo_open=False)
        if self.max_wait_s is not None:
            real("max_wait_s", 0.0, 1e8, lo_open=False)
        if self.drop_penalty_s is not None:
            real("drop_penalty_s", 0.0, 1e9, lo_open=False)
        if self.drop_penalty < self.max_wait:  # a drop must never look cheaper than the longest admitted wait
            _fail("drop_penalty_s", self.drop_penalty_s, f"a latency >= max_wait_s = {self.max_wait} s")
        real("battery_j", 1e-9, 1e9, lo_open=False)
        real("harvest_mean_j", 0.0, 1e9, lo_open=False)
        real("drift_rho", 0.0, 1.0, lo_open=False)
        if self.drift_rho >= 1.0:
            _fail("drift_rho", self.drift_rho, "a finite number in [0, 1)")
        real("drift_sigma", 0.0, 5.0, lo_open=False)
        choice("contention_uplink", CONTENTION_UPLINKS)

        # Supported ranges: generous around the paper's values, bounded so that float32 holds
        # every intermediate quantity (see _check_float32_headroom for the joint check).
        choices("f_local_choices_ghz", 1e-3, 1e3, lo_open=False)
        pair("p_tx_range_mw", 1e-6, 1e4, lo_open=False)
        choices("f_edge_choices_ghz", 1e-3, 1e4, lo_open=False)
        pair("phys_qubits_range", 0, 2**31 - 2, integral=True, lo_open=False)
        choices("k_choices", 0, MAX_CONCATENATION, integral=True, lo_open=False)
        real("t1_ms", 1e-9, 1e6, lo_open=False)
        pair("frames_range", 1, 10**7, integral=True, lo_open=False)
        pair("frame_pixels", 1, 10**4, integral=True, lo_open=False)
        integer("bytes_per_pixel", 1, 64)
        real("cycles_base", 1e-3, 1e3, lo_open=False)
        pair("cycles_exponent_range", 0, 40, integral=True, lo_open=False)
        # q = prims + 2 c_b + 5 must stay <= MAX_LOGICAL_QUBITS so that depth fits in int32.
        integer("c_b", 0, (MAX_LOGICAL_QUBITS - 6) // 2)
        pair("prims_range", 1, MAX_LOGICAL_QUBITS - 2 * self.c_b - 5, integral=True, lo_open=False)
        pair("gain_range", 1e-6, 1e6, lo_open=False)
        real("t1_jitter_sigma", 0.0, 2.0, lo_open=False)

        real("bandwidth_mhz", 1e-6, 1e6, lo_open=False)
        real("noise_power_dbm", -200.0, 100.0, lo_open=False)
        real("chip_coeff", 0.0, 1.0)
        real("quantum_unit_mb", 1e-6, 1e6, lo_open=False)

        real("qubit_freq_ghz", 1e-3, 1e3, lo_open=False)
        real("t_qb_k", 1e-4, 10.0, lo_open=False)
        for name in ("t_gen_k", "t_ext_k", "t_hemt_k", "t_para_k"):
            real(name, 1e-3, 1e4, lo_open=False)
        if self.t_gen_k <= self.t_qb_k:
            _fail("t_gen_k", self.t_gen_k, f"a temperature above t_qb_k={self.t_qb_k} K")
        real("attenuation_db", 0.0, 100.0, lo_open=False)
        integer("num_stages", 2, 64)
        for name in ("tau_1_ns", "tau_2_ns", "tau_m_ns"):
            real(name, 1e-3, 1e6, lo_open=False)
        real("eps_thr", 0.0, 1.0)
        real("q_gen_uw", 0.0, 1e6, lo_open=False)
        real("q_hemt_uw", 0.0, 1e6, lo_open=False)
        real("q_para_nw", 0.0, 1e9, lo_open=False)
        real("success_threshold", 0.0, 1.0)
        self._check_float32_headroom()

    def _check_float32_headroom(self):
        """Reject combinations whose worst-case slot cost would overflow float32 (limit 1e30).

        Every cost term is monotone in the range end points, so the bound is exact enough:
        the largest task on the slowest CPU and the weakest link, the largest circuit on the
        highest concatenation level at the longest lifetime a 6-sigma jitter reaches.
        """
        from meqc_jax import physics  # local import: keeps `import meqc_jax.config` free of jax

        si = self.si
        s_max = si.frames_range[1] * si.bytes_per_frame
        cycles = s_max * si.cycles_base * 2.0 ** si.cycles_exponent_range[1]
        d_cpu = cycles / min(min(si.f_local_choices), min(si.f_edge_choices))
        snr_min = si.p_tx_range[0] * si.gain_range[0] / si.noise_power
        # dynamics-spec section 8: up to U users share one server's uplink and CPU
        sharers = self.num_users if "contention" in self.dynamics else 1
        if sharers > 1 and self.contention_uplink == "interference":
            snr_min = si.p_tx_range[0] * si.gain_range[0] / (si.noise_power
                                                             + (sharers - 1) * si.p_tx_range[1] * si.gain_range[1])
        band_share = sharers if self.contention_uplink == "equal" else 1
        d_tx = 8.0 * s_max * band_share / (si.bandwidth * math.log1p(snr_min) / math.log(2.0))
        d_cpu = d_cpu * sharers
        k_max = max(si.k_choices)
        work = s_max / si.quantum_unit * (si.prims_range[1] + 2 * si.c_b + 5)
        n1, n2, nm = physics.gates_per_logical_qubit(k_max)
        d_q = work * (si.tau_1 * n1 + si.tau_2 * n2 + si.tau_m * nm)
        t1_hi = si.t1 * math.exp(6.0 * si.t1_jitter_sigma + (8.0 * self.drift_sigma if "drift" in self.dynamics else 0.0))
        p2 = physics.two_qubit_gate_power(t1_hi, si)
        power = p2 * (n1 + n2 + nm) + physics.qubit_static_power(si) * physics.physical_qubits_per_logical(k_max)
        e_q = (work if self.energy_model == "paper" else d_q) * power
        terms = {
            "CPU latency (frames_range, frame_pixels, cycles_*, f_*_choices_ghz)": 2 * d_cpu,
            "transmission (p_tx_range_mw, gain_range, noise_power_dbm, bandwidth_mhz)": d_tx * (1 + si.p_tx_range[1]),
            "CPU energy (chip_coeff)": 2 * si.chip_coeff * cycles,
            "QPU latency (k_choices, tau_*_ns, quantum_unit_mb)": d_q,
            "QPU energy (k_choices, t1_ms, heat loads, attenuation_db)": e_q,
        }
        worst = self.num_users * sum(terms.values())
        if not worst <= 1e30:
            culprit = max(terms, key=terms.get)
            raise ValueError(
                f"SystemConfig: worst-case slot cost {worst:.1e} exceeds the float32-safe limit 1e30; "
                f"largest term: {culprit}; narrow those ranges"
            )

    # ------------------------------------------------------------------ derived values
    @property
    def weights(self) -> tuple[float, float]:
        """(lam_d, lam_e): the preset's weights, each overridden by an explicit field."""
        ld, le = WEIGHT_PRESETS[self.preset]
        return (ld if self.lam_d is None else float(self.lam_d), le if self.lam_e is None else float(self.lam_e))

    @property
    def max_wait(self) -> float:
        """The longest queue wait a task is admitted with, s (dynamics-spec section 2; default 20 slots)."""
        return 20.0 * float(self.slot_s) if self.max_wait_s is None else float(self.max_wait_s)

    @property
    def drop_penalty(self) -> float:
        """Latency charged for a dropped task, s (dynamics-spec section 5; default `max_wait`)."""
        return self.max_wait if self.drop_penalty_s is None else float(self.drop_penalty_s)

    @functools.cached_property
    def si(self) -> SIParams:
        """All constants converted to SI once (cached on the frozen instance)."""
        ld, le = self.weights
        return SIParams(
            f_local_choices=tuple(f * 1e9 for f in self.f_local_choices_ghz),
            p_tx_range=(self.p_tx_range_mw[0] * 1e-3, self.p_tx_range_mw[1] * 1e-3),
            f_edge_choices=tuple(f * 1e9 for f in self.f_edge_choices_ghz),
            phys_qubits_range=self.phys_qubits_range,
            k_choices=self.k_choices,
            t1=self.t1_ms * 1e-3,
            frames_range=self.frames_range,
            bytes_per_frame=self.frame_pixels[0] * self.frame_pixels[1] * self.bytes_per_pixel,
            cycles_base=float(self.cycles_base),
            cycles_exponent_range=self.cycles_exponent_range,
            prims_range=self.prims_range,
            c_b=self.c_b,
            gain_range=(float(self.gain_range[0]), float(self.gain_range[1])),
            t1_jitter_sigma=float(self.t1_jitter_sigma),
            lam_d=ld,
            lam_e=le,
            bandwidth=self.bandwidth_mhz * 1e6,
            noise_power=10.0 ** ((self.noise_power_dbm - 30.0) / 10.0),
            chip_coeff=float(self.chip_coeff),
            quantum_unit=self.quantum_unit_mb * 1e6,
            omega=2.0 * math.pi * self.qubit_freq_ghz * 1e9,
            t_qb=float(self.t_qb_k),
            t_gen=float(self.t_gen_k),
            t_ext=float(self.t_ext_k),
            attenuation=10.0 ** (self.attenuation_db / 10.0),
            num_stages=self.num_stages,
            tau_1=self.tau_1_ns * 1e-9,
            tau_2=self.tau_2_ns * 1e-9,
            tau_m=self.tau_m_ns * 1e-9,
            eps_thr=float(self.eps_thr),
            q_gen=self.q_gen_uw * 1e-6,
            q_hemt=self.q_hemt_uw * 1e-6,
            t_hemt=float(self.t_hemt_k),
            q_para=self.q_para_nw * 1e-9,
            t_para=float(self.t_para_k),
            success_threshold=float(self.success_threshold),
        )

    def replace(self, **changes) -> SystemConfig:
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_preset(cls, preset: str, **kwargs) -> SystemConfig:
        """`SystemConfig(preset=preset, **kwargs)`, the spelling used by the CLI and the figures."""
        return cls(preset=preset, **kwargs)

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict of the fields (tuples become lists)."""
        return dataclass_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SystemConfig:
        """Inverse of `to_dict`; unknown keys raise a one-line `ValueError`."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"SystemConfig: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(names)}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**kw)
