"""Logging to stderr (never stdout) and optionally to a file named in the config.

A tiny logger instead of :mod:`logging`: the plugin is a new process per pod
and every import counts.
"""

from __future__ import annotations

import os
import time
from typing import TextIO

LEVELS = {"error": 0, "info": 1, "debug": 2}


class Log:
    def __init__(self, stream: TextIO | None, level: str = "info", prefix: str = "cni-render"):
        self.stream = stream
        self.level = LEVELS.get(level, 1)
        self.prefix = prefix
        self.file: str | None = None
        self.lines: list[str] = []

    def configure(self, level: str | None, file: str | None) -> None:
        if level:
            self.level = LEVELS.get(level, self.level)
        self.file = file

    def _write(self, level: str, message: str) -> None:
        if LEVELS[level] > self.level:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        line = f"{stamp} {self.prefix}[{os.getpid()}] {level}: {message}"
        self.lines.append(line)
        if self.stream is not None:
            self.stream.write(line + "\n")
            self.stream.flush()
        if self.file:
            try:
                with open(self.file, "a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
            except OSError:
                self.file = None

    def error(self, message: str) -> None:
        self._write("error", message)

    def info(self, message: str) -> None:
        self._write("info", message)

    def debug(self, message: str) -> None:
        self._write("debug", message)
