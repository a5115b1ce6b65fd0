"""How many XLA programs a piece of work compiles, how long compiling takes, and JAX's persistent
compilation cache (compiled programs kept on disk, so a second process skips their compiles).

    with CompileCounter() as cc:
        reproduce_part(...)
    cc.programs, cc.seconds        # programs compiled, seconds spent tracing + lowering + compiling

JAX reports every compilation through `jax.monitoring` (one `backend_compile_duration` event per
XLA program, plus the tracing and lowering before it); one listener, registered once, adds them to
every counter that is open. Work that reuses a compiled program (the jit cache) adds nothing.

`ProgramCache` is the one in-process cache of built programs (jitted functions, compiled executables, learners
that hold them): keyed, bounded, counted.
"""

from __future__ import annotations

import hashlib
import os
import platform
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

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
    accelerator; on a CPU the memory the OS reports available (MemAvailable), capped by what this
    process may still take under its limits (a cgroup's memory.max, `ulimit -v`); None if unknown."""
    import jax

    device = jax.devices()[0] if device is None else device
    try:
        stats = device.memory_stats()
    except Exception:  # not every backend reports it
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    if device.platform == "cpu":
        have = None
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        have = int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
        if have is None:
            try:
                have = int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
            except (ValueError, OSError, AttributeError):
                pass
        caps = [c for c in (cgroup_room(), _address_space_room()) if c is not None]
        return min([have, *caps]) if have is not None else (min(caps) if caps else None)
    return None


def cgroup_room(self_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> int | None:
    """What this process's cgroup (v2) may still take: memory.max less its working set (memory.current without
    the reclaimable inactive file cache of memory.stat, as MemAvailable counts it); None without a limit."""
    try:
        with open(self_cgroup) as f:
            rel = next((line.split(":", 2)[2].strip() for line in f if line.startswith("0::")), None)
        if rel is None:
            return None
        base = os.path.join(root, rel.lstrip("/"))
        with open(os.path.join(base, "memory.max")) as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open(os.path.join(base, "memory.current")) as f:
            used = int(f.read().strip())
        try:  # page cache the kernel drops under pressure is not taken (a busy disk would otherwise look like use)
            with open(os.path.join(base, "memory.stat")) as f:
                used -= next((int(line.split()[1]) for line in f if line.startswith("inactive_file ")), 0)
        except (OSError, ValueError, IndexError):
            pass
        return max(0, int(limit) - max(used, 0))
    except (OSError, ValueError, IndexError):
        return None


def _address_space_room() -> int | None:
    """What `ulimit -v` (RLIMIT_AS) leaves of this process's address space: the limit less VmSize; None unlimited."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY or soft < 0:
            return None
        with open("/proc/self/status") as f:
            size = next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:")), 0)
        return max(0, int(soft) - size)
    except (ImportError, OSError, ValueError):
        return None


def bytes_per_device(tree) -> int:
    """Bytes one device holds of the arrays (or `jax.ShapeDtypeStruct`s) in `tree`: each leaf's shard on
    a device where it is split over a mesh (`sharding.shard_shape`), the whole leaf otherwise."""
    import jax
    import numpy as np

    total = 0
    for leaf in jax.tree.leaves(tree):
        shape = tuple(getattr(leaf, "shape", np.shape(leaf)))
        sh = getattr(leaf, "sharding", None)
        if sh is not None:
            try:
                shape = tuple(sh.shard_shape(shape))
            except Exception:  # noqa: BLE001 -- a sharding that cannot say: count the whole leaf
                pass
        dtype = getattr(leaf, "dtype", None)
        try:
            item = np.dtype(dtype).itemsize
        except TypeError:  # an extended dtype (typed PRNG keys): its own size, else 8 bytes
            item = int(getattr(dtype, "itemsize", 8) or 8)
        total += int(np.prod(shape, dtype=np.int64)) * item
    return total


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


def refuse_if_over(need: int | None, what: str, lower: str, basis: str, available: int | None = None,
                   at_least: bool = False) -> None:
    """Raise `ProgramTooLarge` (one line) when `need` bytes exceed what one device holds (`available`
    overrides `device_memory_bytes()`). `basis` says where `need` comes from; `at_least`: it is a
    lower bound found from shapes alone, before anything was built or compiled."""
    have = device_memory_bytes() if available is None else available
    if need is not None and have is not None and need > have:
        raise ProgramTooLarge(f"{what} needs {'at least ' if at_least else ''}{_gib(need)} of memory ({basis}) "
                              f"but the device can hold {_gib(have)}: lower {lower}")


def check_fits(compiled, what: str, lower: str, available: int | None = None) -> int | None:
    """Refuse (`ProgramTooLarge`, one line) a compiled program whose memory plan exceeds what one
    device holds (`available` overrides `device_memory_bytes()`; a program partitioned over several
    devices reports its per-device plan). `what` names the run and its sizes, `lower` the settings
    to reduce. Returns the plan's bytes (None where the backend does not report one)."""
    need = memory_plan_bytes(compiled)
    refuse_if_over(need, what, lower, "XLA's plan of the compiled program", available)
    return need


class ProgramCache:
    """Programs built once per key and reused: `cache.get(key, build)` returns the program built for `key`, calling
    `build()` only the first time. Bounded (at most `maxsize` programs, the least recently used evicted first;
    None: unbounded) and counted (`hits`, `builds`, `evictions`), so a test or a benchmark can say how many programs
    a piece of work built. A `build` that raises keeps nothing (a program refused as too large is checked again on
    the next call)."""

    def __init__(self, name: str, maxsize: int | None = None):
        self.name, self.maxsize = name, maxsize
        self._items: OrderedDict = OrderedDict()
        self.hits = self.builds = self.evictions = 0

    def get(self, key: Hashable, build: Callable[[], Any]):
        if key in self._items:
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key]
        value = build()
        self.builds += 1
        self._items[key] = value
        if self.maxsize is not None and len(self._items) > self.maxsize:
            self._items.popitem(last=False)
            self.evictions += 1
        return value

    def __contains__(self, key) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def values(self) -> list:
        return list(self._items.values())

    def clear(self) -> None:
        self._items.clear()

    def stats(self) -> dict:
        return {"name": self.name, "size": len(self), "maxsize": self.maxsize, "hits": self.hits,
                "builds": self.builds, "evictions": self.evictions}

    def __repr__(self) -> str:
        return f"ProgramCache({self.name!r}, {len(self)}/{self.maxsize or 'unbounded'}, {self.builds} built)"


__all__ = ["CACHE_ENV", "CompileCounter", "ProgramCache", "ProgramTooLarge", "bytes_per_device", "cgroup_room", "check_fits",
           "default_cache_dir",
           "device_memory_bytes", "enable_persistent_cache", "machine_key", "memory_plan_bytes", "refuse_if_over"]
