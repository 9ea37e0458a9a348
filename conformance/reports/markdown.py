"""The compliance report as Markdown, for reviewers reading it on a code forge."""

from __future__ import annotations

import re
from pathlib import Path

from jinja2 import Environment, FileSystemLoader

from ..results import RunResults
from .view import build_view

TEMPLATES = Path(__file__).parent / "templates"


def inline(text) -> str:
    """Text safe on one Markdown line: no line breaks, no accidental emphasis or HTML."""
    text = " ".join(str(text).split())
    return re.sub(r"([\\`*_<>\[\]|])", r"\\\1", text)


def cell(text) -> str:
    """Text safe inside a table cell."""
    return inline(text)


def code(text) -> str:
    """Inline code that survives backticks and pipes in the value (tables split on ``|``)."""
    text = " ".join(str(text).split())
    if not text:
        return ""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    # A pipe ends a table cell even inside code spans on most forges; escape it.
    return f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}"


def fenced(text, lang: str = "", indent: int = 0) -> str:
    """A fenced code block longer than any backtick run in the text."""
    text = str(text).rstrip("\n")
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (longest + 1)
    pad = " " * indent
    body = "\n".join(pad + line for line in text.splitlines())
    return f"{pad}{fence}{lang}\n{body}\n{pad}{fence}"


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=False,
                      keep_trailing_newline=True)
    env.filters.update(inline=inline, cell=cell, code=code, fenced=fenced)
    return env


def render_markdown(results: RunResults, catalog=None, strict: bool = False) -> str:
    view = build_view(results, catalog, strict)
    text = _environment().get_template("report.md.j2").render(**vars(view))
    return squeeze_blank_lines(text)


def squeeze_blank_lines(text: str) -> str:
    """Fold runs of blank lines the template leaves, but never inside code blocks."""
    out: list[str] = []
    fence = ""
    for line in text.split("\n"):
        stripped = line.strip()
        if fence:
            if stripped == fence:
                fence = ""
        elif stripped.startswith("```"):
            fence = stripped[:len(stripped) - len(stripped.lstrip("`"))]
        elif not stripped and out and not out[-1].strip():
            continue
        out.append(line)
    return "\n".join(out)


def write_markdown(results: RunResults, path, catalog=None, strict: bool = False) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_markdown(results, catalog, strict), encoding="utf-8")
    tmp.replace(path)
    return path
