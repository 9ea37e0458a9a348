"""The compliance report as one self-contained HTML file (inline CSS, no scripts)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from ..results import RunResults
from .view import build_view

TEMPLATES = Path(__file__).parent / "templates"


def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES),
                       autoescape=select_autoescape(["html", "html.j2"]),
                       trim_blocks=False, lstrip_blocks=False, keep_trailing_newline=True)


def render_html(results: RunResults, catalog=None, strict: bool = False) -> str:
    view = build_view(results, catalog, strict)
    return _environment().get_template("report.html.j2").render(**vars(view))


def write_html(results: RunResults, path, catalog=None, strict: bool = False) -> Path:
    """Write the report; artifact links are relative, so put it in the run's output dir."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_html(results, catalog, strict), encoding="utf-8")
    tmp.replace(path)
    return path
