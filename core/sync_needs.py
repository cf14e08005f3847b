"""Drop from a received Automerge sync message the ``need`` hashes this document does not have.

A workaround for a sync stall in the Automerge that automerge-py 0.2.0.dev4 bundles (Rust
automerge 0.7.2), fixed upstream by automerge commit 07a4cbbe7 "rust: ignore sync needs for
changes we don't have" (first in Rust automerge 0.11.0). A false positive of the sync
protocol's Bloom filter (about 1 % per change) makes a peer send a change without its parent;
the receiver queues the orphan and asks every peer for the missing parent in ``need``, with an
empty ``have``. With an empty ``have`` a peer sends exactly ``need``, and if one hash there is
not in its document, ``generate_sync_message`` returns None. When two peers' orphans are
missing at once (each parent held by a different peer), every peer holds one hash and lacks
the other: nobody ever sends again, and the documents stay apart. A helper measured 2 stalls in
~290 collaboration runs of 5 editing peers, and 3 of 300 seeds in a pure automerge-py
lockstep repro (tests/test_sync_needs.py keeps one).

The receiver keeps only the needs it can serve, as the upstream fix does when generating. The
message is rewritten only when ``need`` is non-empty and names a hash we lack; otherwise the
bytes go through untouched. Remove this module once automerge-py ships Automerge >= 0.11.

Wire format (automerge ``sync.rs``; message types 0x42 and 0x43, the one with capabilities,
which is what 0.7.2 sends): type byte, heads (ULEB128 count, then 32-byte hashes), need (the
same), then the rest (have, changes, ...), left as it is.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["HASH_BYTES", "strip_unknown_needs"]

HASH_BYTES = 32
MESSAGE_TYPES = (0x42, 0x43)


def _uleb(data: bytes, i: int) -> tuple[int, int]:
    """The ULEB128 integer at ``data[i:]`` and the index after it (IndexError if cut off)."""
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("ULEB128 longer than 64 bits")


def _encode_uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def strip_unknown_needs(data: bytes, has_change: Callable[[bytes], bool]) -> bytes:
    """``data`` without the ``need`` hashes for which ``has_change`` is False. A message that is
    not a well-formed sync message comes back unchanged (decoding it then reports the error)."""
    if not data or data[0] not in MESSAGE_TYPES:
        return data
    try:
        heads, i = _uleb(data, 1)
        start = i + HASH_BYTES * heads
        needs, first = _uleb(data, start)
    except (IndexError, ValueError):
        return data
    end = first + HASH_BYTES * needs
    if needs == 0 or end > len(data):
        return data
    wanted = [data[first + HASH_BYTES * k : first + HASH_BYTES * (k + 1)] for k in range(needs)]
    kept = [h for h in wanted if has_change(h)]
    if len(kept) == needs:
        return data
    return data[:start] + _encode_uleb(len(kept)) + b"".join(kept) + data[end:]
