"""CPU time of the local stack's processes (and this one), for CPU-per-action figures.

Reads ``/proc/<pid>/stat`` (utime + stime) of each component named by its pid file under
``LOCKGATE_HOME/run`` plus its children (the processor's supervisor runs the Faust worker
as a child), so a benchmark can print the CPU each component spent between two snapshots.
"""

from __future__ import annotations

import os
import re
import urllib.request
from pathlib import Path

from lockgate.kernel.home import Home

__all__ = ["cpu_snapshot", "cpu_table", "processor_metric"]

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _tree(pid: int) -> list[int]:
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            out.extend(_tree(int(child)))
    return out


def cpu_snapshot(home: Path) -> dict[str, float]:
    """Seconds of CPU so far, by component (``kafka``, ``processor``, ``sink``, ``bench``)."""
    snap = {"bench": _cpu_s(os.getpid())}
    for name in ("kafka", "processor", "sink"):
        pidfile = Home(home).pidfile(name)
        try:
            pid = int(pidfile.read_text().split()[0])
            snap[name] = sum(_cpu_s(p) for p in _tree(pid))
        except (OSError, ValueError):
            continue
    return snap


def cpu_table(before: dict[str, float], after: dict[str, float], actions: int) -> str:
    """One line per component: CPU seconds spent and microseconds per action."""
    lines = []
    for name in ("processor", "kafka", "sink", "bench"):
        if name in before and name in after:
            spent = after[name] - before[name]
            lines.append(f"  {name:<10} {spent:7.2f} s CPU  {spent / max(actions, 1) * 1e6:8.0f} µs/action")
    return "\n".join(lines)


def processor_metric(port: int, name: str) -> float:
    """The sum of a Prometheus counter on the processor's ``/metrics`` (0 if absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M):
        total += float(m.group(1))
    return total
