"""Read a virtio spec checkout (its LaTeX sources) and list every normative sentence.

The catalog is generated, not typed: this module walks the spec the way LaTeX would
(``\\input`` expanded in order, sectioning counters stepped at each heading) so every
entry carries the section number a reader sees in the published PDF.  It yields a
*skeleton* per sentence -- where it stands, its level, who it binds, and a hash of its
normalized text -- and never the text itself: the catalog carries our own paraphrases,
kept in ``annotations.json`` and merged in here, so regenerating never loses them.

Run ``python -m conformance.catalog.specparse --spec DIR --write`` to regenerate
``clauses.json`` after a spec update; ``--check`` only says whether it would change.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .vocab import (
    ACTORS,
    ANNOTATIONS_FILE,
    CLAUSES_FILE,
    DEVICE_CHAPTERS,
    DEVICE_IDS,
    LEVELS,
    METHODS,
    PROPOSALS_FILE,
    SECTION_COMMANDS,
    STATUSES,
    TESTABLE,
    TRANSPORT_NAMES,
)

__all__ = ["ACTORS", "LEVELS", "METHODS", "STATUSES", "TESTABLE", "TRANSPORT_NAMES",
           "merge", "parse_spec", "read_revision", "sentence_hash", "split_sentences"]

# Topics of the basic-facilities chapter, keyed by its \section titles.  A title not
# listed here still gets an area, slugged from its title.
BASIC_TOPICS: dict[str, str] = {
    "Device Status Field": "device-status",
    "Feature Bits": "feature-bits",
    "Notifications": "notifications",
    "Device Reset": "device-reset",
    "Device Configuration Space": "config-space",
    "Virtqueues": "virtqueues",
    "Split Virtqueues": "split-virtqueues",
    "Packed Virtqueues": "packed-virtqueues",
    "Driver Notifications": "notifications",
    "Shared Memory Regions": "shared-memory",
    "Exporting Objects": "exporting-objects",
    "Device groups": "device-groups",
    "Administration Virtqueues": "admin-virtqueues",
    "Device parts": "device-groups",
}

IN_SCOPE_CHAPTERS = {
    "Basic Facilities of a Virtio Device": "basic",
    "General Initialization And Device Operation": "general",
    "Virtio Transport Options": "transport",
    "Device Types": "device",
    "Reserved Feature Bits": "reserved",
}
TRANSPORT_SECTIONS = {"Virtio Over PCI Bus": "transport/pci", "Virtio Over MMIO": "transport/mmio"}


# --------------------------------------------------------------------------- LaTeX reading

def strip_comments(text: str) -> str:
    """Drop ``%`` comments (an escaped ``\\%`` stays)."""
    return re.sub(r"(?<!\\)%[^\n]*", "", text)


_INPUT_RE = re.compile(r"\\(?:input|include)\s*\{([^}]*)\}")


def expand_inputs(spec_dir: Path, name: str, _depth: int = 0) -> str:
    """The file's text with every ``\\input``/``\\include`` replaced by the file it names."""
    path = spec_dir / name
    if not path.exists() and not name.endswith(".tex"):
        path = spec_dir / f"{name}.tex"
    if _depth > 20:
        raise ValueError(f"\\input nesting too deep at {path}")
    text = strip_comments(path.read_text(encoding="utf-8", errors="replace"))

    def replace(match: re.Match) -> str:
        target = match.group(1).strip()
        candidate = spec_dir / target
        if not candidate.exists() and not (spec_dir / f"{target}.tex").exists():
            return ""  # a missing optional input is what LaTeX would warn about, not fail on
        return "\n" + expand_inputs(spec_dir, target, _depth + 1) + "\n"

    return _INPUT_RE.sub(replace, text)


def read_braced(text: str, pos: int) -> tuple[str, int]:
    """Read one ``{...}`` group starting at or after ``pos`` (skipping whitespace).

    Returns (content, index just past the closing brace).
    """
    while pos < len(text) and text[pos] in " \t\n":
        pos += 1
    if pos >= len(text) or text[pos] != "{":
        raise ValueError(f"expected '{{' at offset {pos}")
    depth, i = 0, pos
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2  # an escaped character (\{, \}, \\) never opens or closes a group
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[pos + 1:i], i + 1
        i += 1
    raise ValueError(f"unbalanced braces from offset {pos}")


def remove_command_with_args(text: str, command: str, nargs: int) -> str:
    """Delete every ``\\command{..}..{..}`` (nargs braced arguments, balanced)."""
    out, pos = [], 0
    pattern = re.compile(r"\\" + command + r"\b\*?(\[[^\]]*\])?")
    while True:
        m = pattern.search(text, pos)
        if not m:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:m.start()])
        end = m.end()
        try:
            for _ in range(nargs):
                _, end = read_braced(text, end)
        except ValueError:
            end = m.end()
        pos = end


def _digest(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:12]


def _environment_re(names: str) -> re.Pattern:
    return re.compile(r"\\begin\{(" + names + r")\}.*?\\end\{\1\}", re.S)


_NOTE_RE = _environment_re(r"note")
_LISTING_RE = _environment_re(r"lstlisting|verbatim")
_TABLE_RE = _environment_re(r"tabular|tabularx|longtable|table")


def prepare_body(raw: str) -> str:
    """Body LaTeX reduced to what can carry a requirement.

    Notes and footnotes are informative and go.  Code listings and tables stay as a
    placeholder holding a digest of their content, so a sentence that leads into a
    listing ("... MUST satisfy:") changes hash when the listing changes.
    """
    text = _NOTE_RE.sub(" ", raw)
    text = remove_command_with_args(text, "newcommand", 2)
    text = remove_command_with_args(text, "footnote", 1)
    text = _LISTING_RE.sub(lambda m: f" [listing {_digest(m.group(0))}] ", text)
    text = re.sub(r"\\lstinputlisting\s*\{([^}]*)\}", r" [listing \1] ", text)
    text = _TABLE_RE.sub(lambda m: f" [table {_digest(m.group(0))}] ", text)
    return text


# Formatting commands whose argument is text to keep.
_KEEP_ARG = ("field", "emph", "em", "textbf", "textit", "texttt", "bf", "it", "underline",
             "url", "mbox", "text", "textsc", "code")
_DROP_ARG = ("ref", "nameref", "label", "cite", "pageref", "index", "vspace", "hspace")


def latex_to_plain(text: str) -> str:
    """LaTeX markup stripped, whitespace folded; case kept (keywords are upper case)."""
    t = text
    t = re.sub(r"\\item\s*\[([^\]]*)\]", r" \1 ", t)
    t = re.sub(r"\\item\b", " ", t)
    t = re.sub(r"\\(?:begin|end)\s*\{[^}]*\}(\{[^}]*\})?", " ", t)
    for cmd in _DROP_ARG:
        t = re.sub(r"\\" + cmd + r"\*?\s*(\[[^\]]*\])?\s*\{[^{}]*\}", "", t)
    t = re.sub(r"\\hyperref\s*\[[^\]]*\]\s*\{([^{}]*)\}", r"\1", t)
    t = re.sub(r"\\href\s*\{[^{}]*\}\s*\{([^{}]*)\}", r"\1", t)
    for _ in range(3):  # nested formatting, e.g. \field{\em x}
        for cmd in _KEEP_ARG:
            t = re.sub(r"\\" + cmd + r"\s*\{([^{}]*)\}", r"\1", t)
    t = t.replace("``", '"').replace("''", '"')
    t = re.sub(r"\\([#_&%$])", r"\1", t)
    t = t.replace("\\ldots", "...").replace("\\dots", "...")
    t = t.replace("\\\\", " ").replace("~", " ").replace("$", "")
    t = re.sub(r"\\[a-zA-Z@]+\*?", " ", t)  # any other command name
    t = t.replace("{", "").replace("}", "")
    t = re.sub(r"\(\s*(?:see|See)\s*(?:section|p\.)?\s*\)", " ", t)  # a bare "(see \ref)"
    t = re.sub(r"\s+", " ", t).strip()
    t = re.sub(r"\s+([.,;:])", r"\1", t)
    t = re.sub(r"(?<!\.)\.\.(?!\.)", ".", t)  # "done (see \ref{x})." leaves a doubled stop
    return t


def normalize(sentence_plain: str) -> str:
    """The form hashed for drift detection: markup already gone, whitespace folded, lower."""
    return re.sub(r"\s+", " ", sentence_plain).strip().lower()


def sentence_hash(sentence_plain: str) -> str:
    return hashlib.sha256(normalize(sentence_plain).encode()).hexdigest()


# Never end a sentence after these (lower-cased, with their dot).
_NO_SPLIT_AFTER = {"e.g.", "i.e.", "eg.", "ie.", "cf.", "vs.", "p.", "fig.", "no.", "approx.",
                   "resp.", "sec."}
_SPLIT_RE = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def split_sentences(plain: str) -> list[str]:
    """Split one paragraph of plain text into sentences."""
    pieces, start = [], 0
    for m in _SPLIT_RE.finditer(plain):
        before = plain[start:m.start()]
        last_word = before.split()[-1].lower().lstrip("([\"'") if before.split() else ""
        following = plain[m.end():m.end() + 1]
        if last_word in _NO_SPLIT_AFTER or re.fullmatch(r"[a-z]\.", last_word):
            continue
        if last_word == "etc." and not following.isupper():
            continue
        pieces.append(plain[start:m.end()].strip())
        start = m.end()
    pieces.append(plain[start:].strip())
    return [p for p in pieces if p]


_LIST_TOKEN_RE = re.compile(r"\\(begin|end)\s*\{(itemize|enumerate|description)\}")


def _join_lists(body: str) -> str:
    """Keep a list in the paragraph that introduces it.

    Blank lines between items, and a blank line between a lead-in ending in ":" and its
    list, would otherwise cut one requirement ("... SHOULD take these steps:" + steps)
    into pieces and hide the steps from the hash.
    """
    out, pos, depth = [], 0, 0
    for m in _LIST_TOKEN_RE.finditer(body):
        chunk = body[pos:m.start()]
        if depth > 0:
            chunk = re.sub(r"\n\s*\n", "\n", chunk)
        elif m.group(1) == "begin":
            chunk = re.sub(r":\s*\n\s*\n\s*$", ":\n", chunk)
        out.append(chunk + m.group(0))
        depth = depth + 1 if m.group(1) == "begin" else max(depth - 1, 0)
        pos = m.end()
    out.append(body[pos:])
    return "".join(out)


def paragraphs(body: str) -> list[str]:
    """Blank-line separated paragraphs of a prepared body, as plain text."""
    chunks = re.split(r"\n\s*\n", _join_lists(body))
    return [p for p in (latex_to_plain(chunk) for chunk in chunks) if p]


_KEYWORD_RE = re.compile(
    r"\b(MUST\s+NOT|MUST|SHALL\s+NOT|SHALL|SHOULD\s+NOT|SHOULD|NOT\s+RECOMMENDED|RECOMMENDED"
    r"|REQUIRED|MAY|OPTIONAL)\b")
_KEYWORD_LEVEL = {
    "MUST NOT": "MUST NOT", "MUST": "MUST", "SHALL NOT": "MUST NOT", "SHALL": "MUST",
    "REQUIRED": "MUST", "SHOULD NOT": "SHOULD NOT", "SHOULD": "SHOULD",
    "NOT RECOMMENDED": "SHOULD NOT", "RECOMMENDED": "SHOULD", "MAY": "MAY", "OPTIONAL": "MAY",
}


def keyword_level(sentence: str) -> str | None:
    """The strongest RFC 2119 keyword in the sentence, as one of ``LEVELS``.

    Within a strength, a plain MUST/SHOULD wins over its negation: a sentence that says
    "MUST ignore and MUST NOT accept" is recorded as MUST.
    """
    found = {_KEYWORD_LEVEL[re.sub(r"\s+", " ", k)] for k in _KEYWORD_RE.findall(sentence)}
    for level in ("MUST", "MUST NOT", "SHOULD", "SHOULD NOT", "MAY"):
        if level in found:
            return level
    return None


def slugify(text: str) -> str:
    text = latex_to_plain(text).lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


# --------------------------------------------------------------------------- structure

@dataclass
class Heading:
    level: int  # index into SECTION_COMMANDS
    numbered: bool
    title: str  # plain text
    label: str  # the sec:/devicenormative:/drivernormative: label, "" if none
    kind: str  # "plain" | "device" | "driver"
    start: int  # where the heading command starts
    body_start: int
    number: str = ""
    path: list[str] = field(default_factory=list)  # titles of enclosing headings, outermost first
    body: str = ""


_HEADING_RE = re.compile(
    r"\\(?P<norm>devicenormative|drivernormative)\s*\{\s*\\(?P<nlevel>[a-z]+)\s*\}"
    r"|\\conformance\s*\{\s*\\(?P<clevel>[a-z]+)\s*\}"
    r"|\\(?P<cmd>chapter|section|subsection|subsubsection|paragraph|subparagraph)\b(?P<star>\*)?"
    r"|\\(?P<appendix>appendix)\b")
_LABEL_RE = re.compile(r"\s*\\label\s*\{")


def _read_labels(text: str, pos: int) -> tuple[list[str], int]:
    labels: list[str] = []
    while True:
        m = _LABEL_RE.match(text, pos)
        if not m:
            return labels, pos
        content, pos = read_braced(text, m.end() - 1)
        labels.append(" ".join(content.split()))


def scan_headings(text: str) -> list[Heading]:
    """Every sectioning heading, numbered as LaTeX (report class, secnumdepth 5) would."""
    headings: list[Heading] = []
    counters = [0] * len(SECTION_COMMANDS)
    appendix = False
    for m in _HEADING_RE.finditer(text):
        if m.group("appendix"):
            appendix, counters[0] = True, 0
            continue
        try:
            if m.group("norm"):
                level_name = m.group("nlevel")
                title, pos = read_braced(text, m.end())
                label, pos = read_braced(text, pos)
                kind = "device" if m.group("norm") == "devicenormative" else "driver"
                title = f"{kind.capitalize()} Requirements: {title}"
                labels = [f"{m.group('norm')}:{' '.join(label.split())}"]
                _, pos = _read_labels(text, pos)  # step over any extra labels
                numbered = True
            elif m.group("clevel"):
                level_name = m.group("clevel")
                title, pos = read_braced(text, m.end())
                labels, pos = _read_labels(text, pos)
                kind, numbered = "plain", True
            else:
                level_name = m.group("cmd")
                pos = m.end()
                opt = re.match(r"\s*\[[^\]]*\]", text[pos:])
                if opt:
                    pos += opt.end()
                title, pos = read_braced(text, pos)
                labels, pos = _read_labels(text, pos)
                numbered = not m.group("star")
                kind = "plain"
                # A hand-written requirements block: the heading says so, the label names
                # the actor (the PCI chapter's "Non-transitional Device With Legacy Driver").
                req = re.match(r"\s*(Device|Driver) Requirements:", latex_to_plain(title))
                if req:
                    kind = req.group(1).lower()
        except ValueError:
            continue  # a macro definition mentioning \section, not a heading
        if level_name not in SECTION_COMMANDS:
            continue
        level = SECTION_COMMANDS.index(level_name)
        if numbered:
            counters[level] += 1
            for deeper in range(level + 1, len(counters)):
                counters[deeper] = 0
        label = ""
        wanted = {"device": "devicenormative:", "driver": "drivernormative:"}.get(kind, "sec:")
        for candidate in labels:
            if candidate.startswith(wanted):
                label = candidate
                break
        else:
            label = labels[0] if labels else ""
        heading = Heading(level=level, numbered=numbered, title=latex_to_plain(title),
                          label=label, kind=kind, start=m.start(), body_start=pos)
        if numbered:
            first = chr(ord("A") + counters[0] - 1) if appendix else str(counters[0])
            heading.number = ".".join([first] + [str(c) for c in counters[1:level + 1]])
        headings.append(heading)
    stack: list[Heading] = []
    for i, heading in enumerate(headings):
        end = headings[i + 1].start if i + 1 < len(headings) else len(text)
        heading.body = text[heading.body_start:end]
        while stack and stack[-1].level >= heading.level:
            stack.pop()
        heading.path = [h.title for h in stack]
        stack.append(heading)
    return headings


# --------------------------------------------------------------------------- scope

def area_of(heading: Heading) -> str | None:
    """The catalog area a heading falls in, or None when it is out of scope."""
    path = heading.path + [heading.title]
    chapter = IN_SCOPE_CHAPTERS.get(path[0])
    if chapter is None:
        return None
    if chapter == "general":
        return "general"
    if chapter == "reserved":
        return "basic/reserved-feature-bits"
    if len(path) < 2:
        return None if chapter in ("transport", "device") else f"{chapter}"
    section = path[1]
    if chapter == "transport":
        return TRANSPORT_SECTIONS.get(section)
    if chapter == "device":
        entry = DEVICE_CHAPTERS.get(section)
        return f"device/{entry[0]}" if entry else None
    topic = BASIC_TOPICS.get(section, slugify(section))
    if topic == "virtqueues" and len(path) > 2 and path[2] == "Virtqueue Reset":
        topic = "virtqueue-reset"
    return f"basic/{topic}"


def _is_legacy(path: list[str]) -> bool:
    return any("legacy interface" in t.lower() for t in path)


def default_transports(area: str, path: list[str]) -> list[str]:
    legacy = _is_legacy(path)
    if area == "transport/mmio":
        return ["mmio-legacy"] if any(t == "Legacy interface" for t in path) else ["mmio"]
    if area == "transport/pci":
        if any(t.startswith("Non-transitional Device With Legacy Driver") for t in path):
            return ["pci"]
        if legacy or any(t.startswith("Legacy Interfaces") for t in path):
            return ["pci-transitional"]
        return ["pci", "pci-transitional"]
    if legacy:
        return ["mmio-legacy", "pci-transitional"]
    return []


_FEATURE_RE = re.compile(r"\bVIRTIO_(?:[A-Z0-9]+_)?F_[A-Z0-9_]+")


def default_features(sentence: str) -> tuple[list[str], list[str]]:
    """Features a sentence is conditioned on: (offered, negotiated); "!" marks "not".

    Only the condition clauses are read ("If X has (not) been negotiated, ..."); a
    feature merely named in the requirement itself is not a condition.
    """
    offered: list[str] = []
    negotiated: list[str] = []
    # "..., if it offers VIRTIO_X_F_Y" / "if they offer ...": a trailing offer condition.
    for cond in re.finditer(r"\bif (?:it|they|the device) offers? ((?:the )?[A-Z0-9_]+"
                            r"(?: or [A-Z0-9_]+)?)", sentence):
        for name in _FEATURE_RE.findall(cond.group(1)):
            if name not in offered:
                offered.append(name)
    for cond in re.finditer(
            r"\b(?:[Ii]f|[Ww]hen|[Uu]nless|[Oo]nce|[Ff]or devices)\b([^,.;:]*?)"
            r"\b(has not been|has been|have been|is not|is|was|are|not)?\s*"
            r"(negotiated|accepted|offered|offering|not offering)\b", sentence):
        names = _FEATURE_RE.findall(cond.group(1) + " " + (cond.group(0)))
        negative = "not" in (cond.group(2) or "") or "not " in cond.group(1)[-8:] \
            or cond.group(3) == "not offering" or "not offering" in cond.group(0)
        target = offered if cond.group(3).startswith(("offer", "not offer")) else negotiated
        for name in dict.fromkeys(names):
            tag = f"!{name}" if negative else name
            if tag not in target:
                target.append(tag)
    return offered, negotiated


def infer_actor(sentence: str) -> str:
    """For prose outside a requirements block: who the strongest keyword binds.

    The subject is looked for in the clause that holds that keyword (after the last
    comma before it), then in the whole lead-in; a sentence naming neither binds the
    device.  Annotations may override the guess (``actor``).
    """
    level = keyword_level(sentence)
    spot = None
    for m in _KEYWORD_RE.finditer(sentence):
        if _KEYWORD_LEVEL[re.sub(r"\s+", " ", m.group(1))] == level:
            spot = m.start()
            break
    head = sentence[:spot] if spot is not None else sentence
    clause = re.split(r"[,;:]", head)[-1]
    if re.search(r"\bdevices? and (?:transitional )?drivers?\b", clause, re.I):
        return "device"  # a duty shared by both sides is one a device can be held to
    for text in (clause, head):
        low = text.lower()
        device, driver = low.rfind("device"), low.rfind("driver")
        if device > driver:
            return "device"
        if driver > device:
            return "driver"
    return "device"


# --------------------------------------------------------------------------- MMIO table

_MMIOREG_RE = re.compile(r"\\(mmioreg|mmiodreg)\b")


def mmio_register_rows(body: str) -> Iterator[tuple[str, str, str]]:
    """(register name, offset, description LaTeX) of each row of an MMIO register table."""
    for m in _MMIOREG_RE.finditer(body):
        nargs = 5 if m.group(1) == "mmioreg" else 7
        args, pos = [], m.end()
        try:
            for _ in range(nargs):
                arg, pos = read_braced(body, pos)
                args.append(arg)
        except ValueError:
            continue
        if nargs == 5:
            name, offset, desc = args[0], args[2], args[4]
        else:
            name, offset, desc = f"{args[0]}/{args[1]}", f"{args[3]}/{args[4]}", args[6]
        if name.startswith("#") or name == "Name":
            continue
        yield latex_to_plain(name), latex_to_plain(offset), desc


_TABLE_SKIP = re.compile(r"^(See|Also see|eg\.|e\.g\.)", re.I)
_TABLE_BEHAVIOUR = re.compile(
    r"\b(return|returns|results? in|triggers|resets?|starts at|accessed with|are identical"
    r"|used to define|selects|sets|notifies the device|0x[0-9a-f]+)\b", re.I)


_DRIVER_SUBJECT = re.compile(r"^(The|When the) driver\b")


# --------------------------------------------------------------------------- entries

def _entry(*, area: str, slug: str, ordinal: str, revision: str, section: str, number: str,
           level: str, actor: str, plain: str, path: list[str], outside: bool,
           level_source: str = "keyword", register: str | None = None,
           keep_text: bool = False) -> dict:
    offered, negotiated = default_features(plain)
    device_type = area.split("/", 1)[1] if area.startswith("device/") else None
    return {
        "id": f"{area}/{slug}/{ordinal}",
        "revision": revision,
        "section": section,
        "section_number": number,
        "level": level,
        "level_source": level_source,
        "actor": actor,
        "area": area,
        "status": "normative",
        "outside_block": outside,
        "register": register,
        "hash": sentence_hash(plain),
        "applies": {
            "transports": default_transports(area, path),
            "device_types": [DEVICE_IDS[device_type]] if device_type else [],
            "features_offered": offered,
            "features_negotiated": negotiated,
        },
        "testable": "no" if actor == "driver" else "",
        "method": "not-from-guest" if actor == "driver" else "",
        "paraphrase": "",
        "checks": [],
        "source": None,
        **({"text": plain} if keep_text else {}),
    }


def _section_of(heading: Heading) -> str:
    if heading.label.startswith(("devicenormative:", "drivernormative:")):
        return heading.label
    if heading.label:
        return heading.label
    return "sec:" + " / ".join(heading.path + [heading.title])


def _slug_of(heading: Heading) -> str:
    label = heading.label.split(":", 1)[1] if ":" in heading.label else heading.title
    return slugify(label.split(" / ")[-1])


def read_revision(spec_dir: Path) -> str:
    rev = spec_dir / "REVISION"
    return rev.read_text().strip() if rev.exists() else f"virtio-{spec_dir.name}"


def parse_spec(spec_dir: Path | str, revision: str | None = None, *,
               keep_text: bool = False) -> list[dict]:
    """Skeleton entries (no hand-written fields filled) for a spec checkout, in spec order.

    ``keep_text`` adds each sentence's plain text under ``text``, for a person writing
    paraphrases; it is never written to the catalog.
    """
    spec_dir = Path(spec_dir)
    root = "main.tex" if (spec_dir / "main.tex").exists() else "content.tex"
    text = expand_inputs(spec_dir, root)
    revision = revision or read_revision(spec_dir)
    entries: list[dict] = []
    ordinals: dict[tuple[str, str, str], int] = {}
    slug_owner: dict[tuple[str, str], str] = {}

    def next_ordinal(area: str, slug: str, kind: str) -> str:
        key = (area, slug, kind)
        ordinals[key] = ordinals.get(key, 0) + 1
        n = ordinals[key]
        return {"device": f"{n}", "driver": f"driver-{n}", "prose": f"prose-{n}"}.get(
            kind, f"{kind}-{n}")

    slug_cache: dict[int, str] = {}

    def unique_slug(area: str, heading: Heading) -> str:
        # Two different sections may end in the same label component; the later one
        # then takes its parent's component too, so ids never merge sections.  A slug is
        # claimed only when a section yields its first entry, and a requirements block
        # shares its slug with the prose section of the same label.
        if id(heading) in slug_cache:
            return slug_cache[id(heading)]
        slug = _slug_of(heading)
        owner_key = slugify(heading.label.split(":", 1)[-1]
                            or " / ".join(heading.path + [heading.title]))
        owner = slug_owner.setdefault((area, slug), owner_key)
        if owner != owner_key:
            parts = (heading.label.split(":", 1)[-1] or heading.title).split(" / ")
            slug = slugify(" ".join(parts[-2:])) if len(parts) > 1 else f"{slug}-{heading.number}"
            slug_owner.setdefault((area, slug), owner_key)
        slug_cache[id(heading)] = slug
        return slug

    for heading in scan_headings(text):
        area = area_of(heading)
        if area is None:
            continue
        path = heading.path + [heading.title]
        body = prepare_body(heading.body)
        section = _section_of(heading)
        if heading.kind in ("device", "driver"):
            for para in paragraphs(body):
                for sentence in split_sentences(para):
                    level = keyword_level(sentence)
                    if level is None:
                        continue
                    entries.append(_entry(
                        area=area, slug=(slug := unique_slug(area, heading)),
                        ordinal=next_ordinal(area, slug, heading.kind),
                        revision=revision, section=section, number=heading.number,
                        level=level, actor=heading.kind, plain=sentence, path=path,
                        outside=False, keep_text=keep_text))
            continue
        # Plain prose: requirements that stand outside a requirements block.
        for para in paragraphs(body):
            for sentence in split_sentences(para):
                level = keyword_level(sentence)
                if level is None or level == "MAY":
                    continue
                entries.append(_entry(
                    area=area, slug=(slug := unique_slug(area, heading)),
                    ordinal=next_ordinal(area, slug, "prose"),
                    revision=revision, section=section, number=heading.number, level=level,
                    actor=infer_actor(sentence), plain=sentence, path=path, outside=True,
                    keep_text=keep_text))
        # The MMIO register tables define what each register reads as and accepts without
        # RFC keywords; a device that departs from them breaks the transport, so each
        # behavioural sentence is catalogued with an implied MUST.
        if area == "transport/mmio" and _MMIOREG_RE.search(heading.body):
            for register, offset, desc in mmio_register_rows(heading.body):
                desc_body = prepare_body(desc)
                reg_slug = "reg-" + slugify(register)
                for para in paragraphs(desc_body):
                    for sentence in split_sentences(para):
                        if _TABLE_SKIP.match(sentence) or not _TABLE_BEHAVIOUR.search(sentence):
                            continue
                        slug = unique_slug(area, heading)
                        entries.append(_entry(
                            area=area, slug=slug,
                            ordinal=next_ordinal(area, slug, reg_slug),
                            revision=revision, section=section, number=heading.number,
                            level=keyword_level(sentence) or "MUST",
                            actor="driver" if _DRIVER_SUBJECT.match(sentence) else "device",
                            plain=sentence, path=path, outside=True,
                            level_source="keyword" if keyword_level(sentence) else "implied",
                            register=f"{register}@{offset}", keep_text=keep_text))
    return entries


# --------------------------------------------------------------------------- merging

ANNOTATED_FIELDS = ("paraphrase", "applies", "method", "testable", "actor")


def load_json(path: Path, default):
    return json.loads(path.read_text()) if path.exists() else default


def merge(skeleton: list[dict], annotations: dict[str, dict],
          proposals: list[dict]) -> list[dict]:
    """Skeleton entries with the hand-written fields laid over, then the proposals."""
    merged = []
    for entry in skeleton:
        entry = json.loads(json.dumps(entry))
        note = annotations.get(entry["id"], {})
        for key in ANNOTATED_FIELDS:
            if key not in note:
                continue
            if key == "applies":
                entry["applies"] = {**entry["applies"], **note["applies"]}
            else:
                entry[key] = note[key]
        merged.append(entry)
    merged.extend(json.loads(json.dumps(p)) for p in proposals)
    return merged


def render(entries: list[dict]) -> str:
    """The catalog file's exact text (one stable form, so diffs stay small)."""
    return json.dumps(entries, indent=1, ensure_ascii=False) + "\n"


def annotations_template(entries: list[dict]) -> dict[str, dict]:
    """What an annotation for each entry holds right now (used to seed the file)."""
    return {e["id"]: {k: e[k] for k in ANNOTATED_FIELDS if k != "actor"} for e in entries
            if e["status"] == "normative"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.catalog.specparse",
        description="Regenerate the clause catalog from a virtio spec checkout.")
    parser.add_argument("--spec", required=True, type=Path,
                        help="spec checkout directory (holding content.tex / main.tex)")
    parser.add_argument("--write", action="store_true",
                        help=f"write the merged catalog to {CLAUSES_FILE.name}")
    parser.add_argument("--output", type=Path, default=CLAUSES_FILE,
                        help="where --write writes (default: the shipped clauses.json)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if regenerating would change the shipped catalog")
    parser.add_argument("--skeleton", action="store_true",
                        help="print the bare skeleton (JSON) to stdout instead")
    parser.add_argument("--with-text", action="store_true",
                        help="with --skeleton: include each sentence's text (for writing "
                             "paraphrases; never commit it)")
    parser.add_argument("--revision", help="revision string (default: the spec's REVISION file)")
    args = parser.parse_args(argv)
    if not (args.spec / "content.tex").exists():
        parser.error(f"{args.spec} holds no content.tex; point --spec at a spec checkout")
    skeleton = parse_spec(args.spec, args.revision, keep_text=args.skeleton and args.with_text)
    if args.skeleton:
        json.dump(skeleton, sys.stdout, indent=1)
        print()
        return 0
    annotations = load_json(ANNOTATIONS_FILE, {})
    proposals = load_json(PROPOSALS_FILE, [])
    merged = merge(skeleton, annotations, proposals)
    ids = {e["id"] for e in skeleton}
    orphans = sorted(set(annotations) - ids)
    missing = sum(1 for e in merged if not e["paraphrase"])
    print(f"{len(skeleton)} sentences from {args.spec} ({skeleton[0]['revision'] if skeleton else '?'}); "
          f"{len(proposals)} proposal entries; {missing} without a paraphrase",
          file=sys.stderr)
    if orphans:
        print(f"warning: {len(orphans)} annotations name ids the spec no longer yields "
              f"(first: {orphans[:5]}); `virtio-conformance clauses sync` shows why",
              file=sys.stderr)
    rendered = render(merged)
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != rendered:
            print(f"{args.output} is out of date; rerun with --write", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date", file=sys.stderr)
    if args.write:
        args.output.write_text(rendered)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
