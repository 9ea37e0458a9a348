"""The ``virtio-conformance`` command.  See README.md and INTERFACES for the contract.

Machine-readable output (``--json``, ``--format json``) goes to stdout alone; progress
and logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import ConformanceError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _checks_rootdir() -> Path:
    from . import checks

    return Path(checks.__file__).resolve().parent.parent.parent


class _Capture:
    """Picks the run's exit code off the conformance plugin before pytest unconfigures."""

    def __init__(self):
        self.exit_code: int | None = None
        self.usage_error = False

    def pytest_unconfigure(self, config):
        plugin = config.pluginmanager.get_plugin("virtio-conformance-run")
        if plugin is not None:
            self.exit_code = plugin.exit_code


def cmd_run(args) -> int:
    import pytest

    from .machine.processes import install_signal_handlers

    install_signal_handlers()
    # Our own progress lines and summary say what happened; pytest's tracebacks would
    # only repeat it (every message is in the reports and artifacts).
    pytest_args = ["--vc", "-p", "no:cacheprovider", "-q", "-rN", "--tb=no", "--no-header",
                   "--rootdir", str(_checks_rootdir()), "-c", str(_empty_ini()),
                   "--pyargs", "conformance.checks"]
    for p in args.profile:
        pytest_args += ["--vc-profile", p]
    for t in args.transport:
        pytest_args += ["--vc-transport", t]
    for c in args.clause:
        pytest_args += ["--vc-clause", c]
    for c in args.check:
        pytest_args += ["--vc-check", c]
    if args.output:
        pytest_args += ["--vc-output", str(args.output)]
    if args.waivers:
        if not Path(args.waivers).is_file():
            print(f"virtio-conformance: waivers file {args.waivers} does not exist",
                  file=sys.stderr)
            return EXIT_USAGE
        pytest_args += ["--vc-waivers", str(args.waivers)]
    if args.strict:
        pytest_args.append("--vc-strict")
    pytest_args += args.pytest_args
    capture = _Capture()
    code = pytest.main(pytest_args, plugins=[capture])
    if code == pytest.ExitCode.INTERRUPTED:
        return EXIT_INTERRUPTED
    if code == pytest.ExitCode.USAGE_ERROR:
        return EXIT_USAGE
    if capture.exit_code is None:
        # pytest stopped before our plugin could judge anything (e.g. internal error).
        return 3 if code == pytest.ExitCode.INTERNAL_ERROR else EXIT_USAGE
    return capture.exit_code


def _empty_ini() -> Path:
    """A pytest config of our own, so a user's pytest.ini/pyproject cannot change the run."""
    import tempfile

    path = Path(tempfile.gettempdir()) / "virtio-conformance-pytest.ini"
    if not path.exists():
        path.write_text("[pytest]\naddopts =\n")
    return path


def cmd_bench(args) -> int:
    from .bench import run_bench

    rows = run_bench(runs=args.runs, variants=args.transport or None)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{'machine':8} {'variant':17} {'stage':6} {'runs':>4} {'min':>7} "
              f"{'median':>7} {'max':>7}")
        for r in rows:
            print(f"{r['machine']:8} {r['variant']:17} {r['stage']:6} {r['runs']:>4} "
                  f"{r['min']:>7.2f} {r['median']:>7.2f} {r['max']:>7.2f}")
    return 0


def cmd_clauses(args) -> int:
    from .clauses_cli import run

    return run(args)


def cmd_report(args) -> int:
    from .catalog import load_catalog
    from .reports import read_results, write_all

    directory = Path(args.dir)
    results = read_results(directory)
    write_all(results, directory, catalog=load_catalog())
    print(f"re-rendered reports in {directory}", file=sys.stderr)
    return 0


def cmd_compare(args) -> int:
    from .reports import read_results
    from .reports.compare import compare, exit_code, render_text

    comparison = compare(read_results(Path(args.old)), read_results(Path(args.new)))
    if args.json:
        print(json.dumps(comparison.to_json(), indent=1))
    else:
        print(render_text(comparison))
    return exit_code(comparison)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="virtio-conformance",
        description="Judge virtio devices clause by clause in real QEMU guests.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the conformance checks")
    run.add_argument("--profile", action="append", default=[], metavar="P",
                     help="device profile name or path (repeatable; default: all shipped)")
    run.add_argument("--transport", action="append", default=[], metavar="T",
                     help="mmio, mmio-legacy, pci, pci-transitional (repeatable; default: all)")
    run.add_argument("--clause", action="append", default=[], metavar="ID",
                     help="only the checks that judge this catalog clause (repeatable)")
    run.add_argument("--check", action="append", default=[], metavar="NAME",
                     help="only this check (function name or module.py::function)")
    run.add_argument("--output", type=Path, default=None, metavar="DIR",
                     help="result directory (default reports/<run-id>, linked as reports/latest)")
    run.add_argument("--waivers", default=None, metavar="FILE", help="waivers file (TOML)")
    run.add_argument("--strict", action="store_true", help="WARN verdicts fail the gate too")
    run.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    run.set_defaults(func=cmd_run)

    bench = sub.add_parser("bench", help="measure boot-to-ready per machine variant")
    bench.add_argument("--runs", type=int, default=5)
    bench.add_argument("--transport", action="append", default=[], metavar="T")
    bench.add_argument("--json", action="store_true", help="JSON on stdout")
    bench.set_defaults(func=cmd_bench)

    clauses = sub.add_parser("clauses", help="list the clause catalog, coverage, or sync it")
    from .clauses_cli import add_arguments

    add_arguments(clauses)
    clauses.set_defaults(func=cmd_clauses)

    report = sub.add_parser("report", help="re-render reports from DIR/results.json")
    report.add_argument("dir")
    report.set_defaults(func=cmd_report)

    comp = sub.add_parser("compare", help="clause-level diff of two results.json files")
    comp.add_argument("old")
    comp.add_argument("new")
    comp.add_argument("--json", action="store_true")
    comp.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: 0 for --help, 2 for usage errors
        return int(e.code or 0)
    try:
        return int(args.func(args))
    except ConformanceError as e:
        print(f"virtio-conformance: {e}", file=sys.stderr)
        return EXIT_USAGE if type(e).__name__ == "ConfigError" else 3
    except KeyboardInterrupt:
        print("virtio-conformance: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
