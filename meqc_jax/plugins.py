"""A user's own code by name: `module.path:attribute` specs and installed packages' entry points.

    factory = load("my_pkg.my_mod:make_policy", "--policies", "a policy factory (SystemConfig) -> Policy")
    found = entry_points("meqc_jax.policies")     # {name: EntryPoint} of every installed package

A spec names an importable module and an attribute in it (dots reach nested attributes); every failure (no
such module, no such attribute) is one `ValueError` line naming the spec, what went wrong and what was
expected. Entry points are the standard packaging ones: a package declares, in its pyproject.toml,

    [project.entry-points."meqc_jax.policies"]
    my_rule = "my_pkg.rules:make_my_rule"

and after `pip install` the name `my_rule` works wherever a registered one does. A module in the folder a
command runs from imports too (that folder is appended to `sys.path`, as `python -m` would put it first).
Nothing here imports jax.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import re
import sys

SPEC = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def is_spec(text: str) -> bool:
    """Whether `text` has the form `module.path:attribute`."""
    return bool(SPEC.match(text))


def load(spec: str, what: str, expected: str):
    """The object `spec` (`module.path:attribute`) names; `what` (the flag or field) and `expected` (what the
    object must be) word the one-line ValueError raised when it cannot be found."""
    if not is_spec(spec):
        raise ValueError(f"{what}={spec!r} is invalid: allowed a registered name or module.path:attribute "
                         f"naming {expected}")
    module, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        # as `python -m` does: a module in the folder the command runs from (`meqc evaluate --policies mine:make`
        # next to mine.py) imports; appended, so it never shadows an installed package
        sys.path.append(os.getcwd())
    try:
        obj = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 -- ImportError, or whatever the user's module raised while importing
        raise ValueError(f"{what}={spec!r}: module {module!r} cannot be imported ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}); expected {expected}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{what}={spec!r}: module {module!r} has no attribute {attr!r}; expected {expected}")
        obj = getattr(obj, part)
    return obj


def entry_points(group: str) -> dict:
    """{name: EntryPoint} of the installed packages' entry points in `group` (the first of a name wins)."""
    found: dict = {}
    for ep in md.entry_points(group=group):
        found.setdefault(ep.name, ep)
    return found


def load_entry_point(ep, what: str, expected: str):
    """`ep.load()`, its failure one ValueError line naming the entry point and its package."""
    try:
        return ep.load()
    except Exception as e:  # noqa: BLE001
        dist = getattr(getattr(ep, "dist", None), "name", "an installed package")
        raise ValueError(f"{what}={ep.name!r}: the entry point {ep.value!r} of {dist} cannot be loaded "
                         f"({type(e).__name__}: {e}); expected {expected}") from None


__all__ = ["entry_points", "is_spec", "load", "load_entry_point"]
