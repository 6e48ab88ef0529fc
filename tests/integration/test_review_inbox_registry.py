"""The sink's review inbox keeps serving through a bad edit of ``reviewers.json``.

The adversary breaks the reviewer registry on the sink's host while the inbox follows a real
reviews topic: the file is replaced with broken JSON. The inbox must refuse that reload and
keep the last good registry — still ready, still folding new records as they arrive, a vote
cast from it still judged (and accepted) against the last good registry — and name the
refused file and why in its listing, until a good file is back. (Before the shared reload
core, the follower raised on the bad file, dropped everything it had folded and retried
every two seconds: the inbox went unready for as long as the file stayed bad.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lockgate.kernel.keyed_publish import publish_keyed
from schemas.codec import get_codec
from schemas.topics import Topics
from sinks.review_inbox import ReviewInbox
from tests.integration.conftest import wait_for
from tests.unit.trust.review_fixtures import World, decision, proposal, reviews_topic, world
from trust.keys import clock_us, write_key_file

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> Iterator[tuple[World, ReviewInbox]]:
    w = world(tmp_path)  # reviewers in tmp_path/keys: the inbox's home is tmp_path
    w.key.public().save(tmp_path / "keys" / "processor.pub.pem")
    inbox = ReviewInbox(kafka_bootstrap, topics.reviews, tmp_path, vote_wait_s=30.0)
    inbox.start()
    try:
        yield w, inbox
    finally:
        inbox.stop()


def _publish(bootstrap: str, topic: str, review_id: str, records: list[bytes]) -> None:
    for raw in records:
        publish_keyed(bootstrap, topic, review_id.encode(), raw)


def _open_now(w: World) -> tuple[str, list[bytes]]:
    """A review opened now (so a vote cast now is within its expiry): its id and records."""
    rec = proposal()
    verdict = w.verdict(rec, decision(), now=clock_us())
    codec = get_codec()
    return verdict["review"]["review_id"], [codec.encode("ProposedAction", rec), codec.encode("Verdict", verdict)]


def test_a_bad_registry_edit_leaves_the_inbox_serving_with_the_last_good_one(
        kafka_bootstrap: str, topics: Topics, setup: tuple[World, ReviewInbox]) -> None:
    w, inbox = setup
    records, final = reviews_topic(w, proposal())
    _publish(kafka_bootstrap, topics.reviews, final["review"]["review_id"], records)

    def listed(n: int) -> dict[str, Any] | None:
        got = inbox.listing(None)
        return got if got["ready"] and got["records"] == n else None

    wait_for(lambda: listed(len(records)), 60, "the inbox folded the first review")

    path = w.registry.path
    good = path.read_bytes()
    write_key_file(path, b'{"dana": [', 0o600, overwrite=True)  # whole, 0600, not JSON
    refused = wait_for(lambda: inbox.listing(None)["registry_refused"], 30, "the refusal shown in the inbox")
    assert refused["file"] == str(path) and "not valid JSON" in refused["reason"]

    review_id, opened = _open_now(w)
    _publish(kafka_bootstrap, topics.reviews, review_id, opened)
    now = wait_for(lambda: listed(len(records) + len(opened)), 60, "the inbox still folding new records")
    assert now["problem"] is None and now["registry_refused"] == refused
    assert [r["review_id"] for r in now["pending"]] == [review_id]
    assert [(r["review_id"], r["status"]) for r in now["decided"]] == [(final["review"]["review_id"], "approved")]

    result = inbox.vote("omar", None, review_id, "approve", "ok")  # omar: in the last good registry
    assert (result.outcome, result.decided) == ("accepted", "approved"), result.detail
    assert inbox.listing(None)["ready"]

    write_key_file(path, good, 0o600, overwrite=True)
    wait_for(lambda: inbox.listing(None)["registry_refused"] is None, 30, "the refusal cleared by a good file")
