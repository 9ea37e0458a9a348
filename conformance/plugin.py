"""The pytest plugin: parametrizes checks over devices × transports, boots guests on
demand, turns each check's end into a verdict, and writes the reports.

It is registered as a ``pytest11`` entry point but stays inert unless ``--vc`` is
given (the ``virtio-conformance run`` command gives it), so it never changes a pytest
run that did not ask for it.
"""

from __future__ import annotations

import json
import re
import shlex
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import pytest
from _pytest.runner import runtestprotocol

from .catalog import Catalog
from .engine import Engine, RunOptions, Target, log
from .errors import ConfigError, GuestCommandError, HarnessError, NotApplicable
from .judge import ClauseViolation, Judge
from .machine.layout import Location
from .paths import PROBE_GUEST_DIR
from .results import CheckOutcome, Judgment, RunResults, Verdict, broken_verdict, rollup

MAX_ATTEMPTS = 2  # a check that ends in a harness ERROR is tried once more; a FAIL never


def pytest_addoption(parser):
    group = parser.getgroup("virtio-conformance")
    group.addoption("--vc", action="store_true", default=False,
                    help="run virtio conformance checks (activates this plugin)")
    group.addoption("--vc-profile", action="append", default=[], metavar="P",
                    help="device profile name or path (repeatable; default: all shipped)")
    group.addoption("--vc-transport", action="append", default=[], metavar="T",
                    help="mmio | mmio-legacy | pci | pci-transitional (repeatable)")
    group.addoption("--vc-clause", action="append", default=[], metavar="ID",
                    help="run only the checks that judge these catalog clauses")
    group.addoption("--vc-check", action="append", default=[], metavar="NAME",
                    help="run only this check: a function name or module.py::function")
    group.addoption("--vc-output", default=None, metavar="DIR",
                    help="where results go (default reports/<run-id>)")
    group.addoption("--vc-waivers", default=None, metavar="FILE", help="waivers file (TOML)")
    group.addoption("--vc-strict", action="store_true", default=False,
                    help="a WARN fails the gate too")
    group.addoption("--vc-record", default=None, metavar="FILE",
                    help="save every probe output of this run to FILE (for replay)")
    group.addoption("--vc-replay", default=None, metavar="FILE",
                    help="boot nothing: answer probes from a recording (the suite's own tests "
                         "mutate recordings to prove each verdict can flip)")


def pytest_configure(config):
    config.addinivalue_line("markers", "clause(*ids): catalog clauses this check judges")
    config.addinivalue_line("markers", "destructive: the check may leave the device unusable "
                                       "(e.g. feeds it malformed input); runs last for it")
    if not config.getoption("--vc", default=False):
        return
    try:
        engine = Engine(RunOptions(profiles=config.getoption("--vc-profile"),
                                   transports=config.getoption("--vc-transport"),
                                   output=config.getoption("--vc-output")))
        from .catalog import load_catalog

        catalog = load_catalog()
        for clause in config.getoption("--vc-clause"):
            catalog.get(clause)
    except ConfigError as e:
        # Bad input stops the run before anything boots: one message, exit 2.
        raise pytest.UsageError(str(e)) from None
    config.pluginmanager.register(ConformancePlugin(config, engine), "virtio-conformance-run")


def _slug(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", nodeid)[-120:]


def probe_key(command: str, arguments: dict) -> str:
    """How a probe call is named in a recording: command plus its sorted arguments."""
    return f"{command} {json.dumps(arguments, sort_keys=True)}"


class Recording:
    """Probe outputs per target, saved by ``--vc-record`` and answered by ``--vc-replay``."""

    def __init__(self, data: dict | None = None):
        self.data: dict = data or {"targets": {}}

    @classmethod
    def load(cls, path: Path) -> Recording:
        try:
            return cls(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as e:
            raise ConfigError(f"recording {path}: {e}") from None

    def target(self, target_id: str) -> dict:
        return self.data["targets"].setdefault(target_id, {"location": None, "probes": {}})

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n")


class DutHandle:
    """What a check gets: one device under test in its booted guest (or a replay of it)."""

    def __init__(self, plugin: ConformancePlugin, item, target: Target):
        self._plugin = plugin
        self._item = item
        self.target = target
        self.profile = target.profile
        self.transport = target.transport
        self._probe_count = 0
        if plugin.replay is not None:
            recorded = plugin.replay.data["targets"].get(target.id)
            if recorded is None:
                raise GuestCommandError(f"recording has no target {target.id}")
            self.guest = None
            self.device = None
            self.location = Location(**recorded["location"])
        else:
            self.guest, self.device = plugin.engine.guest_for(target)
            self.location = self.device.location
            if plugin.record is not None:
                plugin.record.target(target.id)["location"] = asdict(self.location)

    # Host-side levers and oracles (QMP), recorded and replayed like probe outputs.
    HOST_ACTIONS = ("set_link", "block_resize", "balloon", "virtio_status",
                    "virtio_queue_status", "query_pci")

    def host(self, action: str, **arguments):
        """Do ``action`` through QMP on this device (see ``Guest.set_link`` and friends)."""
        if action not in self.HOST_ACTIONS:
            raise ValueError(f"unknown host action {action!r}")
        key = "host:" + probe_key(action, arguments)
        if self.guest is None:
            assert self._plugin.replay is not None
            recorded = self._plugin.replay.data["targets"][self.target.id]["probes"]
            if key not in recorded:
                raise GuestCommandError(f"recording of {self.target.id} has no {key}")
            return recorded[key]["return"]
        method = getattr(self.guest, action)
        if action in ("balloon", "query_pci"):
            value = method(**arguments)
        else:
            value = method(self.device, **arguments)
        if self._plugin.record is not None:
            self._plugin.record.target(self.target.id)["probes"][key] = {"return": value}
        return value

    def run(self, command: str, **kw):
        if self.guest is None:
            raise GuestCommandError(f"replay cannot run guest commands ({command})")
        return self.guest.run(command, **kw)

    def probe(self, command: str, **arguments) -> dict:
        """Run an in-guest probe command; its output is kept as evidence."""
        key = probe_key(command, arguments)
        if self.guest is None:
            assert self._plugin.replay is not None
            probes = self._plugin.replay.data["targets"][self.target.id]["probes"]
            if key not in probes:
                raise GuestCommandError(f"recording of {self.target.id} has no probe {key}")
            stdout, stderr, exitcode = probes[key]["stdout"], "", probes[key]["exitcode"]
        else:
            self._plugin.push_probe(self.guest)
            args = json.dumps({"location": self.location.to_json(), **arguments})
            result = self.guest.run(f"cd {PROBE_GUEST_DIR} && python3 -m vcprobe {command} "
                                    f"{shlex.quote(args)}", timeout=120)
            stdout, stderr, exitcode = result.stdout, result.stderr, result.exitcode
            if self._plugin.record is not None:
                self._plugin.record.target(self.target.id)["probes"][key] = {
                    "stdout": stdout, "exitcode": exitcode}
        self._probe_count += 1
        path = self._plugin.check_artifact_dir(self._item) / \
            f"probe-{self._probe_count}-{command}.json"
        path.write_text(stdout + (("\n# stderr:\n" + stderr) if stderr else ""))
        self._plugin.add_artifact(self._item, path)
        try:
            data = json.loads(stdout)
        except ValueError:
            data = None
        if exitcode != 0 or not isinstance(data, dict) or "error" in data:
            message = (data or {}).get("error") if isinstance(data, dict) else None
            raise GuestCommandError(
                f"probe {command} could not observe the device: "
                f"{message or stderr.strip()[-500:] or 'no output'}",
                command=command, exitcode=exitcode, stdout=stdout, stderr=stderr)
        return data


class ConformancePlugin:
    def __init__(self, config, engine: Engine):
        self.config = config
        self.engine = engine
        self.catalog: Catalog | None = None
        self.outcomes: list[CheckOutcome] = []
        self.check_artifacts: dict[str, list[str]] = {}
        self.prepare_error: HarnessError | None = None
        self.config_error: ConfigError | None = None
        self.results: RunResults | None = None
        self.exit_code: int | None = None
        self._remaining: dict[str, int] = {}
        self._pushed: set[int] = set()
        replay = config.getoption("--vc-replay")
        self.replay = Recording.load(Path(replay)) if replay else None
        self.record = Recording() if config.getoption("--vc-record") else None

    def _catalog(self) -> Catalog:
        assert self.catalog is not None, "catalog is loaded at session start"
        return self.catalog

    # ---- session start: catalog, image, accelerator
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session):
        from .catalog import load_catalog

        self.catalog = load_catalog()
        if self.replay is not None:
            self.engine.output.mkdir(parents=True, exist_ok=True)
            self.engine.replayed_from = self.config.getoption("--vc-replay")
            return
        try:
            self.engine.prepare()
        except ConfigError as e:
            # Bad input (no QEMU, unusable cache dir...): nothing ran, nothing to report.
            self.config_error = e
            raise pytest.UsageError(str(e)) from None
        except HarnessError as e:
            # Nothing can be observed, but every check still gets its ERROR verdict.
            self.engine.output.mkdir(parents=True, exist_ok=True)
            self.prepare_error = e
            self.engine.infra_errors.append(str(e))
            log(f"ERROR: {e}")

    # ---- collection: parametrize, validate clauses, applicability, order
    def pytest_generate_tests(self, metafunc):
        if "dut" in metafunc.fixturenames:
            targets = self.engine.targets
            metafunc.parametrize("dut", targets, ids=[t.id for t in targets], indirect=True)

    def _clauses(self, item) -> list[str]:
        ids: list[str] = []
        for mark in item.iter_markers("clause"):
            ids.extend(mark.args)
        return ids

    def pytest_collection_modifyitems(self, session, config, items):
        wanted = config.getoption("--vc-clause")
        for clause in wanted:
            try:
                self._catalog().get(clause)
            except ConfigError as e:
                raise pytest.UsageError(f"--clause: {e}") from None
        errors = []
        selected, deselected = [], []
        for item in items:
            clauses = self._clauses(item)
            if not clauses:
                errors.append(f"{item.nodeid}: a check must name its clauses "
                              "(@pytest.mark.clause)")
                continue
            for c in clauses:
                try:
                    self._catalog().get(c)
                except ConfigError as e:
                    errors.append(f"{item.nodeid}: {e}")
            if (wanted and not set(wanted) & set(clauses)) or not self._check_wanted(item):
                deselected.append(item)
            else:
                selected.append(item)
        if errors:
            raise pytest.UsageError("invalid checks:\n  " + "\n  ".join(errors))
        if deselected:
            config.hook.pytest_deselected(items=deselected)
        # Group by transport so each guest is booted once and closed when done.
        order = {t: i for i, t in enumerate(("mmio", "mmio-legacy", "pci", "pci-transitional"))}
        def place(it):
            # Grouped by transport (one guest each) and device; a check that may leave
            # its device unusable goes last for that device, so it cannot spoil the rest.
            t = self._target(it)
            destructive = it.get_closest_marker("destructive") is not None
            return (order.get(t.transport, 9), t.profile.name, destructive) if t else (-1, "", 0)

        selected.sort(key=place)
        items[:] = selected
        for it in selected:
            it._vc_na = self.not_applicable(it)
            t = self._target(it)
            if t:
                for key in (t.transport, t.id):
                    self._remaining[key] = self._remaining.get(key, 0) + 1
        # NA checks are never set up or torn down, so pytest must be told which check
        # really runs next: its teardown keeps exactly the fixtures that one needs.
        following = None
        for it in reversed(selected):
            it._vc_next_run = following
            if not it._vc_na:
                following = it

    def _check_wanted(self, item) -> bool:
        """Exact match on the check's name (``--check``), never a substring."""
        names = self.config.getoption("--vc-check")
        if not names:
            return True
        function = item.originalname if hasattr(item, "originalname") else item.name
        module = Path(str(item.fspath)).name
        return any(n == function or n == f"{module}::{function}" for n in names)

    @staticmethod
    def _target(item) -> Target | None:
        callspec = getattr(item, "callspec", None)
        return callspec.params.get("dut") if callspec else None

    def not_applicable(self, item) -> str | None:
        """Why none of a check's clauses apply to its target (reported NA, never run)."""
        target = self._target(item)
        if target is None:
            return None
        if target.na_reason:
            return target.na_reason
        reasons: list[str] = []
        for c in self._clauses(item):
            ok, reason = self._catalog().get(c).applies_to(target.transport,
                                                           target.profile.virtio_id)
            if ok:
                return None
            reason = reason.removeprefix(f"{c} ")
            if reason not in reasons:
                reasons.append(reason)
        return f"{target.profile.name} on {target.transport}: " + "; ".join(reasons)

    # ---- fixtures
    @pytest.fixture
    def dut(self, request):
        target: Target = request.param
        if self.prepare_error is not None:
            raise self.prepare_error
        return DutHandle(self, request.node, target)

    @pytest.fixture
    def judge(self, request):
        clauses = self._clauses(request.node)
        levels = {c: self._catalog().get(c).level for c in clauses}
        target = self._target(request.node)
        not_applicable = {}
        if target is not None:
            for c in clauses:
                ok, reason = self._catalog().get(c).applies_to(target.transport,
                                                            target.profile.virtio_id)
                if not ok:
                    not_applicable[c] = reason
        j = Judge(clauses, levels, not_applicable)
        request.node._vc_judge = j
        return j

    # ---- artifacts
    def check_artifact_dir(self, item) -> Path:
        path = self.engine.output / "artifacts" / "checks" / _slug(item.nodeid)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def add_artifact(self, item, path: Path) -> None:
        rel = str(Path(path).relative_to(self.engine.output))
        self.check_artifacts.setdefault(item.nodeid, []).append(rel)

    def push_probe(self, guest) -> None:
        if id(guest) in self._pushed:
            return
        from .paths import PROBE_UNPACK, probe_archive

        guest.run(PROBE_UNPACK, input=probe_archive(), check=True, timeout=60)
        self._pushed.add(id(guest))

    # ---- running: NA before setup, retries for harness errors only
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        start = time.monotonic()
        na = getattr(item, "_vc_na", None)
        nextitem = getattr(item, "_vc_next_run", nextitem)
        attempt = 0
        while True:
            attempt += 1
            item._vc_judge = None
            item._vc_excinfo = {}
            if na:
                reports = []
                outcome = self._outcome(item, Verdict.NA, f"not applicable: {na}", [], attempt)
            else:
                reports = runtestprotocol(item, nextitem=nextitem, log=False)
                outcome = self._outcome_from_run(item, attempt)
            retry = (outcome.verdict == Verdict.ERROR and attempt < MAX_ATTEMPTS
                     and getattr(item, "_vc_harness_error", False))
            if not retry:
                break
            log(f"{item.nodeid}: harness error, trying again ({outcome.message.splitlines()[0]})")
        outcome.duration = round(time.monotonic() - start, 3)
        self.outcomes.append(outcome)
        target = self._target(item)
        log(f"{outcome.verdict.value:5} {item.nodeid}")
        if outcome.verdict in (Verdict.FAIL, Verdict.ERROR) and outcome.message:
            log(f"      {outcome.message.strip().splitlines()[0][:200]}")
        for report in reports:
            report.user_properties.append(("vc_verdict", outcome.verdict.value))
            item.ihook.pytest_runtest_logreport(report=report)
        if na:
            self._log_na(item, na)
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        if target is not None:
            # Close guests as soon as nothing left needs them (idle guests cost CPU).
            for key in (target.transport, target.id):
                self._remaining[key] -= 1
            if self._remaining[target.transport] == 0:
                self.engine.close_guest(target.transport)
            elif self._remaining[target.id] == 0:
                self.engine.close_guest(target.transport, target.profile.name)
        return True

    def _log_na(self, item, reason: str) -> None:
        from _pytest.reports import TestReport

        for when in ("setup", "teardown"):
            longrepr = (str(item.fspath), 0, f"NA: {reason}") if when == "setup" else None
            rep = TestReport(item.nodeid, item.location, {},
                             "skipped" if when == "setup" else "passed", longrepr, when, [], 0.0)
            item.ihook.pytest_runtest_logreport(report=rep)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_pyfunc_call(self, pyfuncitem):
        outcome = yield
        judge: Judge | None = getattr(pyfuncitem, "_vc_judge", None)
        if outcome.excinfo is None and judge is not None and judge.broken(Verdict.FAIL):
            outcome.force_exception(ClauseViolation(judge.failure_text()))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = (yield).get_result()
        if call.excinfo is not None:
            item._vc_excinfo[call.when] = (call.excinfo, report)
            if isinstance(call.excinfo.value, NotApplicable):
                # pytest's own tally should say skipped, not failed, for an NA check.
                report.outcome = "skipped"
                report.longrepr = (str(item.fspath), 0, f"NA: {call.excinfo.value.reason}")
        if call.when == "call" and getattr(item, "_vc_judge", None) is not None:
            warn = item._vc_judge.broken(Verdict.WARN)
            if warn:
                report.sections.append(("virtio-conformance warnings",
                                        item._vc_judge.failure_text()))

    def _outcome_from_run(self, item, attempt: int) -> CheckOutcome:
        judge: Judge | None = getattr(item, "_vc_judge", None)
        judgments = list(judge.judgments) if judge else []
        if judge is not None:
            # A clause the check left alone because it does not apply here is NA, not
            # UNTESTED: the catalog said so before the check ran.
            judged = {j.clause for j in judgments}
            for clause, reason in judge.not_applicable.items():
                if clause not in judged:
                    judgments.append(Judgment(clause, Verdict.NA, what=reason,
                                              level=judge.levels.get(clause, "")))
        item._vc_harness_error = False
        for when in ("setup", "call", "teardown"):
            if when not in item._vc_excinfo:
                continue
            excinfo, _report = item._vc_excinfo[when]
            exc = excinfo.value
            if isinstance(exc, NotApplicable):
                return self._outcome(item, Verdict.NA, exc.reason, judgments, attempt)
            if isinstance(exc, pytest.skip.Exception):
                return self._outcome(item, Verdict.NA, str(exc), judgments, attempt)
            if isinstance(exc, HarnessError):
                # Worth one more try only if it may pass (guest died, SSH dropped); not
                # when a probe reported it cannot observe, nor when preparation failed.
                item._vc_harness_error = exc.transient and exc is not self.prepare_error
                return self._outcome(item, Verdict.ERROR, f"{type(exc).__name__}: {exc}",
                                     judgments, attempt)
            if isinstance(exc, ClauseViolation):
                return self._outcome(item, Verdict.FAIL, str(exc), judgments, attempt)
            if isinstance(exc, AssertionError) and when == "call":
                # A plain assert in a check breaks every clause it names but did not judge.
                judged = {j.clause for j in judgments}
                text = str(exc) or "assertion failed"
                for c in self._clauses(item):
                    if c not in judged:
                        level = self._catalog().get(c).level
                        judgments.append(Judgment(c, broken_verdict(level), what=text,
                                                  level=level))
                verdict = (Verdict.FAIL if any(j.verdict == Verdict.FAIL for j in judgments)
                           else Verdict.WARN)
                return self._outcome(item, verdict, text, judgments, attempt)
            # Anything else is a bug in the check or the harness: never a finding.
            tb = "".join(traceback.format_exception(exc)[-6:])
            return self._outcome(item, Verdict.ERROR, f"check crashed: {tb}", judgments, attempt)
        if judgments:
            verdicts = {j.verdict for j in judgments}
            for v in (Verdict.FAIL, Verdict.WARN, Verdict.PASS):
                if v in verdicts:
                    return self._outcome(item, v, judge.failure_text() if judge else "",
                                         judgments, attempt)
            return self._outcome(item, Verdict.NA, "; ".join(j.what for j in judgments),
                                 judgments, attempt)
        # A check that asserted plainly and passed: every clause it names passed.
        judgments = [Judgment(c, Verdict.PASS, what="check passed",
                              level=self._catalog().get(c).level) for c in self._clauses(item)]
        return self._outcome(item, Verdict.PASS, "", judgments, attempt)

    def _outcome(self, item, verdict: Verdict, message: str, judgments, attempt) -> CheckOutcome:
        target = self._target(item)
        artifacts = list(self.check_artifacts.get(item.nodeid, []))
        qemu_command = ""
        if target is not None:
            guest = self.engine.guest_of(target)
            if guest is not None:
                artifacts += [a for a in self.engine.guest_artifacts(guest) if a not in artifacts]
                qemu_command = guest.reproducer()
        if verdict in (Verdict.FAIL, Verdict.WARN, Verdict.ERROR) and message:
            path = self.check_artifact_dir(item) / "outcome.txt"
            path.write_text(f"{verdict.value}: {item.nodeid}\n\n{message}\n")
            rel = str(path.relative_to(self.engine.output))
            if rel not in artifacts:
                artifacts.append(rel)
        self.check_artifacts[item.nodeid] = artifacts
        return CheckOutcome(
            nodeid=item.nodeid,
            device=target.profile.name if target else "",
            transport=target.transport if target else "",
            clauses=self._clauses(item), verdict=verdict, judgments=judgments,
            message=message, attempt=attempt, artifacts=artifacts,
            reproducer=self._reproducer(item, target), qemu_command=qemu_command)

    @staticmethod
    def _reproducer(item, target: Target | None) -> str:
        check = item.nodeid.split("[")[0].rsplit("/", 1)[-1]
        parts = ["virtio-conformance", "run"]
        if target is not None:
            profile = target.profile.name
            if target.profile.path.parent.name != "profiles" or "fixtures" not in str(
                    target.profile.path):
                profile = str(target.profile.path)
            parts += ["--profile", profile, "--transport", target.transport]
        parts += ["--check", check]
        return shlex.join(parts)

    # ---- the end: clean up, roll up, write everything
    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        from .machine.processes import reap_survivors

        self.engine.close()
        if self.config_error is not None:
            return
        survivors = reap_survivors()
        for pid, cmd in survivors:
            self.engine.infra_errors.append(f"process survived the run and was killed: "
                                            f"pid {pid}: {cmd[:200]}")
        self.finish()

    def finish(self) -> None:
        from .reports import exit_code_for_run, summary_table, write_all

        assert self.catalog is not None
        levels = {o_clause: self._catalog().get(o_clause).level
                  for o in self.outcomes for o_clause in o.clauses}
        for o in self.outcomes:
            for j in o.judgments:
                levels.setdefault(j.clause, j.level)
        results = RunResults(environment=self.engine.environment(),
                             results=rollup(self.outcomes, levels), checks=self.outcomes)
        waivers_file = self.config.getoption("--vc-waivers")
        if waivers_file:
            import datetime as _dt

            from .waivers import apply_waivers, load_waivers

            results = apply_waivers(results, load_waivers(Path(waivers_file), self.catalog),
                                    _dt.date.today())
        if self.record is not None:
            self.record.save(Path(self.config.getoption("--vc-record")))
        self.engine.write_artifact_index(self.check_artifacts)
        strict = self.config.getoption("--vc-strict")
        write_all(results, self.engine.output, catalog=self.catalog, strict=strict)
        self.engine.link_latest()
        self.results = results
        self.exit_code = exit_code_for_run(results, strict=strict)
        log("summary:\n" + summary_table(results, strict=strict))
        log(f"reports written to {self.engine.output}")
