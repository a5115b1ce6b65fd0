"""Atomic file output: a crash mid-write never leaves a truncated result behind.

In a multi-process (multi-host) JAX run every process computes the same results; only process 0
writes them, so processes sharing a file system never race on a file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile


def atomic_write_text(path: str, text: str) -> None:
    """Write `text` to `path` via a temporary file in the same folder and an atomic rename."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and an atomic rename."""
    atomic_write_with(path, lambda f: f.write(data))


def atomic_write_with(path: str, write, suffix: str = ".tmp") -> None:
    """Call `write(binary file)` on a temporary file beside `path`, then rename it into place atomically
    (only in the writing process, see `is_writer`). Used for raw bytes and for figures."""
    if not is_writer():
        return
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path), suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def is_writer() -> bool:
    """False in every process of a multi-process JAX run but the first."""
    import sys

    jax = sys.modules.get("jax")  # never import (and initialize) jax just to write a file
    return jax is None or jax.process_count() == 1 or jax.process_index() == 0


def _publish(path: str) -> None:
    """mkstemp creates files readable by their owner only; give results the usual permissions."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_write_json(path: str, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_csv(path: str, header: list[str], rows) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
