"""The conformance checks, grouped like the spec's chapters.

Each ``test_*`` function names the catalog clauses it judges with
``@pytest.mark.clause(...)`` and takes the ``dut`` and ``judge`` fixtures from the
plugin.  ``clauses_checked()`` tells the catalog which clauses have checks without
running pytest.
"""

from __future__ import annotations

import importlib
import pkgutil


def clauses_checked() -> dict[str, list[str]]:
    """Clause id -> node ids (``conformance/checks/<module>.py::<function>``) of its checks."""
    found: dict[str, list[str]] = {}
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("test_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name, fn in vars(module).items():
            if not name.startswith("test_") or not callable(fn):
                continue
            for mark in getattr(fn, "pytestmark", []):
                if mark.name == "clause":
                    for clause in mark.args:
                        found.setdefault(clause, []).append(
                            f"conformance/checks/{info.name}.py::{name}")
    return found
