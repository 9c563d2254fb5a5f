"""Test-only fault points: named places where the process can be made to die, to prove crash safety.

`STUDYVISIT_FAULT_POINT=name` (or `name:N`, the Nth time it is reached) kills the process there
with SIGKILL, exactly as a power cut or the OOM killer would: no cleanup, no flush, no finally.
Unset in production, a fault point costs one string comparison.
"""

import os
import random
import signal
import time

_NAME, _, _NTH = os.environ.get("STUDYVISIT_FAULT_POINT", "").partition(":")
_remaining = int(_NTH or "1")


def fault_point(name: str) -> None:
    """Die here when STUDYVISIT_FAULT_POINT names this point (and this is its Nth passage)."""
    global _remaining
    if name != _NAME:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)


# --- Test-only switches of the PostgreSQL change feed (tests/test_pg_feed_servers.py) ---------
# They exist so that a test can prove the feed's no-skip guarantee through real servers, and prove
# that the test would catch a feed without it (docs/sync-protocol.md §5.2). Never set in production.

# STUDYVISIT_TEST_COMMIT_DELAY_MS=N: every writing transaction sleeps a random 0–N ms after its last
# statement (its feed rows written) and before its commit, widening the window in which a later
# transaction could commit first.
_COMMIT_DELAY_MS = float(os.environ.get("STUDYVISIT_TEST_COMMIT_DELAY_MS", "") or 0)

# STUDYVISIT_TEST_NAIVE_FEED=1: feed positions come from a sequence when a row is inserted, before
# commit, and are served as `seq > cursor`: the design that skips a change committed late.
TEST_NAIVE_FEED = os.environ.get("STUDYVISIT_TEST_NAIVE_FEED", "") == "1"


def commit_delay_for_tests() -> None:
    """Sleep 0 to N ms when STUDYVISIT_TEST_COMMIT_DELAY_MS=N (test-only); nothing otherwise."""
    if _COMMIT_DELAY_MS > 0:
        time.sleep(random.uniform(0, _COMMIT_DELAY_MS) / 1000)
