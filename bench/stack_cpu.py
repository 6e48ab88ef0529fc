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

__all__ = ["cpu_snapshot", "cpu_table", "processor_metric", "processor_ports", "workers_metric"]

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _tree(pid: int) -> list[int]:
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:
            continue  # a thread that ended while we read
        for child in children:
            out.extend(_tree(int(child)))
    return out


def _workers(home: Path) -> list[str]:
    """The processor workers' component names (``processor``, ``processor-2``, ...)."""
    run = Home(home).pidfile("processor").parent
    return ["processor", *sorted(p.stem for p in run.glob("processor-*.pid"))]


def cpu_snapshot(home: Path) -> dict[str, float]:
    """Seconds of CPU so far, by component (``kafka``, ``processor`` — every worker —, ``sink``, ``bench``)."""
    snap = {"bench": _cpu_s(os.getpid())}
    for name in ("kafka", *_workers(home), "sink"):
        pidfile = Home(home).pidfile(name)
        try:
            pid = int(pidfile.read_text().split()[0])
            spent = sum(_cpu_s(p) for p in _tree(pid))
        except (OSError, ValueError):
            continue
        key = "processor" if name.startswith("processor") else name
        snap[key] = snap.get(key, 0.0) + spent
    return snap


def processor_ports(home: Path, first_port: int) -> list[int]:
    """The HTTP ports of every processor worker (the first's from the settings, the others' from
    their ``run/<name>.port`` files)."""
    ports = [first_port]
    for name in _workers(home)[1:]:
        try:
            ports.append(int((Home(home).pidfile(name).with_suffix(".port")).read_text().strip()))
        except (OSError, ValueError):
            continue
    return ports


def workers_metric(home: Path, first_port: int, name: str) -> float:
    """A Prometheus counter summed over every processor worker."""
    return sum(processor_metric(port, name) for port in processor_ports(home, first_port))


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
