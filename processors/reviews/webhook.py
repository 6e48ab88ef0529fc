"""Review webhooks: a generic JSON POST to each configured URL, signed with an HMAC.

Body: the event as JSON (``event`` is ``review.requested``, ``review.approved``,
``review.denied``, ``review.expired``, ``break_glass``, ``post_hoc.approved`` or
``post_hoc.denied``; the rest is the review's summary, :meth:`trust.reviews.Review.summary`),
UTF-8, keys sorted. Headers:

``X-Lockgate-Event``       the event name
``X-Lockgate-Timestamp``   seconds since the epoch when it was sent
``X-Lockgate-Signature``   ``sha256=`` + hex HMAC-SHA256 over ``TIMESTAMP.BODY`` with the
                           shared secret (``LOCKGATE_REVIEW_WEBHOOK_SECRET``)

A receiver recomputes the HMAC (:func:`signature`) and refuses old timestamps. Delivery
is off the decision path: a background thread posts with a short timeout and retries a
few times; a receiver that stays down loses notifications, never decisions (the reviews
topic and the ledger are the record).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

__all__ = ["Webhooks", "signature"]

log = logging.getLogger("lockgate.reviews.webhook")

_ATTEMPTS = 3


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Lockgate-Signature`` value for ``body`` sent at ``timestamp``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class Webhooks:
    """Posts events to ``urls`` from one daemon thread. ``send`` never blocks."""

    def __init__(self, urls: Sequence[str], secret: str, timeout_s: float = 3.0) -> None:
        self.urls = [u for u in urls if u]
        self.secret = secret.encode()
        self.timeout_s = timeout_s
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=10_000)
        self._thread: threading.Thread | None = None

    @classmethod
    def from_setting(cls, urls: str, secret: str) -> Webhooks:
        """From ``LOCKGATE_REVIEW_WEBHOOKS`` (comma-separated URLs) and the secret."""
        return cls([u.strip() for u in urls.split(",") if u.strip()], secret)

    def start(self) -> None:
        if self.urls and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lockgate-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(5)
            self._thread = None

    def send(self, event: dict[str, Any]) -> None:
        if not self.urls:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.failed += 1
            log.warning("webhook queue full; dropped %s", event.get("event"))

    def post(self, url: str, event: dict[str, Any]) -> int:
        """POST one event to one URL now; the HTTP status (raises on a network error)."""
        body = json.dumps(event, sort_keys=True, separators=(",", ":"), default=str).encode()
        stamp = str(int(time.time()))
        request = urllib.request.Request(url, data=body, method="POST", headers={  # noqa: S310 - checked below
            "Content-Type": "application/json", "X-Lockgate-Event": str(event.get("event", "")),
            "X-Lockgate-Timestamp": stamp, "X-Lockgate-Signature": signature(self.secret, stamp, body)})
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL {url!r} is not http(s)")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - checked above
            return int(response.status)

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            for url in self.urls:
                for attempt in range(1, _ATTEMPTS + 1):
                    try:
                        self.post(url, event)
                        self.sent += 1
                        break
                    except Exception as exc:  # a receiver's trouble never reaches the decision path
                        if attempt == _ATTEMPTS:
                            self.failed += 1
                            log.warning("webhook %s failed for %s: %s", url, event.get("event"), exc)
                        else:
                            time.sleep(0.2 * attempt)
