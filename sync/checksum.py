"""The replica checksum: lets a client verify it holds exactly what the server says it may see.

Order-independent, so a client computes it from its replica in any order: the sum, modulo 2**64,
of the first 8 bytes (big-endian) of SHA-256 over ``"{id}:{version}"`` of every live record,
written as 16 lowercase hex digits.
"""

import hashlib
from collections.abc import Iterable

MASK = (1 << 64) - 1


def record_hash(record_id: str, version: int) -> int:
    """One record's contribution to the checksum."""
    return int.from_bytes(hashlib.sha256(f"{record_id}:{version}".encode()).digest()[:8], "big")


def checksum(records: Iterable[tuple[str, int]]) -> str:
    """The checksum of (id, version) pairs."""
    total = 0
    for record_id, version in records:
        total = (total + record_hash(record_id, version)) & MASK
    return f"{total:016x}"
