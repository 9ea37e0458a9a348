"""Error types, split the way verdicts are.

A *finding* (the device broke a clause) is never raised as one of these: checks record
it through the judge.  Everything here means the harness could not do its job, and each
maps to a verdict that is not PASS or FAIL.
"""

from __future__ import annotations


class ConformanceError(Exception):
    """Base class; ``str()`` is a message a user can act on."""


class ConfigError(ConformanceError):
    """Bad input: a malformed profile, unknown clause, missing binary. Nothing ran (exit 2)."""


class CacheDirError(ConfigError):
    """The cache directory cannot be used: configuration, so nothing runs (exit 2)."""


class HarnessError(ConformanceError):
    """The harness could not reach or observe the device: verdict ERROR, never FAIL."""

    stage = "harness"
    # Worth another attempt (a guest that died, an SSH connection that dropped), as
    # opposed to a probe that ran and reported it cannot observe this device.
    transient = False


class MachineError(HarnessError):
    """QEMU failed to start, exited, stopped, or the guest panicked."""

    stage = "machine"
    transient = True

    def __init__(self, message: str, *, command: list[str] | None = None,
                 exitcode: int | None = None, output: str = "", artifacts: dict | None = None):
        super().__init__(message)
        self.command = command
        self.exitcode = exitcode
        self.output = output
        self.artifacts = artifacts or {}


class DeadlineExceeded(MachineError):
    """A named boot stage (process, qmp, kernel, init, ssh) missed its deadline."""

    stage = "deadline"


class GuestCommandError(HarnessError):
    """A command in the guest could not be run (SSH down) or crashed (probe traceback)."""

    stage = "guest"

    def __init__(self, message: str, *, command: str = "", exitcode: int | None = None,
                 stdout: str = "", stderr: str = "", transient: bool = False):
        super().__init__(message)
        self.transient = transient
        self.command = command
        self.exitcode = exitcode
        self.stdout = stdout
        self.stderr = stderr


class ImageBuildError(HarnessError):
    """The guest image could not be built (package not fetchable, read-only cache...)."""

    stage = "image"


class NotApplicable(Exception):
    """Raised by a check (or the harness) when a clause does not apply: verdict NA."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
