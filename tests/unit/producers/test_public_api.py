"""The SDK's public surface is small and explicit; this test fails when it drifts."""

from __future__ import annotations

import producers

EXPECTED = {
    "Action", "ActionBlocked", "Actor", "AsyncGuard", "Guard", "GuardError", "GuardSettings",
    "GuardOverloaded", "GuardUnavailable", "GuardedAction", "MatchedRule", "PendingVerdict", "ReviewPending",
    "SpoolError", "Verdict", "VerdictMisbound", "VerdictRejected",
    "VerdictTimeout",
}


def test_exported_names_are_pinned() -> None:
    assert set(producers.__all__) == EXPECTED


def test_every_exported_name_exists() -> None:
    for name in producers.__all__:
        assert getattr(producers, name) is not None


def test_all_guard_errors_stop_the_body_and_share_a_root() -> None:
    from lockgate.kernel.errors import LockgateError

    for name in ("ActionBlocked", "GuardOverloaded", "GuardUnavailable", "ReviewPending", "VerdictMisbound",
                 "VerdictRejected",
                 "VerdictTimeout"):
        cls = getattr(producers, name)
        assert issubclass(cls, producers.GuardError)
        assert issubclass(cls, LockgateError)


def test_package_ships_py_typed() -> None:
    from importlib import resources

    assert (resources.files("producers") / "py.typed").is_file()
