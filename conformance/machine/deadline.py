"""Deadlines: every wait in the harness has one, and a missed one names its stage."""

from __future__ import annotations

import time


class Deadline:
    def __init__(self, stage: str, seconds: float):
        self.stage = stage
        self.seconds = seconds
        self.start = time.monotonic()
        self.end = self.start + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def elapsed(self) -> float:
        return time.monotonic() - self.start
