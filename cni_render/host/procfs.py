"""What processes cost, read from /proc: for the daemon's memory report and
the benchmarks. Reads only."""

from __future__ import annotations


def memory_pss_kib(pids: list[int]) -> int:
    """Proportional set size of these processes together, in KiB (a process
    that is gone or unreadable counts 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                total += sum(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
        except (OSError, ValueError, IndexError):
            continue
    return total
