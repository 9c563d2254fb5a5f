"""Test-only fault points: named places where the process can be made to die, to prove crash safety.

`STUDYVISIT_FAULT_POINT=name` (or `name:N`, the Nth time it is reached) kills the process there
with SIGKILL, exactly as a power cut or the OOM killer would: no cleanup, no flush, no finally.
Unset in production, a fault point costs one string comparison.
"""

import os
import signal

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
