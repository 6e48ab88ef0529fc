"""``lockgate up`` is done when the processor answers, not when its web server does.

Faust serves ``/healthz`` before the worker has its partitions and has recovered its tables;
a Guard asking in that window times out. :func:`await_first_verdict` sends a probe action
through a real Guard (the ``cli`` identity ``up`` registers) until a signed verdict comes
back. The probe is an ordinary, recorded action of its own tenant (``lockgate-probe``), so it
never shows in another tenant's audit trail; with no policy for that tenant the verdict is a
block (``no_policy``), which is as good an answer as any.
"""

from __future__ import annotations

import time

from deploy.errors import ProcessFailed
from deploy.settings import StackSettings
from producers import Action, Actor, Guard, GuardSettings, GuardUnavailable, VerdictTimeout

__all__ = ["PROBE_TENANT", "await_first_verdict"]

PROBE_TENANT = "lockgate-probe"


def await_first_verdict(settings: StackSettings, timeout_s: float | None = None) -> float:
    """Block until a probe action gets a verdict; return the seconds it took."""
    budget = settings.start_timeout_s if timeout_s is None else timeout_s
    started = time.monotonic()
    deadline = started + budget
    guard_settings = GuardSettings(bootstrap_servers=settings.bootstrap, topic_prefix=settings.topic_prefix,
                                   home=settings.home, service="cli", tenant=PROBE_TENANT, timeout_s=3.0)
    probe = Action(Actor("lockgate-up"), "lockgate.probe", "lockgate/probe")
    last: Exception | None = None
    with Guard(guard_settings) as guard:
        while time.monotonic() < deadline:
            try:
                guard.check(probe, timeout_s=max(0.5, min(3.0, deadline - time.monotonic())))
                return time.monotonic() - started
            except (VerdictTimeout, GuardUnavailable) as exc:
                last = exc
    log = settings.paths.logfile("processor")
    raise ProcessFailed(f"the processor answered no probe action within {budget:.0f}s ({last}); see {log}")
