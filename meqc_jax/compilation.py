"""How many XLA programs a piece of work compiles, how long compiling takes, and JAX's persistent
compilation cache (compiled programs kept on disk, so a second process skips their compiles).

    with CompileCounter() as cc:
        reproduce_part(...)
    cc.programs, cc.seconds        # programs compiled, seconds spent tracing + lowering + compiling

JAX reports every compilation through `jax.monitoring` (one `backend_compile_duration` event per
XLA program, plus the tracing and lowering before it); one listener, registered once, adds them to
every counter that is open. Work that reuses a compiled program (the jit cache) adds nothing.
"""

from __future__ import annotations

import hashlib
import os
import platform
import threading

_TRACE = "/jax/core/compile/jaxpr_trace_duration"
_LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_BACKEND = "/jax/core/compile/backend_compile_duration"

_open: list[CompileCounter] = []
_lock = threading.Lock()
_registered = False


def _listen(event: str, duration: float, **_) -> None:
    if event not in (_TRACE, _LOWER, _BACKEND):
        return
    with _lock:
        for c in _open:
            c.seconds += duration
            if event == _BACKEND:
                c.programs += 1


class CompileCounter:
    """A context manager counting the XLA programs compiled inside it and the seconds spent on them."""

    def __init__(self):
        self.programs = 0
        self.seconds = 0.0

    def __enter__(self) -> CompileCounter:
        global _registered
        import jax

        with _lock:
            if not _registered:
                jax.monitoring.register_event_duration_secs_listener(_listen)
                _registered = True
            _open.append(self)
        return self

    def __exit__(self, *exc) -> None:
        with _lock:
            _open.remove(self)

    def as_dict(self) -> dict:
        return {"programs": self.programs, "compile_s": self.seconds}


# ---------------------------------------------------------------------------- the persistent cache
CACHE_ENV = "MEQC_COMPILE_CACHE"  # a folder, or "off"


def machine_key() -> str:
    """Architecture and a hash of the CPU's feature flags and the jax version: programs compiled for
    one processor are only ever loaded on one with the same features (a shared home folder on a
    cluster of mixed machines keeps one cache per kind)."""
    import jax

    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = platform.processor()
    digest = hashlib.sha256(f"{flags}|{jax.__version__}".encode()).hexdigest()[:12]
    return f"{platform.machine() or 'unknown'}-{digest}"


def default_cache_dir() -> str:
    """`$MEQC_COMPILE_CACHE`, else `~/.cache/meqc_jax/xla/<machine_key>` (under `$XDG_CACHE_HOME` if set)."""
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "meqc_jax", "xla", machine_key())


def enable_persistent_cache(path: str | None = None) -> str | None:
    """Keep compiled programs in `path` (default `default_cache_dir()`; "off" disables); returns the
    folder used, or None. Programs that compile in under half a second are not worth a file."""
    import jax

    path = default_cache_dir() if path is None else path
    if path in ("off", ""):
        return None
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


# ---------------------------------------------------------------------------- will it fit?
class ProgramTooLarge(MemoryError):
    """A compiled program's memory plan exceeds what its device can hold (raised before it runs)."""


def device_memory_bytes(device=None) -> int | None:
    """Bytes a program may use on `device` (default: the first): the allocator's limit on an
    accelerator, the memory the OS reports available (MemAvailable) on a CPU; None if unknown."""
    import jax

    device = jax.devices()[0] if device is None else device
    try:
        stats = device.memory_stats()
    except Exception:  # not every backend reports it
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    if device.platform == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return None


def memory_plan_bytes(compiled) -> int | None:
    """What XLA's memory plan says the program holds at its peak: arguments + outputs + temporaries,
    less what outputs alias (donated arguments); None where the backend does not report it."""
    try:
        ma = compiled.memory_analysis()
        return int(ma.argument_size_in_bytes + ma.output_size_in_bytes + ma.temp_size_in_bytes
                   - ma.alias_size_in_bytes)
    except Exception:
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_fits(compiled, what: str, lower: str, available: int | None = None) -> int | None:
    """Refuse (`ProgramTooLarge`, one line) a compiled program whose memory plan exceeds what one
    device holds (`available` overrides `device_memory_bytes()`; a program partitioned over several
    devices reports its per-device plan). `what` names the run and its sizes, `lower` the settings
    to reduce. Returns the plan's bytes (None where the backend does not report one)."""
    need = memory_plan_bytes(compiled)
    have = device_memory_bytes() if available is None else available
    if need is not None and have is not None and need > have:
        raise ProgramTooLarge(f"{what} needs {_gib(need)} of memory (XLA's plan of the compiled program) but the "
                              f"device can hold {_gib(have)}: lower {lower}")
    return need


__all__ = ["CACHE_ENV", "CompileCounter", "ProgramTooLarge", "check_fits", "default_cache_dir",
           "device_memory_bytes", "enable_persistent_cache", "machine_key", "memory_plan_bytes"]
