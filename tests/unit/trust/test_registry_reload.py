"""The one reload core every registry reader shares: a changed file is re-read, a bad one refused.

The adversary edits the registry file under a running process: broken JSON, a group-writable
mode (whoever can write it can register keys), a malformed entry. Each must leave the last good
registry in force, be reported once per refused state of the file, and be forgotten as soon as
a good file is back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from trust.errors import KeyFileUnsafe
from trust.registry import ServiceRegistry
from trust.registry_reload import Refusal, RegistryReloader
from trust.reviewers import ReviewerRegistry


@pytest.fixture
def reviewers(tmp_path: Path) -> ReviewerRegistry:
    registry = ReviewerRegistry(tmp_path)
    registry.add_reviewer("dana", ["dba"])
    return registry


def _refused(reloader: RegistryReloader[ReviewerRegistry]) -> Refusal | None:
    return reloader.refused  # read afresh: mypy keeps an attribute narrowed across check()


def _loaded(reloader: RegistryReloader[ReviewerRegistry]) -> bool:
    return reloader.loaded  # read afresh, as _refused


def _names(registry: ReviewerRegistry) -> list[str]:
    return [r.name for r in registry.reviewers()]


def test_an_unchanged_file_is_not_read_again(reviewers: ReviewerRegistry, tmp_path: Path) -> None:
    reloader = RegistryReloader(ReviewerRegistry(tmp_path), what="reviewer registry")
    assert reloader.check() is None and reloader.reloads == 0 and reloader.refused is None


def test_a_reviewer_added_by_another_process_is_picked_up(reviewers: ReviewerRegistry, tmp_path: Path) -> None:
    reloader = RegistryReloader(ReviewerRegistry(tmp_path), what="reviewer registry")
    reviewers.add_reviewer("nina", ["dba"])
    assert reloader.check() is None and reloader.reloads == 1
    assert _names(reloader.registry) == ["dana", "nina"]
    assert reloader.check() is None and reloader.reloads == 1  # looked, nothing new


def test_bad_json_is_refused_once_per_state_and_the_last_good_registry_stays(
        reviewers: ReviewerRegistry, tmp_path: Path) -> None:
    reloader = RegistryReloader(ReviewerRegistry(tmp_path), what="reviewer registry")
    good = reviewers.path.read_bytes()
    reviewers.path.write_bytes(b'{"dana": [')
    refusal = reloader.check()
    assert refusal is not None and reloader.refused == refusal
    assert refusal.path == reviewers.path and refusal.error.startswith("RegistryError: ")
    assert "not valid JSON" in refusal.error and refusal.evidence == b'{"dana": ['
    assert str(reviewers.path) in refusal.describe() and "last good" in refusal.describe()
    assert refusal.to_json()["file"] == str(reviewers.path) and refusal.to_json()["reason"] == refusal.error
    assert _names(reloader.registry) == ["dana"] and reloader.reloads == 0
    assert reloader.check() is None and reloader.refused == refusal  # same state: reported once, still refused
    os.utime(reviewers.path, ns=(1, 2))  # touched: a new state, a new report
    again = reloader.check()
    assert again is not None and again.state != refusal.state
    reviewers.path.write_bytes(good)
    assert reloader.check() is None and _refused(reloader) is None and reloader.reloads == 1
    assert _names(reloader.registry) == ["dana"]


def test_a_chmod_alone_is_noticed_and_an_unsafe_mode_refused(reviewers: ReviewerRegistry, tmp_path: Path) -> None:
    reloader = RegistryReloader(ReviewerRegistry(tmp_path), what="reviewer registry")
    reviewers.path.chmod(0o620)  # group-writable: same content, same mtime, only the ctime moves
    refusal = reloader.check()
    assert refusal is not None and refusal.error.startswith("KeyFileUnsafe")
    assert _names(reloader.registry) == ["dana"]
    reviewers.path.chmod(0o600)
    assert reloader.check() is None and reloader.refused is None


def test_a_malformed_entry_changes_nothing_of_the_registry(reviewers: ReviewerRegistry, tmp_path: Path) -> None:
    """A file that parses but holds one bad entry is refused whole: no half-applied registry."""
    reloader = RegistryReloader(ReviewerRegistry(tmp_path), what="reviewer registry")
    dana = reloader.registry.get("dana")
    assert dana is not None
    entries = json.loads(reviewers.path.read_text())
    entries["mallory"] = {"groups": ["dba"], "identities": [], "keys": dana.to_json()["keys"]}
    entries["x y"] = entries["dana"]  # a name the registry does not allow
    reviewers.path.write_text(json.dumps(entries))
    refusal = reloader.check()
    assert refusal is not None and "reviewer name 'x y'" in refusal.error
    assert _names(reloader.registry) == ["dana"] and reloader.registry.get("mallory") is None


def test_the_service_registry_shares_the_core(tmp_path: Path) -> None:
    services = ServiceRegistry(tmp_path)
    services.add_service("billing")
    reloader = RegistryReloader(ServiceRegistry(tmp_path), what="service registry")
    services.path.write_text("[]")
    refusal = reloader.check()
    assert refusal is not None and refusal.what == "service registry" and refusal.describe().startswith(
        f"service registry {services.path} was changed")
    assert reloader.registry.services() == ["billing"]


# -- a file refused at start (RegistryReloader.load: readers off the decision path) ---------------


def _loading(tmp_path: Path) -> RegistryReloader[ReviewerRegistry]:
    return RegistryReloader.load(ReviewerRegistry(tmp_path, load=False), what="reviewer registry")


def test_load_of_a_good_file_is_no_reload(reviewers: ReviewerRegistry, tmp_path: Path) -> None:
    reloader = _loading(tmp_path)
    assert _names(reloader.registry) == ["dana"] and reloader.refused is None and reloader.loaded
    assert reloader.reloads == 0 and reloader.check() is None and reloader.reloads == 0


def test_an_unloaded_registry_reads_no_file(reviewers: ReviewerRegistry, tmp_path: Path) -> None:
    reviewers.path.chmod(0o660)
    assert ReviewerRegistry(tmp_path, load=False).reviewers() == []  # no raise: the file is not read
    with pytest.raises(KeyFileUnsafe, match="mode 0660"):
        ReviewerRegistry(tmp_path)  # the constructor the processor uses still refuses


def test_a_group_writable_file_at_start_is_refused_and_admits_nobody_until_fixed(
        reviewers: ReviewerRegistry, tmp_path: Path) -> None:
    dana = reviewers.get("dana")
    assert dana is not None
    reviewers.path.chmod(0o660)
    reloader = _loading(tmp_path)
    refusal = _refused(reloader)
    assert refusal is not None and refusal.error.startswith("KeyFileUnsafe") and not refusal.last_good
    assert refusal.path == reviewers.path and refusal.evidence == reviewers.path.read_bytes()
    assert not reloader.loaded and reloader.reloads == 0
    # nobody in it: dana's key and name are unknown, as for any name the registry does not hold
    assert reloader.registry.reviewers() == [] and reloader.registry.get("dana") is None
    assert reloader.registry.by_key(dana.keys[0].key_id) is None
    assert "no reviewer registry is in force" in refusal.describe() and "last good" not in refusal.describe()
    assert refusal.to_json() == {"file": str(reviewers.path), "reason": refusal.error,
                                 "registry": "reviewer registry", "serving": "none"}
    assert reloader.check() is None and reloader.refused == refusal  # same state: reported once
    reviewers.path.chmod(0o600)  # fixed: the next look loads it
    assert reloader.check() is None and _refused(reloader) is None and _loaded(reloader)
    assert reloader.reloads == 1  # a registry came into force: readers derive their state again
    assert reloader.registry.by_key(dana.keys[0].key_id) == dana


def test_a_second_bad_file_before_any_good_one_still_serves_nothing(
        reviewers: ReviewerRegistry, tmp_path: Path) -> None:
    good = reviewers.path.read_bytes()
    reviewers.path.write_bytes(b'{"dana": [')
    reloader = _loading(tmp_path)
    first = _refused(reloader)
    assert first is not None and "not valid JSON" in first.error and not first.last_good
    reviewers.path.write_bytes(b"[]")  # another bad edit: still no registry ever in force
    second = reloader.check()
    assert second is not None and second != first and not second.last_good
    assert second.to_json()["serving"] == "none" and reloader.registry.reviewers() == []
    reviewers.path.write_bytes(good)
    assert reloader.check() is None and _names(reloader.registry) == ["dana"] and reloader.reloads == 1
    reviewers.path.write_bytes(b"{")  # now a bad edit keeps the last good registry, as any reload
    third = reloader.check()
    assert third is not None and third.last_good and third.to_json()["serving"] == "last good"
    assert _names(reloader.registry) == ["dana"]


def test_a_missing_file_at_start_is_an_empty_registry_not_a_refusal(tmp_path: Path) -> None:
    reloader = _loading(tmp_path)
    assert reloader.refused is None and reloader.loaded and reloader.registry.reviewers() == []
