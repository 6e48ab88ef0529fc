"""Every listener binds only where documented: loopback, on the ports the settings name.

Read from the kernel (``/proc/<pid>/fd`` and ``/proc/<pid>/net/tcp{,6}``), not from what the
components say about themselves: Faust, for one, binds ``0.0.0.0`` unless told otherwise,
whatever ``web_host`` says.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

import pytest

from deploy.stack import Stack
from tests.integration.conftest import ProcessorHandle
from tests.integration.sink_process import start_sink

pytestmark = pytest.mark.integration


def _address(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    # The kernel prints each 32-bit word in host (little-endian) order.
    packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(packed))


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the processor is a supervisor whose worker child listens)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except FileNotFoundError:
            continue  # exited meanwhile
        for task in tasks:
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except FileNotFoundError:
                continue  # a thread that ended while we read (the sink's threads come and go)
    return out


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that process ``pid`` or a
    descendant of it holds."""
    inodes = set()
    for p in _tree(pid):
        for fd in Path(f"/proc/{p}/fd").iterdir():
            try:
                match = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
            except OSError:
                continue
            if match:
                inodes.add(match.group(1))
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:
                host, port = local.split(":")
                found.add((_address(host), int(port, 16)))
    return found


def _loopback(host: str) -> bool:
    ip = ipaddress.ip_address(host)
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None  # Java's ::ffff:127.0.0.1
    return (mapped or ip).is_loopback


def _only_loopback(what: str, sockets: set[tuple[str, int]]) -> None:
    exposed = {(h, p) for h, p in sockets if not _loopback(h)}
    assert not exposed, f"{what} listens beyond loopback: {sorted(exposed)}"


def test_processor_sink_and_broker_listen_on_loopback_only(
        processor: ProcessorHandle, kafka_stack: Stack, tmp_path: Path) -> None:
    proc_sockets = listening(processor.proc.pid)
    _only_loopback("the processor", proc_sockets)
    assert ("127.0.0.1", processor.port) in proc_sockets, proc_sockets

    sink = start_sink(processor.bootstrap, processor.topics.prefix, processor.home, tmp_path)
    try:
        sink_sockets = listening(sink.proc.pid)
        _only_loopback("the sink", sink_sockets)
        assert ("127.0.0.1", int(sink.env["LOCKGATE_SINK_HTTP_PORT"])) in sink_sockets, sink_sockets
    finally:
        sink.stop()

    broker_pid = kafka_stack.broker.process.pid()
    assert broker_pid is not None
    broker_sockets = listening(broker_pid)
    s = kafka_stack.settings
    _only_loopback("the Kafka broker", broker_sockets)
    assert {s.kafka_port, s.controller_port} <= {port for _, port in broker_sockets}, broker_sockets
