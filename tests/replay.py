"""Run the real checks against a recording of probe outputs, mutated at will.

The recordings in ``tests/recordings/`` were made by real runs (``--vc-record``).  A
test copies one, changes one observed value, replays it, and expects the verdict of
the check that owns that value to flip: proof that the check can fail.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from conformance.cli import main
from conformance.results import RunResults

RECORDINGS = Path(__file__).parent / "recordings"


def load_recording(name: str) -> dict:
    return json.loads((RECORDINGS / name).read_text())


def probe_output(recording: dict, target: str, key: str) -> dict:
    return json.loads(recording["targets"][target]["probes"][key]["stdout"])


def with_probe_output(recording: dict, target: str, key: str, change) -> dict:
    """A copy of ``recording`` in which ``change(output)`` edited one probe's output."""
    mutated = copy.deepcopy(recording)
    entry = mutated["targets"][target]["probes"][key]
    output = json.loads(entry["stdout"])
    change(output)
    entry["stdout"] = json.dumps(output)
    return mutated


def replay(tmp_path: Path, recording: dict, target: str, checks: list[str] | None = None,
           extra: list[str] | None = None) -> tuple[int, RunResults]:
    """Replay ``recording`` for one target (``profile@transport``); returns (exit, results)."""
    profile, transport = target.split("@")
    rec = tmp_path / "recording.json"
    rec.write_text(json.dumps(recording))
    out = tmp_path / "out"
    argv = ["run", "--profile", profile, "--transport", transport, "--output", str(out)]
    for c in checks or []:
        argv += ["--check", c]
    argv += (extra or []) + ["--", "--vc-replay", str(rec), "-p", "no:randomly"]
    code = main(argv)
    return code, RunResults.read(out / "results.json")


def verdicts(results: RunResults) -> dict[str, str]:
    return {r.clause: r.verdict.value for r in results.results}
