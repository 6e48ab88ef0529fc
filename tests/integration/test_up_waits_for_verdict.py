"""``lockgate up`` returns when the processor decides, not when its web server answers.

Faust serves ``/healthz`` before the worker holds its partitions; ``up`` used to report the
stack healthy ~26 s before the first verdict could be served. Right after ``up`` returns, a
Guard's very first proposal must get a verdict, and ``status`` must see the processor's
consumer at work.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from deploy.settings import StackSettings
from deploy.stack import Stack
from lockgate.cli.probe import await_first_verdict
from producers import Action, Actor, Guard, GuardSettings
from tests.conftest import free_port
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration


def test_up_returns_only_once_a_probe_action_got_a_verdict(tmp_path: Path) -> None:
    settings = StackSettings(home=tmp_path / "home", kafka_port=free_port(), controller_port=free_port(),
                             api_port=free_port(), processor_port=free_port(),
                             topic_prefix=f"up{uuid.uuid4().hex[:6]}.", kafka_heap="512m", start_sink=False)
    said: list[str] = []
    stack = Stack(settings, progress=said.append, probe=await_first_verdict)
    try:
        report = stack.up()
        assert "processor" in report.started
        assert any(line.startswith("processor answered a probe action in") for line in said), said

        guard_settings = GuardSettings(bootstrap_servers=settings.bootstrap, topic_prefix=settings.topic_prefix,
                                       home=settings.home, timeout_s=5.0)
        with Guard(guard_settings) as guard:  # first try, no retries
            verdict = guard.check(Action(Actor("alice"), "db.query", "db/prod/orders"))
        assert verdict.decision in ("allow", "block")

        def processor_health() -> Any:
            return next(c for c in stack.status()["components"] if c["name"] == "processor")["health"]

        # "unknown" until its lag probe's first reading; then it sees the consumer at work.
        wait_for(lambda: processor_health()["state"] in ("consuming", "idle"), 30, "processor health")
    finally:
        stack.down()
