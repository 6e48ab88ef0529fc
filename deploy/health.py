"""What ``lockgate status`` says about a running component beyond "its process lives".

The processor (``/healthz/consumer``) and the sink (``/healthz``) report their consumer
group's ``state`` (see ``lockgate.kernel.consumer_health``): ``consuming``, ``idle``, ``stalled``
(up but not consuming) or ``unknown``. :func:`describe` turns that into the status line.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

__all__ = ["consumer_health", "describe"]


def consumer_health(url: str, timeout_s: float = 2.0) -> dict[str, Any]:
    """The component's health JSON, or ``{"state": "not answering", ...}``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - loopback
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 503: answering, but unhealthy
        try:
            body = json.loads(exc.read())
        except ValueError:
            return {"state": "not answering", "reason": f"HTTP {exc.code} from {url}"}
    except (OSError, ValueError) as exc:
        return {"state": "not answering", "reason": f"{url}: {exc}"}
    return body if isinstance(body, dict) else {"state": "not answering", "reason": f"{url}: not JSON"}


def describe(running: bool, pid: int | None, health: dict[str, Any] | None) -> str:
    """One status line: ``running (pid 7), consuming``, ``stopped``, ``UP BUT NOT CONSUMING (pid 7): …``."""
    if not running:
        return "stopped"
    h = health or {}
    state = h.get("state")
    if state == "stalled":
        parts = [f"lag {h['lag']}" if h.get("lag") is not None else None,
                 f"no commit for {h['seconds_since_progress']:.0f}s" if h.get("seconds_since_progress") else None,
                 h.get("reason")]
        return f"UP BUT NOT CONSUMING (pid {pid}): " + "; ".join(p for p in parts if p)
    if state == "not answering":
        return f"running (pid {pid}), health not answering: {h.get('reason')}"
    if state in ("consuming", "idle", "unknown"):
        return f"running (pid {pid}), {state}"
    return f"running (pid {pid})"
