"""sim/net/streams.py: in-memory duplex streams (and the socketpair variant) for asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from sim.net.streams import (
    MemoryStreamPair,
    MemoryTransport,
    StreamEndpoint,
    StreamHooks,
    memory_stream_pair,
    memory_transport_of,
    socketpair_streams,
)

TIMEOUT = 30.0  # safety net only; every wait below is on a condition
Pair = tuple[StreamEndpoint, StreamEndpoint]


# --------------------------------------------------------------------------- helpers
async def turns(n: int = 100) -> None:
    """Give the event loop plenty of iterations (never a timed sleep)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def wait_until(predicate: Callable[[], bool]) -> None:
    async def poll() -> None:
        while True:
            if predicate():
                return
            await asyncio.sleep(0)  # one loop iteration per check

    await asyncio.wait_for(poll(), TIMEOUT)


async def within(awaitable: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(awaitable, TIMEOUT)


async def aclose(*writers: asyncio.StreamWriter) -> None:
    for writer in writers:
        writer.close()
    for writer in writers:
        with contextlib.suppress(ConnectionError):
            await within(writer.wait_closed())


async def read_until_error(reader: asyncio.StreamReader) -> tuple[bytes, BaseException | None]:
    """Read until EOF or an exception; return what was read and the exception (if any)."""
    got = bytearray()
    try:
        while chunk := await reader.read(65536):
            got += chunk
    except ConnectionError as exc:
        return bytes(got), exc
    return bytes(got), None


async def write_all(
    writer: asyncio.StreamWriter, data: bytes, rng: random.Random, max_write: int = 65536
) -> None:
    pos = 0
    while pos < len(data):
        n = rng.randint(1, max_write)
        writer.write(data[pos : pos + n])
        await writer.drain()
        pos += n


Opener = Callable[..., Awaitable[Pair]]


@pytest.fixture
async def open_pair() -> AsyncIterator[Opener]:
    """Open memory or socketpair endpoints; every writer is closed at teardown."""
    writers: list[asyncio.StreamWriter] = []

    async def factory(kind: str = "memory", **kwargs: Any) -> Pair:
        pair: Pair
        if kind == "memory":
            pair = await memory_stream_pair(**kwargs)
        else:
            pair = await socketpair_streams(**kwargs)
        writers.extend([pair[0][1], pair[1][1]])
        return pair

    yield factory
    await aclose(*writers)


# --------------------------------------------------------------------------- basics
async def test_round_trip_both_directions(open_pair: Opener) -> None:
    (ra, wa), (rb, wb) = await open_pair()
    wa.write(b"hello from a")
    await wa.drain()
    assert await within(rb.readexactly(12)) == b"hello from a"
    wb.writelines([b"hello ", b"from ", b"b"])
    await wb.drain()
    assert await within(ra.readexactly(12)) == b"hello from b"


async def test_real_asyncio_stream_objects_and_extra_info(open_pair: Opener) -> None:
    pair = await open_pair()
    assert isinstance(pair, MemoryStreamPair)
    (_, wa), (_, wb) = pair
    for reader, writer in pair:
        assert type(reader) is asyncio.StreamReader
        assert type(writer) is asyncio.StreamWriter
        assert isinstance(writer.transport, MemoryTransport)
        assert writer.can_write_eof()
        assert not writer.is_closing()
    assert wa.get_extra_info("sockname") == "memory-a"
    assert wa.get_extra_info("peername") == "memory-b"
    assert wb.get_extra_info("sockname") == "memory-b"
    assert wb.get_extra_info("peername") == "memory-a"
    assert wa.get_extra_info("socket") is None
    assert wa.get_extra_info("nope", 42) == 42
    assert pair.a_to_b is memory_transport_of(wa).outgoing is memory_transport_of(wb).incoming
    assert pair.b_to_a is memory_transport_of(wb).outgoing


async def test_readexactly_readuntil_readline_with_one_byte_chunks(open_pair: Opener) -> None:
    (_, wa), (rb, _) = await open_pair(hooks_a_to_b=StreamHooks(max_chunk=1))
    wa.write(b"HDR:0005hello|line one\nrest")
    assert await within(rb.readuntil(b":")) == b"HDR:"
    size = int(await within(rb.readexactly(4)))
    assert await within(rb.readexactly(size)) == b"hello"
    assert await within(rb.readuntil(b"|")) == b"|"
    assert await within(rb.readline()) == b"line one\n"
    wa.write_eof()
    assert await within(rb.read()) == b"rest"
    assert rb.at_eof()


@pytest.mark.parametrize(
    ("max_chunk", "size"),
    [(None, 5_000_000), (4096, 5_000_000), (7, 300_000), (1, 30_000)],
)
async def test_large_transfer_arrives_intact(
    open_pair: Opener, max_chunk: int | None, size: int
) -> None:
    rng = random.Random(f"large-{max_chunk}")
    payload = rng.randbytes(size)
    back = rng.randbytes(size // 10)
    hooks = StreamHooks(max_chunk=max_chunk)
    pair = await open_pair(capacity=16 * 1024, hooks_a_to_b=hooks, hooks_b_to_a=hooks)
    (ra, wa), (rb, wb) = pair
    sizes: list[int] = []

    async def receive(reader: asyncio.StreamReader, n: int) -> bytes:
        got = bytearray()
        while len(got) < n:
            chunk = await reader.read(rng.randint(1, 100_000))
            assert chunk
            sizes.append(len(chunk))
            got += chunk
        return bytes(got)

    results = await within(
        asyncio.gather(
            write_all(wa, payload, random.Random(1)),
            write_all(wb, back, random.Random(2), max_write=1000),
            receive(rb, size),
            receive(ra, len(back)),
        )
    )
    assert results[2] == payload
    assert results[3] == back
    if max_chunk is not None:  # one delivery per loop iteration: chunking is observable
        assert max(sizes) <= max_chunk
    stats = pair.a_to_b.statistics()
    assert stats.bytes_written == stats.bytes_delivered == size
    assert stats.in_flight == 0 and stats.bytes_discarded == 0


# --------------------------------------------------------------------------- backpressure
async def test_drain_blocks_when_peer_does_not_read_and_resumes_when_it_does(
    open_pair: Opener,
) -> None:
    capacity, write_size, total = 4096, 1000, 1_000_000
    payload = random.Random("bp").randbytes(total)
    pair = await open_pair(capacity=capacity)
    (_, wa), (rb, _) = pair
    limit = pair.a_to_b.reader_limit
    assert limit == capacity // 2
    bound = capacity + write_size + 3 * limit  # documented: capacity + largest write + 3*limit

    async def writer_task() -> None:
        for pos in range(0, total, write_size):
            wa.write(payload[pos : pos + write_size])
            await wa.drain()

    task = asyncio.create_task(writer_task())
    await turns(100)
    assert not task.done()  # blocked in drain(), nobody reads
    stats = pair.a_to_b.statistics()
    assert capacity < stats.bytes_written <= bound  # nothing has been read yet
    assert stats.max_unread <= bound
    assert stats.writer_pauses >= 1
    low, high = memory_transport_of(wa).get_write_buffer_limits()
    assert (low, high) == (capacity // 4, capacity)
    # Paused above `high`; stays paused until in flight falls to `low` (asyncio's hysteresis).
    assert memory_transport_of(wa).get_write_buffer_size() == stats.in_flight > low
    await turns(100)
    assert pair.a_to_b.statistics().bytes_written == stats.bytes_written  # really stuck

    received = bytearray()
    while len(received) < total:  # reading unblocks the writer
        received += await within(rb.read(10_000))
    await within(task)
    assert received == payload
    assert pair.a_to_b.statistics().max_unread <= bound


async def test_slow_reader_keeps_unread_bounded(open_pair: Opener) -> None:
    capacity = 8192
    pair = await open_pair(capacity=capacity, hooks_a_to_b=StreamHooks(max_chunk=1500))
    (_, wa), (rb, _) = pair
    payload = random.Random("slow").randbytes(400_000)
    largest = 5000
    writer = asyncio.create_task(write_all(wa, payload, random.Random(3), max_write=largest))
    got = bytearray()
    while len(got) < len(payload):
        got += await within(rb.read(700))
        await turns(3)  # a reader slower than the writer
    await within(writer)
    assert bytes(got) == payload
    stats = pair.a_to_b.statistics()
    assert stats.max_unread <= capacity + largest + 3 * pair.a_to_b.reader_limit
    assert stats.writer_pauses > 1


async def test_write_buffer_limits(open_pair: Opener) -> None:
    (_, wa), _ = await open_pair(capacity=1000)
    transport = memory_transport_of(wa)
    assert transport.get_write_buffer_limits() == (250, 1000)
    transport.set_write_buffer_limits(high=10)
    assert transport.get_write_buffer_limits() == (2, 10)
    with pytest.raises(ValueError):
        transport.set_write_buffer_limits(high=1, low=5)


# --------------------------------------------------------------------------- hooks
async def test_stall_stops_delivery_until_unstalled(open_pair: Opener) -> None:
    hooks = StreamHooks(stalled=True)
    pair = await open_pair(hooks_a_to_b=hooks)
    (_, wa), (rb, _) = pair
    wa.write(b"x" * 100)
    reader = asyncio.create_task(rb.readexactly(150))
    await turns(100)
    assert not reader.done()
    assert pair.a_to_b.statistics().bytes_delivered == 0
    hooks.set_stalled(False)
    await wait_until(lambda: pair.a_to_b.statistics().bytes_delivered == 100)
    hooks.stalled = True  # plain assignment works too
    wa.write(b"y" * 50)
    await turns(100)
    assert not reader.done()
    assert pair.a_to_b.statistics().bytes_delivered == 100
    hooks.stalled = False
    assert await within(reader) == b"x" * 100 + b"y" * 50


async def test_latency_delays_delivery_and_keeps_order(open_pair: Opener) -> None:
    latency = 0.05
    hooks = StreamHooks(latency=latency)
    (ra, wa), (rb, wb) = await open_pair(hooks_a_to_b=hooks)
    loop = asyncio.get_running_loop()
    events: list[str] = []
    wa.write(b"first")
    loop.call_later(latency / 2, events.append, "half-latency timer")
    wb.write(b"reply")  # the other direction has no latency: it overtakes

    async def read(name: str, reader: asyncio.StreamReader) -> bytes:
        data = await reader.readexactly(5)
        events.append(name)
        return data

    got = await within(asyncio.gather(read("a got reply", ra), read("b got first", rb)))
    assert got == [b"reply", b"first"]
    assert events == ["a got reply", "half-latency timer", "b got first"]

    wa.write(b"1")
    hooks.latency = 0.0  # a later write never overtakes an earlier, slower one
    wa.write(b"2")
    assert await within(rb.readexactly(2)) == b"12"


@pytest.mark.parametrize("max_chunk", [None, 300])
async def test_drop_after_delivers_prefix_then_resets(
    open_pair: Opener, max_chunk: int | None
) -> None:
    hooks = StreamHooks(drop_after=1000, max_chunk=max_chunk)
    pair = await open_pair(hooks_a_to_b=hooks)
    (ra, wa), (rb, wb) = pair
    payload = random.Random("drop").randbytes(5000)
    reader = asyncio.create_task(read_until_error(rb))
    for pos in range(0, len(payload), 500):
        wa.write(payload[pos : pos + 500])
        await wa.drain()
    got, exc = await within(reader)
    assert got == payload[:1000]
    assert isinstance(exc, ConnectionResetError) and exc.errno == errno.ECONNRESET
    stats = pair.a_to_b.statistics()
    assert stats.bytes_delivered == 1000
    assert stats.bytes_written == stats.bytes_delivered + stats.bytes_discarded == 5000

    # Both ends are reset, like a real socket after RST: writes then fail in drain().
    assert wa.is_closing() and wb.is_closing()
    with pytest.raises(ConnectionResetError):
        wa.write(b"more")
        await wa.drain()
    with pytest.raises(ConnectionResetError):
        await ra.read(10)
    with pytest.raises(ConnectionResetError):
        wb.write(b"more")
        await wb.drain()
    with pytest.raises(ConnectionResetError):
        await wa.wait_closed()


async def test_drop_after_set_at_runtime(open_pair: Opener) -> None:
    hooks = StreamHooks()
    pair = await open_pair(hooks_a_to_b=hooks)
    (_, wa), (rb, _) = pair
    wa.write(b"abc")
    assert await within(rb.readexactly(3)) == b"abc"
    hooks.drop_after = 3  # already reached: the connection drops now
    with pytest.raises(ConnectionResetError):
        await within(rb.read(1))
    assert pair.a_to_b.statistics().bytes_delivered == 3


def test_hook_validation() -> None:
    for kwargs in ({"max_chunk": 0}, {"latency": -1.0}, {"drop_after": -1}, {"stalled": 1}):
        with pytest.raises(ValueError):
            StreamHooks(**kwargs)  # type: ignore[arg-type]
    hooks = StreamHooks()
    with pytest.raises(ValueError):
        hooks.latency = float("nan")
    hooks.set_stalled(True)  # not attached to any pipe: harmless
    assert hooks.stalled


async def test_argument_validation() -> None:
    with pytest.raises(ValueError):
        await memory_stream_pair(0)
    with pytest.raises(ValueError):
        await memory_stream_pair(10, limit=0)


# --------------------------------------------------------------------------- EOF and closing
async def test_write_eof_half_close(open_pair: Opener) -> None:
    pair = await open_pair()
    (ra, wa), (rb, wb) = pair
    wa.write(b"abc")
    wa.write_eof()
    wa.write_eof()  # idempotent
    with pytest.raises(RuntimeError):
        wa.write(b"late")
    assert await within(rb.read()) == b"abc"
    assert rb.at_eof()
    assert pair.a_to_b.statistics().eof_delivered
    wb.write(b"still open the other way")  # half-close: B can still answer
    wb.write_eof()
    assert await within(ra.read()) == b"still open the other way"
    assert not wa.is_closing()


async def test_close_and_wait_closed_both_sides(open_pair: Opener) -> None:
    (ra, wa), (rb, wb) = await open_pair()
    wa.write(b"bye")
    wa.close()
    assert wa.is_closing()
    await within(wa.wait_closed())
    wa.write(b"dropped")  # like asyncio: silently dropped after close ...
    with pytest.raises(ConnectionResetError):
        await wa.drain()  # ... and drain() reports the lost connection
    assert await within(rb.read()) == b"bye"  # queued bytes, then EOF
    assert await within(ra.read()) == b""  # our own reader sees EOF
    wb.close()
    await within(wb.wait_closed())
    assert wb.is_closing()


async def test_close_delivers_queued_bytes_even_to_a_stalled_peer(open_pair: Opener) -> None:
    hooks = StreamHooks(stalled=True)
    (_, wa), (rb, _) = await open_pair(capacity=4096, hooks_a_to_b=hooks)
    payload = random.Random("close").randbytes(100_000)
    wa.write(payload)  # far above capacity: write() never blocks, drain() would
    wa.close()
    await within(wa.wait_closed())  # the pipe holds the bytes, like kernel buffers
    hooks.set_stalled(False)
    assert await within(rb.read()) == payload


async def test_writing_to_a_closed_peer_resets_the_writer(open_pair: Opener) -> None:
    pair = await open_pair()
    (ra, wa), (rb, wb) = pair
    wa.close()
    await within(wa.wait_closed())
    assert await within(rb.read()) == b""  # EOF first
    wb.write(b"x")  # the first write after the peer closed "succeeds" ...
    await wb.drain()
    await wait_until(wb.is_closing)  # ... and the RST-like reply arrives
    with pytest.raises(ConnectionResetError):
        wb.write(b"y")
        await wb.drain()
    with pytest.raises(ConnectionResetError):
        await rb.read(1)
    assert pair.b_to_a.statistics().bytes_discarded == 1
    assert await ra.read() == b""


async def test_close_abruptly_resets_both_sides(open_pair: Opener) -> None:
    pair = await open_pair()
    (ra, wa), (rb, wb) = pair
    readers = [asyncio.create_task(read_until_error(r)) for r in (ra, rb)]
    await turns(5)
    pair.close_abruptly()
    for got, exc in await within(asyncio.gather(*readers)):
        assert got == b""
        assert isinstance(exc, ConnectionResetError)
    for writer in (wa, wb):
        assert writer.is_closing()
        with pytest.raises(ConnectionResetError):
            writer.write(b"z")
            await writer.drain()
        with pytest.raises(ConnectionResetError):
            await writer.wait_closed()


async def test_abort_is_a_vanishing_peer(open_pair: Opener) -> None:
    pair = await open_pair(hooks_a_to_b=StreamHooks(stalled=True))
    (ra, wa), (rb, _) = pair
    wa.write(b"never delivered")
    wa.transport.abort()
    await within(wa.wait_closed())  # the aborting side closes cleanly
    assert await within(ra.read()) == b""
    got, exc = await within(read_until_error(rb))  # the peer sees a reset
    assert got == b"" and isinstance(exc, ConnectionResetError)
    assert pair.a_to_b.statistics().bytes_discarded == len(b"never delivered")


# --------------------------------------------------------------------------- unchanged servers
async def echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A server written against (StreamReader, StreamWriter), as for asyncio.start_unix_server."""
    try:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def echo_session(kind: str) -> None:
    if kind == "memory":
        (cr, cw), (sr, sw) = await memory_stream_pair(8192)
    else:
        (cr, cw), (sr, sw) = await socketpair_streams(sndbuf=8192, rcvbuf=8192)
    assert cw.get_extra_info("peername") is not None or kind == "socketpair"
    server = asyncio.create_task(echo_handler(sr, sw))
    try:
        cw.write(b"ping\n")
        assert await within(cr.readline()) == b"ping\n"
        payload = random.Random("echo").randbytes(300_000)

        async def send() -> None:
            await write_all(cw, payload, random.Random(5), max_write=3000)
            cw.write_eof()

        sender = asyncio.create_task(send())
        echoed = await within(cr.read())  # until the server's EOF
        await within(sender)
        await within(server)
        assert echoed == payload
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
        await aclose(cw)


@pytest.mark.parametrize("kind", ["memory", "socketpair"])
async def test_echo_server_runs_unchanged(kind: str) -> None:
    await echo_session(kind)


@pytest.mark.parametrize("kind", ["memory", "socketpair"])
def test_echo_in_fresh_event_loops(kind: str) -> None:
    asyncio.run(echo_session(kind))
    asyncio.run(echo_session(kind))  # a second loop: no state leaks across loops


async def test_socketpair_backpressure(open_pair: Opener) -> None:
    (_, wa), (rb, _) = await open_pair("socketpair", sndbuf=4096, rcvbuf=4096)
    payload = random.Random("sp").randbytes(4_000_000)  # far above every buffer on the way
    task = asyncio.create_task(write_all(wa, payload, random.Random(9)))
    await turns(100)
    assert not task.done()
    assert await within(rb.readexactly(len(payload))) == payload
    await within(task)
