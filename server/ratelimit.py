"""A per-process limit on failed authentications from one client address.

Only failures are counted, and only after a token was found not to be valid: a valid token is
never looked up here, so a client whose address is limited still gets in with a good token
(an office behind one NAT address is not locked out by one broken phone). The counts live in
this process's memory: with N worker processes an address gets N times the allowance, and a
restart forgets them.
"""

import math
import time
from collections.abc import Callable


class FailedAuthLimiter:
    """Counts failed authentications per client address in fixed windows."""

    def __init__(
        self,
        allowed: int,
        window_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 100_000,
    ) -> None:
        self.allowed = allowed
        self.window = window_seconds
        self.clock = clock
        # Bounded, so that a spray of addresses (IPv6 gives an attacker many) cannot grow memory.
        self.max_addresses = max_addresses
        self._windows: dict[str, tuple[float, int]] = {}  # address -> (window start, failures)

    def retry_after(self, address: str) -> int | None:
        """Whole seconds until this address may try again, or None when it may try now."""
        entry = self._windows.get(address)
        if entry is None:
            return None
        start, failures = entry
        remaining = start + self.window - self.clock()
        if remaining <= 0:
            del self._windows[address]
            return None
        return max(1, math.ceil(remaining)) if failures >= self.allowed else None

    def record_failure(self, address: str) -> None:
        """Count one failed authentication of this address."""
        now = self.clock()
        start, failures = self._windows.pop(address, (now, 0))
        if start + self.window <= now:
            start, failures = now, 0
        if len(self._windows) >= self.max_addresses:
            self._forget_oldest(now)
        # Re-inserted last: the dict stays ordered by the latest failure, oldest first.
        self._windows[address] = (start, failures + 1)

    def _forget_oldest(self, now: float) -> None:
        expired = [a for a, (start, _) in self._windows.items() if start + self.window <= now]
        for address in expired or [next(iter(self._windows))]:
            del self._windows[address]
