"""A stand-in for a user's own server: the bundled daemon, but it does not implement the optional
``statistics`` request (it answers an ``error``, as a server of another kind may).

Usage: python tests/servers/no_statistics.py SOCKET ROOT
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from core import protocol as p
from core.daemon import Daemon, DaemonConfig
from core.errors import CoreError
from core.room import NotebookRoom


class NoStatistics(Daemon):
    def statistics_response(self, request_id: int, room: NotebookRoom) -> p.StatisticsResponse:
        raise CoreError("unsupported request: statistics")


async def main(socket: str, root: str) -> None:
    config = DaemonConfig(
        socket_path=Path(socket), blob_root=Path(socket + ".blobs"), notebook_root=Path(root)
    )
    daemon = NoStatistics(config)
    await daemon.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await daemon.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
