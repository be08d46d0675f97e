"""What one CNI call produces: an exit code and the one JSON document for stdout."""

from __future__ import annotations


class Outcome:
    __slots__ = ("exit_code", "stdout")

    def __init__(self, exit_code: int, stdout: str):
        self.exit_code = exit_code
        self.stdout = stdout

    def __repr__(self) -> str:
        return f"Outcome({self.exit_code}, {self.stdout!r})"
