"""nbstream core: a minimal notebook sync daemon over Automerge with truly progressive loading.

The public API, importable from ``core`` directly::

    from core import Daemon, DaemonConfig, NotebookClient, NotebookDoc, parse_notebook

Serve: :class:`Daemon`, :class:`DaemonConfig` (``core.daemon``). Connect: :class:`NotebookClient`
(``core.client``). The document: :class:`NotebookDoc`, :class:`CellSnapshot`. Notebooks on disk:
:func:`read_notebook_file`, :func:`parse_notebook`, :func:`export_notebook`. Outputs:
:class:`DiskBlobStore`, :class:`MemoryBlobStore`. Every error nbstream raises derives from
:class:`CoreError` (``core.errors``). The wire format lives in ``core.framing`` and
``core.protocol``; PROTOCOL.md describes it for clients in other languages.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from core._version import __version__

if TYPE_CHECKING:
    from core.blob_store import BlobStore, DiskBlobStore, MemoryBlobStore
    from core.client import ClientStatistics, LoadFailed, NotebookClient, OpenRefused
    from core.daemon import (
        Daemon,
        DaemonConfig,
        DaemonStatistics,
        RoomFigures,
        default_socket_path,
    )
    from core.errors import (
        BlobCorrupt,
        BlobStoreError,
        BlobTooLarge,
        CoreError,
        DocError,
        EmptyFrame,
        FrameTooLarge,
        HandshakeError,
        InvalidBlobId,
        InvalidNotebook,
        LocalProtocolError,
        MessageError,
        NotebookLoadError,
        ProtocolError,
        RemoteProtocolError,
        SaveFailed,
        SaveRefused,
        TransportClosed,
        UnknownFrameType,
    )
    from core.ipynb import ParsedNotebook, parse_notebook
    from core.ipynb_export import export_notebook
    from core.loader import LoadReport
    from core.notebook_doc import CellSnapshot, DocStatistics, NotebookDoc
    from core.notebook_file import read_notebook_file

_EXPORTS = {
    "BlobCorrupt": "core.errors",
    "BlobStore": "core.blob_store",
    "BlobStoreError": "core.errors",
    "BlobTooLarge": "core.errors",
    "CellSnapshot": "core.notebook_doc",
    "ClientStatistics": "core.client",
    "CoreError": "core.errors",
    "Daemon": "core.daemon",
    "DaemonConfig": "core.daemon",
    "DaemonStatistics": "core.daemon",
    "DiskBlobStore": "core.blob_store",
    "DocError": "core.errors",
    "DocStatistics": "core.notebook_doc",
    "EmptyFrame": "core.errors",
    "FrameTooLarge": "core.errors",
    "HandshakeError": "core.errors",
    "InvalidBlobId": "core.errors",
    "LoadFailed": "core.client",
    "LoadReport": "core.loader",
    "LocalProtocolError": "core.errors",
    "MemoryBlobStore": "core.blob_store",
    "MessageError": "core.errors",
    "InvalidNotebook": "core.errors",
    "NotebookClient": "core.client",
    "NotebookDoc": "core.notebook_doc",
    "NotebookLoadError": "core.errors",
    "OpenRefused": "core.client",
    "ParsedNotebook": "core.ipynb",
    "ProtocolError": "core.errors",
    "RemoteProtocolError": "core.errors",
    "RoomFigures": "core.daemon",
    "SaveFailed": "core.errors",
    "SaveRefused": "core.errors",
    "TransportClosed": "core.errors",
    "UnknownFrameType": "core.errors",
    "default_socket_path": "core.daemon",
    "export_notebook": "core.ipynb_export",
    "parse_notebook": "core.ipynb",
    "read_notebook_file": "core.notebook_file",
}
"""Public name -> defining module. Imported on first use (PEP 562), so that ``import
core.framing`` stays free of asyncio and Automerge (the sans-IO modules promise that)."""


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "BlobCorrupt",
    "BlobStore",
    "BlobStoreError",
    "BlobTooLarge",
    "CellSnapshot",
    "ClientStatistics",
    "CoreError",
    "Daemon",
    "DaemonConfig",
    "DaemonStatistics",
    "DiskBlobStore",
    "DocError",
    "DocStatistics",
    "EmptyFrame",
    "FrameTooLarge",
    "HandshakeError",
    "InvalidBlobId",
    "InvalidNotebook",
    "LoadFailed",
    "LoadReport",
    "LocalProtocolError",
    "MemoryBlobStore",
    "MessageError",
    "NotebookClient",
    "NotebookDoc",
    "NotebookLoadError",
    "OpenRefused",
    "ParsedNotebook",
    "ProtocolError",
    "RemoteProtocolError",
    "RoomFigures",
    "SaveFailed",
    "SaveRefused",
    "TransportClosed",
    "UnknownFrameType",
    "__version__",
    "default_socket_path",
    "export_notebook",
    "parse_notebook",
    "read_notebook_file",
]
