"""One exception tree for the whole core.

Every failure the core reports derives from :class:`CoreError`. Protocol faults carry a
``close_reason`` (a short, stable, machine-readable code) that the daemon sends to the peer
before closing that peer's connection only.
"""

from __future__ import annotations


class CoreError(Exception):
    """Base of every error raised by ``core``."""


# --------------------------------------------------------------------------- protocol
class ProtocolError(CoreError):
    """The peer (or we) broke the wire protocol. Closes that one connection."""

    close_reason: str = "protocol_error"


class LocalProtocolError(ProtocolError):
    """We were asked to send something the protocol does not allow."""

    close_reason = "local_protocol_error"


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""

    close_reason = "remote_protocol_error"


class FrameTooLarge(RemoteProtocolError):
    """A frame header announced a payload above the cap (checked before buffering)."""

    close_reason = "frame_too_large"


class SyncMessageTooLarge(FrameTooLarge):
    """A peer's sync message is over the daemon's cap for one message (checked before buffering).

    Applying a sync message holds the daemon's loop for time that grows with the texts it touches,
    so one huge paste would freeze every room; the peer must split it (PROTOCOL.md 10.2)."""

    close_reason = "sync_too_large"


class FrameTimeout(RemoteProtocolError):
    """A frame that had started arriving was not complete within the daemon's progress timeout.

    Idle time between frames is never timed out; only a partial frame that stalls (a peer that
    announces a large frame, sends part of it and stops) would otherwise hold its buffer forever."""

    close_reason = "frame_timeout"


class OverBudget(ProtocolError):
    """The connection's buffered input and queued output pushed the daemon over its memory budget.

    Not a protocol violation: a resource limit. The daemon closes the connections holding the
    most bytes until the total fits again, so peers that read and write normally keep being
    served."""

    close_reason = "over_budget"


class EmptyFrame(RemoteProtocolError):
    """A typed frame with no type byte."""

    close_reason = "empty_frame"


class UnknownFrameType(RemoteProtocolError):
    """A typed frame whose type byte is not defined by the protocol."""

    close_reason = "unknown_frame_type"


class HandshakeError(RemoteProtocolError):
    """The handshake was missing, late, oversized, not JSON, or not a known channel."""

    close_reason = "bad_handshake"


class MessageError(RemoteProtocolError):
    """A JSON request/response body or an Automerge sync message could not be decoded."""

    close_reason = "bad_message"


class TransportClosed(CoreError):
    """The other side went away (EOF, reset) — possibly in the middle of a frame."""


# --------------------------------------------------------------------------- notebooks
class NotebookLoadError(CoreError):
    """A notebook file could not be read or is not a notebook we accept.

    The message names the problem precisely (e.g. ``invalid JSON at line 3 column 5: …``).
    """


class DocError(CoreError):
    """An operation on the Automerge notebook document failed."""


# --------------------------------------------------------------------------- storage
class BlobStoreError(CoreError):
    """The content-addressed blob store could not complete an operation."""


class BlobTooLarge(BlobStoreError):
    """A blob above the store's size cap (100 MiB by default)."""


class BlobCorrupt(BlobStoreError):
    """A stored blob (or its sidecar) does not match its id: its content is unusable.

    Distinct from other BlobStoreErrors (I/O failures), which may be transient: readers turn a
    corrupt blob into a placeholder but must not do that for an unreadable store.
    """


class InvalidBlobId(BlobStoreError):
    """A blob id that is not 64 lowercase hex characters (never touches the filesystem)."""


class SaveRefused(CoreError):
    """Writing the notebook back to disk is not allowed in the room's current state."""


class SaveConflict(SaveRefused):
    """The notebook file changed on disk since the room loaded or last saved it.

    The save is refused and the file left as it is (nbstream does not merge); the message names
    the file and what changed."""


class SaveFailed(CoreError):
    """Writing the notebook back failed (e.g. the disk is full); the file on disk is unchanged."""


class InvalidNotebook(SaveRefused):
    """The document holds elements that cannot be written as a valid, re-readable notebook.

    The message names each one (cell index and id, field) and why; the file is left as it was.
    """


class RecoveryFailed(CoreError):
    """Unsaved work could be written neither beside its notebook nor in the recovery directory."""
