"""The ``submit_held`` fixture keeps its promises, against a real broker and worker.

The adversary is a test that fails while its ``lockgate submit --wait-review`` still waits:
an inner pytest session (a process of its own) holds a real review open and fails; once it
has exited, the submit process it started must be gone too, not left waiting as an orphan.
And a submit that is not held at all (allowed at once) must fail ``pending_review`` at once
with what it printed, not after the whole timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import ProcessorHandle
from tests.integration.held_submit import HeldSubmits

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

INNER_TEST = '''
from pathlib import Path

from schemas.topics import Topics
from tests.integration.conftest import ProcessorHandle, submit_held  # noqa: F401 (the fixture under test)

def test_fails_while_a_submit_is_held(submit_held):
    handle = ProcessorHandle({bootstrap!r}, Path({home!r}), Topics({prefix!r}), 0, None, Path({log!r}))
    held = submit_held(handle, actor={actor!r}, justification={marker!r}, wait_review_s=600)
    row = held.pending_review(90)
    Path({out!r}).write_text(f"{{held.proc.pid}} {{row['review_id']}}")
    assert False, "failing on purpose with the submit still held"
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_submit_still_held_when_its_test_fails_does_not_outlive_the_session(processor: ProcessorHandle,
                                                                              tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    inner, out = tmp_path / "inner", tmp_path / "held.txt"
    inner.mkdir()
    (inner / "pytest.ini").write_text("[pytest]\n")
    (inner / "test_inner.py").write_text(textwrap.dedent(INNER_TEST.format(
        bootstrap=processor.bootstrap, home=str(processor.home), prefix=processor.topics.prefix,
        log=str(processor.log), actor=f"carol-{tag}", marker=f"held at a failure {tag}", out=str(out))))
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
                          str(tmp_path / "inner-tmp"), str(inner)], cwd=inner, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=180, check=False)
    assert res.returncode == 1 and "1 failed" in res.stdout, res.stdout + res.stderr
    assert "failing on purpose with the submit still held" in res.stdout, res.stdout
    pid_text, review_id = out.read_text().split()  # the submit was really held on a listed review
    assert not _alive(int(pid_text)), f"submit {pid_text} outlived the failed test"
    # Nobody answered the review: the submit ended because the fixture killed it, not by a verdict.
    listed = processor.cli("reviews", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert review_id in {r["review_id"] for r in json.loads(listed.stdout)}


def test_pending_review_fails_at_once_when_the_submit_is_not_held(processor: ProcessorHandle,
                                                                   submit_held: HeldSubmits) -> None:
    held = submit_held(processor, actor=f"carol-{uuid.uuid4().hex[:6]}", sql="SELECT * FROM customers LIMIT 1",
                       wait_review_s=60)
    with pytest.raises(AssertionError, match=r"submit exited 0 before its review was listed: .*'allow'"):
        held.pending_review(600)
    assert not held.waiting()
