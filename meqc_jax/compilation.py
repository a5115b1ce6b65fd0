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


__all__ = ["CACHE_ENV", "CompileCounter", "default_cache_dir", "enable_persistent_cache", "machine_key"]
