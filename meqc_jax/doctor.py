"""What this installation runs on: `meqc info` (one screen, or `--json`).

    info = collect()            # a JSON-able dict: versions, backend, devices, processes, cache, extras
    print("\\n".join(render(info)))

Nothing here compiles or allocates on a device: it asks JAX for its backend and devices, the package
metadata for versions and for which optional extras (`pip install -e '.[cuda12]'`, ...) are present,
and the file system for the persistent compilation cache's folder and size.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import re
import sys

DISTRIBUTION = "meqc-jax"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "chex", "pennylane", "numpy", "highspy", "orbax-checkpoint")
# extras that install a plugin of another package: the distribution that says the extra is present
EXTRA_OF_DEPENDENCY = {("jax", "cuda12"): "jax-cuda12-plugin", ("jax", "tpu"): "libtpu"}
MEMORY_VARIABLES = ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_ALLOCATOR",
                    "JAX_PLATFORMS", "CUDA_VISIBLE_DEVICES", "XLA_FLAGS")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?[^;]*(?:;\s*(.*))?$")
_EXTRA_MARKER = re.compile(r"extra\s*==\s*['\"]([^'\"]+)['\"]")


def version(dist: str) -> str | None:
    """The installed version of distribution `dist`, None if it is not installed."""
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def extras(dist: str = DISTRIBUTION) -> dict[str, dict]:
    """Each optional extra of `dist` -> {"installed": every requirement present, "missing": [the absent]}; an
    extra of a dependency (jax[cuda12]) counts as present when its plugin is (`EXTRA_OF_DEPENDENCY`)."""
    out: dict[str, dict] = {}
    for req in md.requires(dist) or ():
        m = _REQUIREMENT.match(req)
        marker = _EXTRA_MARKER.search(req)
        if not m or not marker:
            continue
        name, dep_extras, extra = m.group(1), m.group(2), marker.group(1)
        needed = [name] + [EXTRA_OF_DEPENDENCY.get((name.lower(), e.strip()), f"{name}[{e.strip()}]")
                           for e in (dep_extras or "").split(",") if e.strip()]
        missing = [n for n in needed if version(n) is None]
        entry = out.setdefault(extra, {"installed": True, "missing": []})
        entry["missing"] += missing
        entry["installed"] = entry["installed"] and not missing
    return out


def folder_size(path: str) -> tuple[int, int]:
    """(files, bytes) below `path` (0, 0 if it does not exist)."""
    files = size = 0
    for root, _, names in os.walk(path):
        for n in names:
            try:
                size += os.path.getsize(os.path.join(root, n))
                files += 1
            except OSError:  # removed while we walked
                pass
    return files, size


def _device_row(d) -> dict:
    from meqc_jax.compilation import device_memory_bytes

    row = {"id": d.id, "platform": d.platform, "kind": d.device_kind, "process": d.process_index}
    try:
        row["memory_bytes"] = device_memory_bytes(d)
    except Exception:  # noqa: BLE001 -- a backend that reports nothing: the row says unknown
        row["memory_bytes"] = None
    return row


def collect() -> dict:
    """Everything `meqc info` shows, as a JSON-able dict."""
    import jax

    from meqc_jax.compilation import CACHE_ENV, default_cache_dir

    cache = jax.config.jax_compilation_cache_dir
    cache_source = "enabled in this process"
    if not cache:
        env = os.environ.get(CACHE_ENV)
        cache, cache_source = default_cache_dir(), "the CLI's default"
        if env in ("off", ""):
            cache, cache_source = None, f"${CACHE_ENV}=off"
        elif env:
            cache_source = f"${CACHE_ENV}"
    files, size = folder_size(cache) if cache else (0, 0)
    devices = jax.devices()
    return {
        "meqc_jax": version(DISTRIBUTION),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "versions": {p: version(p) for p in PACKAGES},
        "backend": jax.default_backend(),
        "devices": [_device_row(d) for d in devices],
        "device_count": len(devices),
        "local_device_count": jax.local_device_count(),
        "process_count": jax.process_count(),
        "process_index": jax.process_index(),
        # fit / evaluate / sweep split their batch axes over every visible device (meqc_jax.sharding)
        "sharding_devices": len(devices),
        "compile_cache": {"folder": cache, "source": cache_source, "files": files, "bytes": size},
        "environment": {k: os.environ[k] for k in MEMORY_VARIABLES if k in os.environ},
        "extras": extras(),
    }


def _bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def render(info: dict) -> list[str]:
    """`collect()`'s dict as the lines `meqc info` prints (one screen)."""
    kinds: dict[str, int] = {}
    for d in info["devices"]:
        kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
    lines = [f"meqc_jax {info['meqc_jax']} on Python {info['python']}, {info['platform']} ({info['cpu_count']} CPUs)",
             "versions: " + ", ".join(f"{p} {v or 'not installed'}" for p, v in info["versions"].items()),
             f"backend: {info['backend']}: {info['device_count']} device(s) ("
             + ", ".join(f"{n} x {k}" for k, n in kinds.items()) + f"); processes: {info['process_count']} "
             f"(this is {info['process_index']})" + ("" if info["process_count"] > 1 else
                                                      "; several hosts: meqc --distributed ...")]
    for d in info["devices"][:8]:
        lines.append(f"  device {d['id']}: {d['kind']} ({d['platform']}, process {d['process']}), memory "
                     f"{_bytes(d['memory_bytes'])}")
    if len(info["devices"]) > 8:
        lines.append(f"  ... and {len(info['devices']) - 8} more")
    lines.append(f"sharding: fit, evaluate and sweep split their batch axes over {info['sharding_devices']} device(s)")
    c = info["compile_cache"]
    lines.append("compile cache: off" if not c["folder"] else
                 f"compile cache: {c['folder']} ({c['source']}): {c['files']} files, {_bytes(c['bytes'])}")
    env = info["environment"]
    lines.append("environment: " + (", ".join(f"{k}={v}" for k, v in env.items()) if env else
                                    "no XLA / JAX memory or platform variable set (JAX preallocates 75 % of a GPU)"))
    lines.append("extras: " + ", ".join(f"{e} {'installed' if x['installed'] else 'not installed'}"
                                        for e, x in info["extras"].items()))
    if info["backend"] == "cpu":
        lines.append("no accelerator: JAX runs on the CPU (README, 'On a GPU or TPU', says how to install one)")
    return lines


__all__ = ["collect", "extras", "folder_size", "render", "version"]
