"""A sink started while ``reviewers.json`` is unsafe still lands the ledger; its inbox knows nobody.

The adversary leaves the reviewer registry group-writable (0660) on the sink's host before the
sink starts. The recording path has nothing to do with reviewers, so the real sink process must
start and land audit rows in ClickHouse (read back through its API) — before the shared reload
core learned a start refusal, the inbox loaded the file in its constructor and the sink exited.
The inbox must fail closed meanwhile: it shows the refusal, judges a vote signed by a reviewer's
key (published as ``lockgate reviews approve`` on another host would) as no reviewer's, and
refuses a vote cast through it. Once the file is ``chmod 0600`` the inbox clears the refusal,
judges again — the earlier vote now counts, as a fresh ``reviews list`` would count it — and
accepts a vote cast through it. The inbox page, in a real headless Chromium, says the same.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lockgate.kernel.keyed_publish import publish_keyed
from schemas.codec import get_codec
from schemas.topics import Topics
from sinks.tokens import create_token
from tests.integration.chromium import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, needs_chromium
from tests.integration.conftest import get_json, wait_for
from tests.integration.sink_process import SinkProcess, audit_records, produce, start_sink
from tests.unit.trust.review_fixtures import World, decision, proposal, world
from trust.keys import clock_us
from trust.reviews import Review, ReviewBook

pytestmark = pytest.mark.integration


def _open_review(w: World, bootstrap: str, topic: str) -> Review:
    """Publish a review opened now (a vote cast now is within its expiry); the review."""
    rec, now, codec = proposal(), clock_us(), get_codec()
    records = [codec.encode("ProposedAction", rec), codec.encode("Verdict", w.verdict(rec, decision(), now=now))]
    book = ReviewBook(w.ring, w.registry)
    review = [book.apply(raw, now) for raw in records][-1].review
    assert review is not None
    for raw in records:  # keyed by review id, as the processor publishes them: one partition, in order
        publish_keyed(bootstrap, topic, review.review_id.encode(), raw)
    return review


def _started_unsafe(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> tuple[World, str, SinkProcess]:
    """Reviewers in home/keys, dana's reviewer token, the registry made 0660, then the sink started
    (raises if the sink exits)."""
    home, state = tmp_path / "home", tmp_path / "state"
    state.mkdir()
    w = world(home)  # reviewers (dana, omar, ...) and their private keys in home/keys
    w.key.public().save(home / "keys" / "processor.pub.pem")
    _, dana = create_token(home, "default", reviewer="dana")
    w.registry.path.chmod(0o660)
    return w, dana, start_sink(kafka_bootstrap, topics.prefix, home, state)


def _listing(sink: SinkProcess, token: str) -> dict[str, Any]:
    body = get_json(f"{sink.url}/api/reviews", token)
    return body if isinstance(body, dict) else {}


def _vote(sink: SinkProcess, token: str, review_id: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"{sink.url}/api/reviews/{review_id}/vote", method="POST",
                                 data=json.dumps({"vote": "approve", "reason": "ticket 7"}).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_an_unsafe_reviewer_file_at_start_stops_neither_the_sink_nor_fails_open(
        kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    w, dana, sink = _started_unsafe(kafka_bootstrap, topics, tmp_path)
    path = w.registry.path
    try:
        records, ids = audit_records(200)
        produce(kafka_bootstrap, topics.audit, records)
        wait_for(lambda: set(sink.event_ids()) == ids, 60, f"the audit rows landed; sink log:\n{sink.tail()}")

        outside = _open_review(w, kafka_bootstrap, topics.reviews)  # voted on from another host
        inside = _open_review(w, kafka_bootstrap, topics.reviews)  # voted on through the inbox
        publish_keyed(kafka_bootstrap, topics.reviews, outside.review_id.encode(),
                      w.vote(outside, "dana", at=clock_us()))

        def folded(n: int) -> dict[str, Any] | None:
            got = _listing(sink, dana)
            return got if got.get("ready") and got.get("records") == n else None

        listing = wait_for(lambda: folded(5), 60, f"the inbox folded the reviews; sink log:\n{sink.tail()}")
        refused = listing["registry_refused"]
        assert refused is not None and refused["file"] == str(path) and refused["serving"] == "none"
        assert refused["reason"].startswith("KeyFileUnsafe") and "0660" in refused["reason"]
        pending = {r["review_id"]: r for r in listing["pending"]}
        assert set(pending) == {outside.review_id, inside.review_id}
        assert pending[outside.review_id]["approvals"] == 0  # dana's signed vote: no reviewer's, not counted

        status, out = _vote(sink, dana, inside.review_id)
        assert status == 409 and "no vote can be accepted" in out["error"] and str(path) in out["error"]
        assert folded(5) is not None  # nothing was signed or sent
        warned = [line for line in sink.log.read_text().splitlines() if "review inbox" in line and str(path) in line]
        assert len(warned) == 1, warned

        path.chmod(0o600)
        fixed = wait_for(lambda: (got := _listing(sink, dana)).get("registry_refused") is None and got,
                         30, "the refusal cleared by the fixed file")
        decided = {r["review_id"]: r["status"] for r in fixed["decided"]}
        assert decided == {outside.review_id: "approved"}  # dana's vote judged again, now as dana's
        status, out = _vote(sink, dana, inside.review_id)
        assert (status, out["outcome"], out["decided"]) == (200, "accepted", "approved"), out
        assert sink.proc.poll() is None
    finally:
        sink.stop()


@pytest.mark.browser
@needs_chromium
def test_the_inbox_page_shows_the_start_refusal_and_clears_it(
        kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    w, dana, sink = _started_unsafe(kafka_bootstrap, topics, tmp_path)
    path = w.registry.path
    review = _open_review(w, kafka_bootstrap, topics.reviews)
    expect.set_options(timeout=TIMEOUT_MS)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(f"{sink.url}/reviews?token={dana}")
                status = page.get_by_test_id("status")
                expect(status).to_contain_text("live")
                expect(status).to_contain_text(f"{path} refused (KeyFileUnsafe")
                expect(status).to_contain_text("no reviewer is known until it is fixed")
                row = page.get_by_test_id("review-row").filter(has_text=review.review_id)
                expect(row).to_have_count(1)
                row.get_by_test_id("review-reason").fill("ticket 7")
                row.get_by_test_id("approve").click()
                result = page.get_by_test_id("vote-result")
                expect(result).to_contain_text("409")
                expect(result).to_contain_text("no vote can be accepted")

                path.chmod(0o600)
                expect(status).not_to_contain_text("refused")
                expect(status).to_contain_text("live")
            finally:
                browser.close()
    finally:
        expect.set_options(timeout=5_000)
        sink.stop()
