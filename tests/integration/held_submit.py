"""``lockgate submit --wait-review --json`` as a process a test holds while a review waits.

A held submit is the requester's side of a review: the CLI proposes a production DELETE
that a review rule matches, prints nothing until the review is decided (or expires), then
prints the final verdict as JSON and exits 0 (allow), 1 (block or denial) or 2. Tests start
it through the ``submit_held`` fixture, which kills whatever is still waiting at teardown,
so a failing test leaves no submit process behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.integration.conftest import ProcessorHandle

PROD_DELETE = "DELETE FROM customers WHERE id = 7"
"""What the example policy's ``prod-customer-delete-review`` rule holds on ``db/prod/customers``."""


@dataclass(frozen=True)
class SubmitResult:
    """How a held submit ended: its exit code, the ``--json`` verdict it printed, its stderr."""

    returncode: int
    verdict: dict[str, Any]
    stderr: str


class HeldSubmit:
    """One waiting ``lockgate submit`` process: ``actor``'s proposal through ``processor``'s topics."""

    def __init__(self, proc: subprocess.Popen[str], processor: ProcessorHandle, actor: str,
                 justification: str | None) -> None:
        self.proc = proc
        self.processor = processor
        self.actor = actor
        self.justification = justification

    def waiting(self) -> bool:
        """True while the process has not exited: nobody has answered it yet."""
        return self.proc.poll() is None

    def wait_result(self, timeout_s: float) -> SubmitResult:
        """Wait up to ``timeout_s`` for the process to exit and parse what it printed; on a
        timeout, fail with what the processor said about reviews meanwhile (its warnings)."""
        try:
            stdout, stderr = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.actor}'s submit ({self.justification!r}) still waits after {timeout_s}s; "
                                 f"the processor's review lines and warnings:\n{self._processor_story()}") from None
        try:
            verdict = json.loads(stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"submit exited {self.proc.returncode} without a JSON verdict; "
                                 f"stdout: {stdout!r}; stderr: {stderr}") from exc
        if not isinstance(verdict, dict):
            raise AssertionError(f"submit printed {verdict!r}, not a verdict object; stderr: {stderr}")
        return SubmitResult(self.proc.returncode, verdict, stderr)

    def _processor_story(self, lines: int = 60) -> str:
        try:
            text = self.processor.log.read_text(errors="replace")
        except OSError as exc:
            return f"(no processor log: {exc})"
        told = [ln for ln in text.splitlines() if "reviews[" in ln or "[WARNING]" in ln or "[ERROR]" in ln
                or "Joined group" in ln]
        return "\n".join(told[-lines:])

    def pending_review(self, timeout_s: float) -> dict[str, Any]:
        """This submit's row in ``lockgate reviews list --json`` (its requester and justification),
        once the review is open; fails at once if the submit exits first (its action was not held)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.waiting():
                ended = self.wait_result(10)
                raise AssertionError(f"submit exited {ended.returncode} before its review was listed: "
                                     f"{ended.verdict}; stderr: {ended.stderr}")
            res = self.processor.cli("reviews", "list", "--json")
            assert res.returncode == 0, res.stderr
            row = next((r for r in json.loads(res.stdout) if r["requester"] == self.actor
                        and self.justification in (None, r["justification"])), None)
            if row is not None:
                return dict(row)
            time.sleep(0.2)
        raise AssertionError(f"{self.actor}'s review ({self.justification!r}) not listed within {timeout_s}s")

    def kill(self) -> None:
        """SIGKILL the process if it still waits, and reap it."""
        if self.waiting():
            self.proc.kill()
            self.proc.wait(10)


class HeldSubmits:
    """Starts held submits and remembers them, so that :meth:`kill_waiting` can end them all."""

    def __init__(self) -> None:
        self.started: list[HeldSubmit] = []

    def __call__(self, processor: ProcessorHandle, *, actor: str, wait_review_s: int, sql: str = PROD_DELETE,
                 justification: str | None = None) -> HeldSubmit:
        """``actor`` proposes ``sql`` as a ``db.query`` on ``db/prod/customers`` through ``processor``'s
        topics and waits up to ``wait_review_s`` for the review to be decided."""
        args = ["submit", "--actor", actor, "--type", "db.query", "--resource", "db/prod/customers", "--sql", sql]
        if justification is not None:
            args += ["--justification", justification]
        args += ["--wait-review", str(wait_review_s), "--json"]
        proc = subprocess.Popen([sys.executable, "-m", "lockgate.cli", *args], env=processor.cli_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        held = HeldSubmit(proc, processor, actor, justification)
        self.started.append(held)
        return held

    def kill_waiting(self) -> None:
        for held in self.started:
            held.kill()
