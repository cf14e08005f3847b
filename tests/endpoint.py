"""A scripted protocol endpoint for tests: a Connection plus the raw end of a stream pair.

The test decides exactly what goes out (``send``) and reads whole events (``next``), from
either role: the client side of a session under test, or the server side of a client under test.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from core.connection import Connection, Event

WAIT = 30.0  # safety timeout of every read; hitting it fails the test instead of hanging it


@dataclass
class Endpoint:
    conn: Connection
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    pending: list[Event] = field(default_factory=list)  # received, not yet asked for

    def send(self, event: Event) -> None:
        self.writer.write(self.conn.send(event))

    async def next(self, kind: type[Event]) -> Event:
        """The next event of type ``kind``; earlier events of other types stay in ``pending``."""
        while True:
            for i, event in enumerate(self.pending):
                if isinstance(event, kind):
                    return self.pending.pop(i)
            chunk = await asyncio.wait_for(self.reader.read(65536), WAIT)
            self.pending.extend(self.conn.receive_data(chunk))
            if not chunk:
                raise EOFError(f"no {kind.__name__} before the end of the stream")
