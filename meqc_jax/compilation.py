"""How many XLA programs a piece of work compiles, and how long compiling takes.

    with CompileCounter() as cc:
        reproduce_part(...)
    cc.programs, cc.seconds        # programs compiled, seconds spent tracing + lowering + compiling

JAX reports every compilation through `jax.monitoring` (one `backend_compile_duration` event per
XLA program, plus the tracing and lowering before it); one listener, registered once, adds them to
every counter that is open. Work that reuses a compiled program (the jit cache) adds nothing.
"""

from __future__ import annotations

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


__all__ = ["CompileCounter"]
