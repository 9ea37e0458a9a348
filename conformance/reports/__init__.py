"""Reports: everything a run leaves for CI gates, nightly jobs and reviewers.

All of it is computed from ``RunResults`` alone (``results.json``); nothing here runs a
check or touches a guest, so ``virtio-conformance report DIR`` can re-render any run.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError
from ..results import RunResults
from .compare import Comparison, compare, exit_code, render_text
from .gate import exit_code_for_run, gate_sentence, summary_table
from .html import write_html
from .junit import write_junit
from .markdown import write_markdown

OUTPUT_FILES = ("results.json", "junit.xml", "report.html", "report.md")

__all__ = [
    "Comparison", "compare", "exit_code", "render_text",
    "exit_code_for_run", "gate_sentence", "summary_table",
    "read_results", "write_all", "write_html", "write_junit", "write_markdown", "OUTPUT_FILES",
]


def write_all(results: RunResults, out_dir, catalog=None, strict: bool = False) -> dict[str, Path]:
    """Write results.json, junit.xml, report.html and report.md into ``out_dir``.

    Artifact paths in the results are relative to ``out_dir``, which is why the reports
    live there too.  Returns the written paths by file name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in OUTPUT_FILES}
    results.write(paths["results.json"])
    write_junit(results, paths["junit.xml"])
    write_html(results, paths["report.html"], catalog, strict)
    write_markdown(results, paths["report.md"], catalog, strict)
    return paths


def read_results(path) -> RunResults:
    """A run's results from its directory or its ``results.json`` (for ``report`` and
    ``compare``); anything unreadable is a ConfigError that says what to do."""
    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file} does not exist; give a run directory written by "
                          "`virtio-conformance run` or its results.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {file}: {e}") from None
    try:
        return RunResults.from_json(data)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ConfigError(f"{file} is not a results.json this version understands: {e}") from None
