"""The clause catalog: shipped data is valid and consistent, the parser and sync behave.

The parser and sync run on small synthetic spec checkouts written here, so these tests
need no copy of the real spec.  Set VIRTIO_SPEC_DIR to a 1.4 checkout to also check
that the shipped catalog is exactly what regenerating from it would give.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conformance.catalog import (
    AREA_PATTERN,
    Catalog,
    Clause,
    coverage,
    load_catalog,
    load_entries,
    specparse,
    sync,
    validate_entry,
)
from conformance.catalog.vocab import (
    ANNOTATIONS_FILE,
    CLAUSES_FILE,
    LEVELS,
    PROPOSALS_FILE,
)
from conformance.errors import ConfigError

# --------------------------------------------------------------------------- shipped data


@pytest.fixture(scope="module")
def shipped() -> list[dict]:
    return json.loads(CLAUSES_FILE.read_text())


def test_catalog_loads_and_validates(shipped):
    catalog = load_catalog()
    assert len(catalog) == len(shipped) > 1000
    problems = [p for e in shipped for p in validate_entry(e)]
    assert problems == []
    assert catalog.revision == "virtio-v1.4-cs01"


def test_ids_unique_levels_and_areas_valid(shipped):
    ids = [e["id"] for e in shipped]
    assert len(ids) == len(set(ids))
    assert {e["level"] for e in shipped} <= set(LEVELS)
    for e in shipped:
        assert AREA_PATTERN.match(e["area"]), e["id"]
    areas = {e["area"] for e in shipped}
    for wanted in ("transport/mmio", "transport/pci", "general", "device/net", "device/blk",
                   "basic/feature-bits", "proposal/mmio-v3", "proposal/pci-legacy-mmr"):
        assert wanted in areas


def test_committed_catalog_matches_annotations_and_proposals(shipped):
    by_id = {e["id"]: e for e in shipped}
    annotations = json.loads(ANNOTATIONS_FILE.read_text())
    for clause_id, note in annotations.items():
        assert clause_id in by_id, f"annotation for {clause_id} has no catalog entry"
        entry = by_id[clause_id]
        for key, value in note.items():
            if key == "applies":
                for sub, v in value.items():
                    assert entry["applies"][sub] == v, (clause_id, sub)
            else:
                assert entry[key] == value, (clause_id, key)
    normative = [e for e in shipped if e["status"] == "normative"]
    assert {e["id"] for e in normative} == set(annotations), \
        "every spec sentence carries hand-written fields, and no annotation is orphaned"
    proposals = json.loads(PROPOSALS_FILE.read_text())
    assert [by_id[p["id"]] for p in proposals] == proposals
    assert all(p["status"] == "draft" and p["hash"] is None and p["source"] for p in proposals)


def test_no_paraphrase_is_empty_and_no_spec_text_is_stored(shipped):
    assert all(e["paraphrase"] for e in shipped)
    assert not any("text" in e for e in shipped)


def test_discovery_clauses_exist():
    catalog = load_catalog()
    vendor = catalog.get("transport/pci/pci-device-discovery/1")
    assert vendor.actor == "device" and vendor.level == "MUST"
    assert vendor.section_number == "4.1.2.1"
    assert catalog.get("transport/mmio/mmio-device-register-layout/1").section_number == "4.2.2.1"
    assert catalog.get("transport/pci/legacy-interfaces-a-note-on-pci-device-discovery/prose-1") \
        .applies["transports"] == ["pci-transitional"]


def test_get_unknown_id_suggests_close_matches():
    catalog = load_catalog()
    with pytest.raises(ConfigError) as err:
        catalog.get("transport/mmio/mmio-device-register-layuot/1")
    assert "transport/mmio/mmio-device-register-layout/1" in str(err.value)


def test_filter_and_applies_to():
    catalog = load_catalog()
    mmio_musts = catalog.filter(area="transport/mmio", level="MUST", actor="device")
    assert mmio_musts and all(c.area == "transport/mmio" for c in mmio_musts)
    assert catalog.filter(area="transport", text="magicvalue")
    assert len(catalog.filter(area="device")) == sum(
        1 for c in catalog if c.area.startswith("device/"))
    clause = catalog.get("transport/mmio/mmio-device-register-layout/2")
    assert clause.applies_to("mmio", 2) == (True, "applies")
    ok, reason = clause.applies_to("pci", 2)
    assert not ok and "mmio" in reason
    blk = catalog.get("device/blk/device-initialization/3")
    assert blk.applies_to("mmio", 2)[0] and not blk.applies_to("mmio", 1)[0]
    assert blk.applies_to("mmio", "blk")[0]
    with pytest.raises(ConfigError):
        clause.applies_to("usb", None)


def test_with_checks_and_coverage():
    catalog = load_catalog()
    magic = "transport/mmio/mmio-device-register-layout/1"
    checked = catalog.with_checks({magic: ["checks/test_mmio.py::test_magic"]})
    assert checked.get(magic).checks == ("checks/test_mmio.py::test_magic",)
    assert catalog.get(magic).checks == ()  # the cached catalog is left alone
    with pytest.raises(ConfigError):
        catalog.with_checks({"no/such/clause": ["x"]})
    cov = coverage(catalog, {magic})
    json.dumps(cov)  # plain data, straight to `clauses --coverage --format json`
    mmio = cov["transport/mmio"]
    assert mmio["checked"] == 1 and mmio["area"] == "transport/mmio"
    assert mmio["in_catalog"] == mmio["checked"] + mmio["untestable"] + mmio["unchecked"]
    assert mmio["in_catalog"] == mmio["must"] + mmio["should"]
    assert cov["total"]["in_catalog"] == sum(
        r["in_catalog"] for a, r in cov.items() if a != "total")
    assert 0 < mmio["checked_pct"] < 100


def test_loader_rejects_invalid_file(tmp_path):
    bad = tmp_path / "clauses.json"
    entry = json.loads(CLAUSES_FILE.read_text())[0]
    bad.write_text(json.dumps([entry, {**entry, "level": "PERHAPS"}]))
    with pytest.raises(ConfigError) as err:
        load_entries(bad)
    assert "PERHAPS" in str(err.value) and "duplicate id" in str(err.value)


# --------------------------------------------------------------------------- parser

SPEC_V1 = r"""
\chapter{Introduction}
Intro text that MUST be ignored, as it is outside the scope.

\chapter{Basic Facilities of a Virtio Device}\label{sec:Basic Facilities of a Virtio Device}
\section{Feature Bits}\label{sec:Basic Facilities of a Virtio Device / Feature Bits}
Plain prose without keywords.

\drivernormative{\subsection}{Feature Bits}{Basic Facilities of a Virtio Device / Feature Bits}
The driver MUST NOT accept an unoffered feature. % a comment with MUST inside

\devicenormative{\subsection}{Feature Bits}{Basic Facilities of a Virtio Device / Feature Bits}
The device MUST NOT offer a feature it cannot honour.  The device SHOULD accept any valid
subset, e.g. a small one, otherwise it MUST fail FEATURES_OK.
\begin{note}
A note that SHOULD be ignored because notes are informative.
\end{note}
If VIRTIO_F_RING_RESET has not been negotiated, the device MAY ignore
\field{queue_reset}.

The device MUST ignore any feature bit that is
\begin{itemize}
\item not described,
\item reserved.
\end{itemize}

\chapter{Virtio Transport Options}\label{sec:Virtio Transport Options}
\section{Virtio Over MMIO}\label{sec:Virtio Transport Options / Virtio Over MMIO}
\subsection{MMIO Device Register Layout}\label{sec:Virtio Transport Options / Virtio Over MMIO / MMIO Device Register Layout}
\begin{longtable}{ll}
  \mmioreg{MagicValue}{Magic value}{0x000}{R}{0x74726976.}
  \mmioreg{QueueSizeMax}{Maximum virtqueue size}{0x034}{R}{%
    Reading from the register returns the maximum size or zero (0x0) if the queue is not
    available. See elsewhere.}
\end{longtable}
\devicenormative{\subsubsection}{MMIO Device Register Layout}{Virtio Transport Options / Virtio Over MMIO / MMIO Device Register Layout}
The device MUST return 0x74726976 in \field{MagicValue}.

The device MUST return value 0x2 in \field{Version}.

\subsubsection{A Note}\label{sec:Virtio Transport Options / Virtio Over MMIO / A Note}
\subparagraph{Device Requirements: Hand Written}
\label{drivernormative:Virtio Transport Options / Virtio Over MMIO / Hand Written}
\label{devicenormative:Virtio Transport Options / Virtio Over MMIO / Hand Written}
Devices SHOULD do the hand-written thing.

\subsection{Legacy interface}\label{sec:Virtio Transport Options / Virtio Over MMIO / Legacy interface}
Transitional devices MUST keep the legacy layout.
"""


def write_spec(root: Path, body: str, revision: str = "virtio-test-01") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "content.tex").write_text(body)
    (root / "REVISION").write_text(revision + "\n")
    return root


def test_parser_yields_expected_entries(tmp_path):
    entries = specparse.parse_spec(write_spec(tmp_path / "v1", SPEC_V1), keep_text=True)
    got = {e["id"]: e for e in entries}
    fb = "basic/feature-bits/feature-bits"
    mmio = "transport/mmio/mmio-device-register-layout"
    assert list(got) == [
        f"{fb}/driver-1", f"{fb}/1", f"{fb}/2", f"{fb}/3", f"{fb}/4",
        f"{mmio}/reg-magicvalue-1", f"{mmio}/reg-queuesizemax-1", f"{mmio}/1", f"{mmio}/2",
        "transport/mmio/hand-written/1", "transport/mmio/legacy-interface/prose-1",
    ]
    assert got[f"{fb}/driver-1"]["level"] == "MUST NOT"
    assert got[f"{fb}/driver-1"]["actor"] == "driver"
    assert got[f"{fb}/driver-1"]["section_number"] == "2.1.1"
    assert got[f"{fb}/driver-1"]["section"] == \
        "drivernormative:Basic Facilities of a Virtio Device / Feature Bits"
    assert got[f"{fb}/1"]["level"] == "MUST NOT"
    assert got[f"{fb}/2"]["level"] == "MUST"  # "SHOULD ..., otherwise ... MUST": the stronger
    assert "e.g. a small one" in got[f"{fb}/2"]["text"]  # no split after "e.g."
    assert got[f"{fb}/3"]["level"] == "MAY"
    assert got[f"{fb}/3"]["applies"]["features_negotiated"] == ["!VIRTIO_F_RING_RESET"]
    assert got[f"{fb}/4"]["text"].endswith("not described, reserved.")  # list kept whole
    assert all("note" not in e["text"] for e in entries)
    assert got[f"{fb}/1"]["section_number"] == "2.1.2"
    assert got[f"{mmio}/1"]["section_number"] == "3.1.1.1"
    assert got[f"{mmio}/1"]["applies"]["transports"] == ["mmio"]
    table = got[f"{mmio}/reg-queuesizemax-1"]
    assert table["outside_block"] and table["level"] == "MUST"
    assert table["level_source"] == "implied" and table["register"] == "QueueSizeMax@0x034"
    hand = got["transport/mmio/hand-written/1"]
    assert hand["actor"] == "device" and hand["level"] == "SHOULD"
    assert hand["section_number"] == "3.1.1.2.0.1"  # subparagraph right under a subsubsection
    assert hand["section"] == "devicenormative:Virtio Transport Options / Virtio Over MMIO / Hand Written"
    legacy = got["transport/mmio/legacy-interface/prose-1"]
    assert legacy["outside_block"] and legacy["applies"]["transports"] == ["mmio-legacy"]
    assert all(e["revision"] == "virtio-test-01" for e in entries)
    assert got[f"{mmio}/1"]["hash"] == specparse.sentence_hash(
        "The device MUST return 0x74726976 in   MagicValue.")


def test_hash_ignores_markup_and_whitespace():
    plain = specparse.latex_to_plain(r"The device \field{MUST}  return~0x2 in \field{Version}.")
    assert specparse.sentence_hash(plain) == specparse.sentence_hash(
        "the device MUST return 0x2 in Version.")


def test_split_sentences_keeps_abbreviations():
    text = "A MUST hold, i.e. always. Then (i.e. next) B SHOULD hold. C MAY."
    assert specparse.split_sentences(text) == [
        "A MUST hold, i.e. always.", "Then (i.e. next) B SHOULD hold.", "C MAY."]


def test_input_files_are_followed(tmp_path):
    root = tmp_path / "spec"
    root.mkdir()
    (root / "content.tex").write_text(
        "\\chapter{Basic Facilities of a Virtio Device}\n\\input{part}\n")
    (root / "part.tex").write_text(
        "\\section{Device Reset}\\label{sec:Basic Facilities of a Virtio Device / Device Reset}\n"
        "\\devicenormative{\\subsection}{Device Reset}{Basic Facilities of a Virtio Device / "
        "Device Reset}\nA device MUST reset.\n")
    entries = specparse.parse_spec(root)
    assert [e["id"] for e in entries] == ["basic/device-reset/device-reset/1"]
    assert entries[0]["section_number"] == "1.1.1"


def test_merge_lays_annotations_over_skeleton(tmp_path):
    skeleton = specparse.parse_spec(write_spec(tmp_path / "v1", SPEC_V1))
    first = skeleton[0]["id"]
    merged = specparse.merge(skeleton, {first: {"paraphrase": "ours", "method": "register-probe",
                                                "applies": {"device_types": [1]}}}, [])
    assert merged[0]["paraphrase"] == "ours" and merged[0]["method"] == "register-probe"
    assert merged[0]["applies"]["device_types"] == [1]
    assert merged[0]["applies"]["transports"] == skeleton[0]["applies"]["transports"]
    assert skeleton[0]["paraphrase"] == ""  # the skeleton itself is not modified


# --------------------------------------------------------------------------- sync

def catalog_of(entries: list[dict]) -> Catalog:
    return Catalog(tuple(Clause.from_json(e) for e in entries))


def test_sync_reports_nothing_for_same_spec(tmp_path):
    spec = write_spec(tmp_path / "v1", SPEC_V1)
    diff = sync(catalog_of(specparse.parse_spec(spec)), spec)
    assert diff.is_empty, diff.to_json()
    assert "matches" in diff.summary()


def test_sync_detects_added_removed_changed(tmp_path):
    old = catalog_of(specparse.parse_spec(write_spec(tmp_path / "v1", SPEC_V1)))
    v2 = SPEC_V1.replace(
        "The device MUST return value 0x2 in \\field{Version}.",
        "The device MUST return value 0x3 in \\field{Version}.",  # changed
    ).replace(
        "The driver MUST NOT accept an unoffered feature.",
        "The driver MUST NOT accept an unoffered feature. The driver MUST check offers.",  # added
    ).replace(
        "Transitional devices MUST keep the legacy layout.", "",  # removed
    )
    diff = sync(old, write_spec(tmp_path / "v2", v2, revision="virtio-test-02"))
    assert [a["id"] for a in diff.added] == ["basic/feature-bits/feature-bits/driver-2"]
    assert diff.removed == ["transport/mmio/legacy-interface/prose-1"]
    assert [c["id"] for c in diff.changed] == ["transport/mmio/mmio-device-register-layout/2"]
    assert diff.spec_revision == "virtio-test-02"
    assert "1 added, 1 removed, 1 changed" in diff.summary()


def test_sync_reports_renumbering_not_changes(tmp_path):
    old = catalog_of(specparse.parse_spec(write_spec(tmp_path / "v1", SPEC_V1)))
    v2 = SPEC_V1.replace("The device MUST NOT offer a feature it cannot honour.",
                         "The device MUST be new. The device MUST NOT offer a feature it "
                         "cannot honour.")
    diff = sync(old, write_spec(tmp_path / "v2", v2))
    assert [a["id"] for a in diff.added] == ["basic/feature-bits/feature-bits/1"]
    assert diff.changed == [] and diff.removed == []
    assert {"old_id": "basic/feature-bits/feature-bits/1",
            "new_id": "basic/feature-bits/feature-bits/2"} in diff.renumbered


def test_sync_rejects_a_directory_that_is_not_a_spec(tmp_path):
    with pytest.raises(ConfigError):
        sync(load_catalog(), tmp_path)


@pytest.mark.skipif(not os.environ.get("VIRTIO_SPEC_DIR"),
                    reason="set VIRTIO_SPEC_DIR to a virtio 1.4 spec checkout")
def test_shipped_catalog_regenerates_identically():
    assert specparse.main(["--spec", os.environ["VIRTIO_SPEC_DIR"], "--check"]) == 0
