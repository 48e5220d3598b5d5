"""Security: token checks, limits, slow clients and what reaches the logs, against real uvicorn
servers on 127.0.0.1 driven by real HTTP, WebSocket and raw TCP clients."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from sipgate_ai_flow import Assistant, Call, UserSpeak
from sipgate_ai_flow.errors import StateError
from sipgate_ai_flow.protocol.codec import parse_event
from sipgate_ai_flow.server import auth, create_app
from sipgate_ai_flow.server import guard as guard_module
from sipgate_ai_flow.server.guard import GuardedHTTPProtocol, guarded_http
from sipgate_ai_flow.state.redis import RedisStore
from tests.helpers import ROOT, aiflow_serve, event, running_server, session

TOKEN = "tok-7f3a9c2e51"
SECRET_TEXT = "my pin is 4711 and I live at Elm Street 5"
CALLER = "4915199887766"
FLOW = "4921199001122"


def echo() -> Assistant:
    assistant = Assistant(token=TOKEN)
    assistant.on_session_start(lambda ev: "Welcome")
    assistant.on_user_speak(lambda ev: f"heard {len(ev.text)} characters")
    return assistant


async def raw_exchange(address: str, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send ``data`` on a fresh TCP connection and read until the server closes it."""
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    try:
        async with asyncio.timeout(wait):
            return await reader.read()
    finally:
        writer.close()


async def response_head(address: str, data: bytes) -> bytes:
    """Send ``data`` on a fresh TCP connection; the status line and headers of the answer."""
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    try:
        async with asyncio.timeout(5):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


async def trickle(address: str, seconds: float) -> bool:
    """Send request headers a byte every 50 ms for ``seconds``; whether the server closed on us."""
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request = b"POST /webhook HTTP/1.1\r\nhost: x\r\nx-padding: " + b"a" * 10_000
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    try:
        for byte in request:
            if loop.time() > end:
                return False
            writer.write(bytes([byte]))
            try:
                if await asyncio.wait_for(reader.read(1), 0.05) == b"":
                    return True
            except TimeoutError:
                continue
        return False
    except ConnectionError:
        return True
    finally:
        writer.close()


# -- slow and oversized clients ----------------------------------------------------------------


@pytest.fixture(params=["httptools", "h11"])
def guarded(request: pytest.FixtureRequest) -> Iterator[str]:
    # The guard wraps either of uvicorn's HTTP protocols.
    app = create_app(echo(), body_timeout=0.5)
    http = guarded_http(header_timeout=0.5, max_header_bytes=16 * 1024, http=request.param)
    with running_server(app, http=http) as address:
        yield address


async def test_headers_sent_slowly_are_cut_off_while_others_are_served(guarded: str) -> None:
    slow = asyncio.create_task(trickle(guarded, seconds=5))
    async with httpx.AsyncClient(base_url=f"http://{guarded}", headers={"X-API-TOKEN": TOKEN}) as client:
        for _ in range(5):
            await asyncio.sleep(0.1)
            assert (await client.post("/webhook", json=event("session_start"))).status_code == 200
    assert await slow  # closed by the server, long before the 5 s were up


async def test_without_the_guard_uvicorn_lets_slow_headers_hang_on() -> None:
    # The reason the guard exists: plain uvicorn keeps such a connection open.
    with running_server(create_app(echo())) as address:
        assert not await trickle(address, seconds=1.5)


async def test_a_connection_that_sends_nothing_is_closed(guarded: str) -> None:
    assert await raw_exchange(guarded, b"", wait=3) == b""


async def test_headers_over_the_limit_get_431(guarded: str) -> None:
    request = b"POST /webhook HTTP/1.1\r\nhost: x\r\n" + b"x-filler: " + b"a" * 40_000 + b"\r\n"
    assert (await raw_exchange(guarded, request)).startswith(b"HTTP/1.1 431 ")


async def test_the_guard_leaves_kept_alive_connections_and_websockets_alone(guarded: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{guarded}", headers={"X-API-TOKEN": TOKEN}) as client:
        for _ in range(4):  # one connection, each request well within its own deadline
            assert (await client.post("/webhook", json=event("session_start"))).status_code == 200
            await asyncio.sleep(0.3)
    async with connect(f"ws://{guarded}/ws?token={TOKEN}") as ws:
        await asyncio.sleep(1.2)  # more than twice the header timeout
        await ws.send(json.dumps(event("session_start")))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["text"] == "Welcome"


async def test_a_large_body_in_the_first_packet_is_not_mistaken_for_headers(guarded: str) -> None:
    body = json.dumps(event("user_speak", text="x" * 200_000)).encode()
    head = f"POST /webhook HTTP/1.1\r\nhost: x\r\nx-api-token: {TOKEN}\r\ncontent-length: {len(body)}\r\n"
    reply = await raw_exchange(guarded, head.encode() + b"connection: close\r\n\r\n" + body)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b"heard 200000 characters" in reply


def webhook_request(
    body: bytes, *, chunked: int = 0, path: str = "/webhook", length: str = "Content-Length"
) -> bytes:
    """A keep-alive webhook request with ``body``, framed by length (the header spelt as
    ``length``) or in chunks of ``chunked`` bytes."""
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\nx-api-token: {TOKEN}\r\n"
    if not chunked:
        return f"{head}{length}: {len(body)}\r\n\r\n".encode() + body
    pieces = [body[i : i + chunked] for i in range(0, len(body), chunked)]
    framed = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + framed + b"0\r\nx-trailer: 1\r\n\r\n"


async def test_bodies_are_told_from_the_next_requests_headers(guarded: str) -> None:
    # Requests back to back on one connection, pipelined in one write and split every 3 bytes:
    # bodies of either framing, with blank lines in them or over the header limit, are no
    # headers, and the headers of each next request are complete within their time.
    body = json.dumps(event("session_start")).encode()
    pretty = json.dumps(event("session_start"), indent=2).replace("\n", "\r\n\r\n").encode()
    large = json.dumps(event("user_speak", text="x" * 20_000)).encode()
    requests = [
        webhook_request(body),
        webhook_request(pretty, chunked=7),
        webhook_request(large, chunked=1000),
        webhook_request(large),
        webhook_request(body),
    ]
    host, port = guarded.split(":")
    for split in (len(b"".join(requests)), 3):
        reader, writer = await asyncio.open_connection(host, int(port))
        data = b"".join(requests)
        for piece in [data[i : i + split] for i in range(0, len(data), split)]:
            writer.write(piece)
            await writer.drain()
        try:
            async with asyncio.timeout(5):
                for request in requests:
                    head = await reader.readuntil(b"\r\n\r\n")
                    assert head.startswith(b"HTTP/1.1 200 ")
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    answer = await reader.readexactly(length)
                    assert (b"heard 20000 characters" if len(request) > 20_000 else b"Welcome") in answer
        finally:
            writer.close()


class _Inner(asyncio.Protocol):
    def data_received(self, data: bytes) -> None:
        pass


class _Socket(asyncio.Transport):
    """What the guard writes, when fed directly: a server cannot be made to split its reads at a
    chosen byte."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def is_closing(self) -> bool:
        return self.closed

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True


def fed(reads: list[bytes], max_header_bytes: int) -> GuardedHTTPProtocol:
    """A guard (around a protocol that reads nothing) that was fed ``reads``."""
    guard = GuardedHTTPProtocol(inner=_Inner, max_header_bytes=max_header_bytes)
    guard.transport = _Socket()
    for read in reads:
        if not guard.transport.is_closing():
            guard.data_received(read)
    return guard


def splits(stream: bytes) -> Iterator[list[bytes]]:
    """``stream`` in two reads split at every position, and a byte at a time."""
    for at in range(len(stream) + 1):
        yield [stream[:at], stream[at:]]
    yield [stream[i : i + 1] for i in range(len(stream))]


def test_the_guard_finds_each_request_wherever_the_reads_split_it() -> None:
    # TCP may split the bytes anywhere: fed the same requests split at every position, the guard
    # sees each request's headers end (its count goes up), takes no body for headers and
    # answers nothing.
    body = json.dumps(event("session_start")).encode()
    pretty = json.dumps(event("session_start"), indent=2).replace("\n", "\r\n\r\n").encode()
    stream = webhook_request(body) + webhook_request(pretty, chunked=7) + webhook_request(b"\r\n\r\n")
    for spelling in ("content-length", "CONTENT-LENGTH", "content-Length"):
        stream += webhook_request(pretty, length=spelling)
    for reads in splits(stream):
        guard = fed(reads, max_header_bytes=400)
        assert guard.transport.written == b"", reads
        assert guard.phase() is None  # between requests: nothing to time
        assert guard.requests == 6, reads


def test_the_header_limit_is_exact_wherever_the_reads_split_the_headers() -> None:
    # Headers of exactly the limit pass, one byte more gets 431, in one read or split anywhere,
    # with the body behind them in the same reads.
    def request(head_bytes: int) -> bytes:
        head = b"POST /webhook HTTP/1.1\r\ncontent-length: 2\r\nx-pad: "
        return head + b"a" * (head_bytes - len(head) - 4) + b"\r\n\r\n{}"

    for reads in splits(request(200)):
        guard = fed(reads, max_header_bytes=200)
        assert (guard.transport.written, guard.requests) == (b"", 1), reads
    for reads in splits(request(201)):
        assert fed(reads, max_header_bytes=200).transport.written.startswith(b"HTTP/1.1 431 "), reads
    # Blank lines before a request are allowed; they are no end of its headers (found in review).
    for reads in splits(b"\r\n\r\n" + request(400)):
        assert fed(reads, max_header_bytes=200).transport.written.startswith(b"HTTP/1.1 431 "), reads


def test_the_guard_keeps_a_websocket_upgrade_request_wherever_the_reads_split_it() -> None:
    # The request goes to the websockets library's parser if uvicorn's protocol leaves it
    # unanswered: the guard must hold all of it, and nothing of what follows (frames), however
    # TCP split it, and also behind another request in the same read.
    upgrade = (
        b"GET /ws?token=t HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n"
        b"sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    frame = b"\x81\x85\x00\x00\x00\x00hello"
    for reads in splits(b"\r\n" + upgrade + frame):
        guard = fed(reads, max_header_bytes=400)
        assert (guard.upgrade_request, guard.requests) == (upgrade, 1), reads
    before = webhook_request(json.dumps(event("session_start")).encode())
    for reads in splits(before + upgrade):
        assert fed(reads, max_header_bytes=400).upgrade_request == upgrade, reads


def test_an_upgrade_behind_a_body_full_of_get_takes_a_few_tries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Where the upgrade request begins is tried at each "GET " before it: a body made of them
    # must not make the guard parse it tens of thousands of times (found in review: 1.7 s in
    # one read, every other connection waiting).
    made: list[object] = []
    real = guard_module._parser

    def counted(steps: list[None]) -> Any:
        made.append(steps)
        return real(steps)

    monkeypatch.setattr(guard_module, "_parser", counted)
    upgrade = b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n"
    body = b"GET " * 60_000
    stream = b"POST /w HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(body) + body + upgrade
    guard = fed([stream], max_header_bytes=64 * 1024)
    assert guard.requests == 2
    assert len(made) <= 1 + 8  # the connection's own parser, and the tries
    # Behind a body without "GET " it is found exactly.
    stream = stream.replace(body, b"x" * len(body))
    assert fed([stream], max_header_bytes=64 * 1024).upgrade_request == upgrade


def test_pipelined_headers_past_the_limit_get_431() -> None:
    # Headers that begin behind another request in the same read and go on past the limit.
    first = webhook_request(json.dumps(event("session_start")).encode())
    head = b"POST /webhook HTTP/1.1\r\nx-pad: " + b"a" * 300
    guard = fed([first + head, b"a" * 300, b"a" * 300], max_header_bytes=500)
    assert guard.transport.written.startswith(b"HTTP/1.1 431 ")
    assert guard.requests == 1


async def test_requests_the_parser_cannot_frame_get_400_and_others_are_served(
    guarded: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A length that is no number, a chunk size that is no hex number: the guard cannot tell where
    # the next request begins, so it refuses the request and closes, with one INFO line.
    head = f"POST /webhook HTTP/1.1\r\nhost: x\r\nx-api-token: {TOKEN}\r\n"
    bad = [
        head + "content-length: -5\r\n\r\n{}",
        head + "transfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    ]
    uvicorn_log = logging.getLogger("uvicorn.error")
    level = uvicorn_log.level
    uvicorn_log.addHandler(caplog.handler)  # it does not propagate to the root logger
    uvicorn_log.setLevel(logging.INFO)
    try:
        async with httpx.AsyncClient(base_url=f"http://{guarded}", headers={"X-API-TOKEN": TOKEN}) as client:
            for request in bad:
                reply = await raw_exchange(guarded, request.encode())
                assert reply.startswith(b"HTTP/1.1 400 "), reply
                said = json.loads(reply.partition(b"\r\n\r\n")[2])["error"]
                assert said.startswith("invalid HTTP request: Invalid character in"), said
                assert (await client.post("/webhook", json=event("session_start"))).status_code == 200
    finally:
        uvicorn_log.removeHandler(caplog.handler)
        uvicorn_log.setLevel(level)
    # Each record once (pytest may hand a logger that does not propagate its handler too).
    refusals = {id(r): r for r in caplog.records if '"HTTP request" refused (400)' in r.getMessage()}
    assert [r.levelno for r in refusals.values()] == [logging.INFO, logging.INFO]


async def test_headers_sent_slowly_after_a_response_are_cut_off(guarded: str) -> None:
    # The same connection first gets an answer, then trickles its next request's headers.
    host, port = guarded.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(webhook_request(json.dumps(event("session_start")).encode()))
        async with asyncio.timeout(5):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        closed = False
        async with asyncio.timeout(5):
            for byte in b"POST /webhook HTTP/1.1\r\nhost: x\r\nx-padding: " + b"a" * 10_000:
                writer.write(bytes([byte]))
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(65536), 0.05) == b"":
                        closed = True
                        break
        assert closed
    finally:
        writer.close()


async def test_a_large_body_answered_unread_is_not_taken_for_headers(guarded: str) -> None:
    # A path that does not exist is answered (404) before its body is read; the body, over the
    # header limit, goes by and the connection serves the next request.
    host, port = guarded.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(webhook_request(b"x" * 100_000, path="/nowhere"))
        writer.write(webhook_request(json.dumps(event("session_start")).encode()))
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 404 ")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
    finally:
        writer.close()


async def test_a_body_trickled_after_its_answer_is_cut_off(guarded: str) -> None:
    # Answered before its body came (404), the body trickles on: no request, no app holds the
    # connection, so it has the header timeout for the rest.
    host, port = guarded.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(webhook_request(b"x" * 100_000, path="/nowhere")[:-99_000])
        async with asyncio.timeout(5):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 404 ")
        closed = False
        async with asyncio.timeout(5):
            for _ in range(99_000):
                writer.write(b"x")
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(65536), 0.05) == b"":
                        closed = True
                        break
        assert closed
    finally:
        writer.close()


async def test_a_stalled_body_gets_408_and_the_server_goes_on(guarded: str) -> None:
    head = f"POST /webhook HTTP/1.1\r\nhost: x\r\nx-api-token: {TOKEN}\r\ncontent-length: 500\r\n\r\n"
    reply = await raw_exchange(guarded, head.encode() + b'{"type": "sess', wait=5)
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert b"request body not complete within 0.5 s" in reply
    assert b"\r\nconnection: close\r\n" in reply  # the rest of that body is no next request
    async with httpx.AsyncClient(headers={"X-API-TOKEN": TOKEN}) as client:
        response = await client.post(f"http://{guarded}/webhook", json=event("session_start"))
    assert response.json()["text"] == "Welcome"


async def send_whole(address: str, data: bytes) -> bytes:
    """Send ``data`` while reading the answer until the server closes the connection, as a
    client does that writes its whole request first; a reset raises ``ConnectionResetError``
    (or ``BrokenPipeError``)."""
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))

    async def write() -> None:
        writer.write(data)
        await writer.drain()

    try:
        async with asyncio.timeout(10):
            sending = asyncio.create_task(write())
            reply = await reader.read()
            await sending
            return reply
    finally:
        writer.close()


def oversized(chunked: bool = False, **headers: str) -> bytes:
    """A webhook request with a body of 2 MB (twice the default limit)."""
    body = json.dumps(event("user_speak", text="x" * 2_000_000)).encode()
    head = "POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    if not chunked:
        return f"{head}content-length: {len(body)}\r\n\r\n".encode() + body
    pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    framed = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return f"{head}transfer-encoding: chunked\r\n\r\n".encode() + framed + b"0\r\n\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (oversized(**{"x-api-token": TOKEN}), 413),
        (oversized(chunked=True, **{"x-api-token": TOKEN}), 413),
        (oversized(**{"x-api-token": "wrong"}), 401),
        (oversized(**{"x-api-token": TOKEN, "content-type": "text/plain"}), 415),
    ],
    ids=["too-large", "too-large-chunked", "wrong-token", "not-json"],
)
async def test_a_refused_body_gets_its_answer_not_a_reset_while_others_are_served(
    request_bytes: bytes, status: int
) -> None:
    # The server `aiflow serve` runs, with its default limits: the refusal went out with the
    # body unread, the guard took the rest of the body for the next request's headers and
    # closed the connection with data unread, which resets it.
    with running_server(create_app(echo()), http=guarded_http()) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}", headers={"X-API-TOKEN": TOKEN}) as client:

            async def keep_calling() -> None:
                for _ in range(20):
                    assert (await client.post("/webhook", json=event("session_start"))).status_code == 200

            others = [asyncio.create_task(keep_calling()) for _ in range(6)]
            for _ in range(3):
                reply = await send_whole(address, request_bytes)
                assert reply.startswith(f"HTTP/1.1 {status} ".encode())
                assert reply.count(b"HTTP/1.1 ") == 1  # one answer, and nothing after it
                assert b"\r\nconnection: close\r\n" in reply
            await asyncio.gather(*others)


async def test_a_body_far_over_the_limit_is_not_read_to_its_end(guarded: str) -> None:
    # Refused bodies are drained so that the answer arrives, but not without bound: a client
    # that declared 10 GB and keeps sending is answered at once and cut off after 16 MiB.
    host, port = guarded.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    answer = asyncio.create_task(reader.read(100))  # before the reset that must end this
    head = f"POST /webhook HTTP/1.1\r\nhost: x\r\nx-api-token: {TOKEN}\r\ncontent-length: {10**10}\r\n\r\n"
    writer.write(head.encode())
    sent = 0
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(10):
            while sent < 200 * 1024 * 1024:
                writer.write(b"x" * 65536)
                await writer.drain()
                await asyncio.sleep(0)  # drain() need not yield: let the answer be read as it comes
                sent += 65536
    writer.close()
    assert sent < 64 * 1024 * 1024
    assert (await answer).startswith(b"HTTP/1.1 413 ")


def upgrade_request(*header_lines: str, path: str = "/ws") -> bytes:
    """A WebSocket upgrade request with ``header_lines`` added."""
    lines = [
        f"GET {path} HTTP/1.1",
        "host: x",
        "upgrade: websocket",
        "connection: Upgrade",
        "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version: 13",
        *header_lines,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_upgrade_requests_the_websocket_library_cannot_parse_are_refused_at_once(
    tmp_path: Path,
) -> None:
    # The websockets library refuses a header line over 8 KiB and more than 128 headers; uvicorn's
    # sans-io protocol never sent its answer nor closed. `aiflow serve` as it runs for real.
    with aiflow_serve("examples/echo.py:assistant", "--token", TOKEN, log=tmp_path / "serve.log") as (
        address,
        _,
    ):
        for lines in ([f"x-api-token: {'a' * 9000}"], [f"x-filler-{n}: {n}" for n in range(200)]):
            reply = await raw_exchange(address, upgrade_request(*lines), wait=5)
            assert reply.startswith(b"HTTP/1.1 431 ")
        # A header line within the limit reaches the app, which refuses the wrong token.
        reply = await raw_exchange(address, upgrade_request(f"x-api-token: {'a' * 8000}"), wait=5)
        assert reply.startswith(b"HTTP/1.1 401 ")


async def test_an_upgrade_the_library_refuses_below_the_quick_check_is_refused_at_the_next_sweep(
    tmp_path: Path,
) -> None:
    # Only requests near the library's default limits are parsed a second time at once; with a
    # lower limit set through its environment variable, a 2,000-byte line is refused by the
    # watch's next sweep (within a second) instead of being left hanging.
    env = {"WEBSOCKETS_MAX_LINE_LENGTH": "1000"}
    with aiflow_serve("examples/echo.py:assistant", "--token", TOKEN, log=tmp_path / "s.log", env=env) as (
        address,
        _,
    ):
        reply = await raw_exchange(address, upgrade_request(f"x-filler: {'a' * 2000}"), wait=5)
        assert reply.startswith(b"HTTP/1.1 431 ")
        # Within the lower limit, the handshake reaches the app as ever.
        reply = await raw_exchange(address, upgrade_request(f"x-api-token: {'a' * 900}"), wait=5)
        assert reply.startswith(b"HTTP/1.1 401 ")


async def test_an_upgrade_nobody_answers_is_held_to_the_header_timeout() -> None:
    # Whatever keeps an upgrade request unanswered (here an app that never accepts nor refuses
    # it), the guard closes the connection after the header timeout.
    async def never_answers(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive())["type"] != "websocket.disconnect":
            pass

    with running_server(never_answers, http=guarded_http(header_timeout=0.5)) as address:
        assert await raw_exchange(address, upgrade_request(), wait=5) == b""


# -- content types -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("Application/JSON", 200),
        ("application/vnd.aiflow+json", 200),
        (None, 200),
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("application/x-python-pickle", 415),
        ("multipart/form-data; boundary=x", 415),
    ],
)
async def test_only_json_bodies_are_read(content_type: str | None, status: int) -> None:
    headers = {"X-API-TOKEN": TOKEN} | ({"Content-Type": content_type} if content_type else {})
    with running_server(create_app(echo())) as address:
        async with httpx.AsyncClient(headers=headers) as client:
            response = await client.post(
                f"http://{address}/webhook", content=json.dumps(event("session_start"))
            )
    assert response.status_code == status
    if status == 415:
        assert "Content-Type must be application/json" in response.json()["error"]


# -- WebSocket limits --------------------------------------------------------------------------


async def test_websocket_connections_past_the_limit_are_refused_until_one_closes() -> None:
    app = create_app(echo(), max_connections=2)
    with running_server(app) as address:
        url = f"ws://{address}/ws?token={TOKEN}"
        async with connect(url) as first, connect(url):
            with pytest.raises(websockets.exceptions.InvalidStatus) as info:
                async with connect(url):
                    pass
            assert info.value.response.status_code == 503
            assert b"too many open WebSocket connections (limit 2)" in (info.value.response.body or b"")
            await first.send(json.dumps(event("session_start")))  # the open ones keep working
            assert json.loads(await asyncio.wait_for(first.recv(), 5))["text"] == "Welcome"
        await asyncio.sleep(0.2)
        async with connect(url) as again:  # the count went down as they closed
            await again.send(json.dumps(event("session_start")))
            assert json.loads(await asyncio.wait_for(again.recv(), 5))["text"] == "Welcome"


async def test_calls_past_the_limit_of_one_connection_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(echo(), max_calls_per_connection=2)
    with running_server(app) as address, caplog.at_level(logging.WARNING, "sipgate_ai_flow"):
        async with connect(f"ws://{address}/ws?token={TOKEN}") as ws:

            async def answer(call_id: str) -> str | None:
                await ws.send(json.dumps(event("session_start", call_id)))
                try:
                    return str(json.loads(await asyncio.wait_for(ws.recv(), 0.5))["session_id"])
                except TimeoutError:
                    return None

            assert await answer("a") == "a"
            assert await answer("b") == "b"
            assert await answer("c") is None  # a third call on this connection
            assert await answer("a") == "a"  # calls already carried go on
            await ws.send(json.dumps(event("session_end", "b")))
            assert await answer("c") == "c"  # room again once one ended
    assert "dropped an event of session c: this connection already carries 2 calls" in caplog.text


@pytest.mark.parametrize(
    "options",
    [
        {"max_connections": 0},
        {"max_calls_per_connection": -1},
        {"body_timeout": 0},
        {"max_message_size": 0},
    ],
)
def test_limits_must_be_positive(options: dict[str, Any]) -> None:
    name = next(iter(options))
    with pytest.raises(ValueError, match=f"{name} must be positive"):
        create_app(echo(), **options)


def test_the_guard_refuses_impossible_settings() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        guarded_http(header_timeout=0)
    with pytest.raises(ValueError, match="http must be 'auto', 'h11' or 'httptools'"):
        guarded_http(http="wsproto")  # type: ignore[arg-type]


def test_the_package_reaches_into_no_uvicorn_protocol() -> None:
    # The guard wraps uvicorn's protocols from the outside (issue 19): nothing of the package
    # imports their modules, let alone subclasses them.
    found = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("uvicorn.protocols"):
                found.append(f"{path.name}: {node.module}")
            elif isinstance(node, ast.Import):
                found += [
                    f"{path.name}: {a.name}" for a in node.names if a.name.startswith("uvicorn.protocols")
                ]
    assert found == []


# -- the shared secret ---------------------------------------------------------------------------


async def test_every_token_check_is_a_constant_time_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    with running_server(create_app(echo())) as address:
        async with httpx.AsyncClient() as client:
            for given in (TOKEN, "wrong", TOKEN[:-1], TOKEN + "x"):
                await client.post(
                    f"http://{address}/webhook", json=event("session_start"), headers={"X-API-TOKEN": given}
                )
        for query in (f"?token={TOKEN}", "?token=nope"):
            with (
                pytest.raises(websockets.exceptions.InvalidStatus)
                if "nope" in query
                else contextlib.nullcontext()
            ):
                async with connect(f"ws://{address}/ws{query}"):
                    pass
        async with connect(f"ws://{address}/ws", additional_headers={"X-API-TOKEN": TOKEN}):
            pass
    given = [a for a, _ in compared]
    assert given == [b.encode() for b in (TOKEN, "wrong", TOKEN[:-1], TOKEN + "x", TOKEN, "nope", TOKEN)]
    assert all(b == TOKEN.encode() for _, b in compared)


async def test_odd_tokens_are_refused_not_crashed() -> None:
    with running_server(create_app(echo())) as address:
        # A NUL is not allowed in a header: the HTTP parser refuses it before the app sees it.
        for token, status in (
            (b"", b"401"),
            (b"\xff\xfe", b"401"),
            ("tök".encode(), b"401"),
            (b"a" * 8000, b"401"),
            (TOKEN.encode() + b"\x00", b"400"),
        ):
            request = (
                b"POST /webhook HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 2\r\n"
                b"x-api-token: " + token + b"\r\n\r\n{}"
            )
            assert (await raw_exchange(address, request)).startswith(b"HTTP/1.1 " + status)
        for query in ("?token=%FF", "?token=" + "a" * 4000, "?token=%00"):
            with pytest.raises(websockets.exceptions.InvalidStatus) as info:
                async with connect(f"ws://{address}/ws{query}"):
                    pass
            assert info.value.response.status_code == 401


# -- logs ----------------------------------------------------------------------------------------


async def test_no_secret_number_or_call_text_reaches_the_logs_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assistant = Assistant(token=TOKEN, budget=0.2, hold="One moment.")

    @assistant.on_user_speak
    async def speak(ev: UserSpeak, call: Call) -> str:
        call.state["said"] = ev.text
        if "slow" in ev.text:
            await asyncio.sleep(0.4)
        if "crash" in ev.text:
            raise RuntimeError("the handler broke")
        return f"You said: {ev.text}"

    who = session("log-call", phone_number=FLOW, from_phone_number=CALLER, to_phone_number=FLOW)

    def doc(kind: str, **fields: Any) -> str:
        return json.dumps({"type": kind, "session": who, **fields})

    uvicorn_loggers = [logging.getLogger(name) for name in ("uvicorn.access", "uvicorn.error")]
    with running_server(create_app(assistant), log_level="info", access_log=True) as address:
        for logger in uvicorn_loggers:  # they do not propagate to the root logger
            logger.addHandler(caplog.handler)
        caplog.set_level(logging.INFO)
        try:
            async with httpx.AsyncClient(headers={"X-API-TOKEN": TOKEN}) as client:
                url = f"http://{address}/webhook"
                for text in (SECRET_TEXT, f"slow {SECRET_TEXT}", f"crash {SECRET_TEXT}"):
                    await client.post(url, content=doc("user_speak", text=text))
                bad = {
                    "type": "user_speak",
                    "text": SECRET_TEXT,
                    "session": {**who, "to_phone_number": [CALLER]},
                }
                assert (await client.post(url, json=bad)).status_code == 400
                await client.post(url, json=bad, headers={"X-API-TOKEN": TOKEN + "-wrong"})
            async with connect(f"ws://{address}/ws?token={TOKEN}") as ws:
                await ws.send(doc("user_speak", text=f"crash {SECRET_TEXT}"))
                await asyncio.wait_for(ws.recv(), 5)
                await ws.send(json.dumps(bad))
                await ws.send(doc("session_end"))
            with pytest.raises(websockets.exceptions.InvalidStatus):
                async with connect(f"ws://{address}/ws?token={TOKEN}-wrong"):
                    pass
            await asyncio.sleep(0.2)
        finally:
            for logger in uvicorn_loggers:
                logger.removeHandler(caplog.handler)
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    text = "\n".join(caplog.handler.format(r) for r in records)
    # The logs did record what happened: requests, the crash, the bad input.
    assert "POST /webhook" in text
    assert "WebSocket /ws?token=***" in text
    assert "the handler broke" in text
    assert "dropped a malformed WebSocket frame" in text
    for secret in (TOKEN, CALLER, FLOW, "4711", "Elm Street"):
        assert secret not in text


@pytest.mark.parametrize(
    "query",
    [
        f"%74oken={TOKEN}",
        f"t%6Fken={TOKEN}",
        f"%74%6F%6B%65%6E={TOKEN}",
        f"token=wrong&token={TOKEN}",
        f"a=1&%74oken={TOKEN}&b=2",
        f"token={TOKEN[:3]}%{ord(TOKEN[3]):02X}{TOKEN[4:]}",
    ],
)
async def test_the_token_is_masked_in_the_log_in_every_spelling_the_server_accepts(
    query: str, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    with aiflow_serve("examples/echo.py:assistant", "--token", TOKEN, log=log) as (address, _):
        reply = await response_head(address, upgrade_request(path=f"/ws?{query}"))
        assert reply.startswith(b"HTTP/1.1 101 ")  # the server took this spelling for the token
        # and a spelling it refuses, with the secret as its value, is masked all the same
        reply = await response_head(address, upgrade_request(path=f"/ws?TOKEN={TOKEN}"))
        assert reply.startswith(b"HTTP/1.1 401 ")
        await asyncio.sleep(0.3)
    text = log.read_text()
    assert text.count('"WebSocket /ws?') == 2, text
    assert TOKEN not in text
    assert TOKEN[4:] not in text  # nor the part of a value after a percent-encoded character


def client_frame(opcode: int, payload: bytes, *, masked: bool = True) -> bytes:
    """One small WebSocket frame as a client sends it (``masked=False``: as it must not)."""
    assert len(payload) < 126
    if not masked:
        return bytes([0x80 | opcode, len(payload)]) + payload
    mask = b"\x0f\x1e\x2d\x3c"
    return (
        bytes([0x80 | opcode, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


async def test_hostile_websocket_clients_get_one_log_line_each_and_no_error(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with aiflow_serve("examples/echo.py:assistant", "--token", TOKEN, log=log) as (address, _):
        assert (await raw_exchange(address, upgrade_request())).startswith(b"HTTP/1.1 401 ")
        assert (await raw_exchange(address, upgrade_request("x-filler: " + "a" * 9000))).startswith(
            b"HTTP/1.1 431 "
        )
        # Text that is not UTF-8: closed with 1007. A frame without a mask: closed with 1002.
        for frame, code in (
            (client_frame(0x1, b'{"type": "\xff"}'), 1007),
            (client_frame(0x1, b"{}", masked=False), 1002),
        ):
            host, port = address.split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(upgrade_request(path=f"/ws?token={TOKEN}"))
            async with asyncio.timeout(5):
                assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101 ")
                writer.write(frame)
                close = await reader.read()  # to the end: the server closes the connection
            writer.close()
            assert close[0] == 0x88  # a close frame
            assert int.from_bytes(close[2:4], "big") == code
        await asyncio.sleep(0.3)
    lines = log.read_text().splitlines()
    assert not [line for line in lines if "ERROR" in line or "Traceback" in line], lines
    # One line for each, in order (the others are the server's start and stop).
    served = [line for line in lines if "WebSocket" in line]
    expected = [
        '"WebSocket /ws" 401',
        '"WebSocket upgrade" refused (',  # HeaderLineTooLong (websockets 17+), SecurityError before
        '"WebSocket /ws?token=***" [accepted]',
        "WARNING:  closed a WebSocket connection: a text frame from its client was not UTF-8 (1007)",
        '"WebSocket /ws?token=***" [accepted]',
        '"WebSocket /ws?token=***" closed (1002): incorrect masking',
    ]
    assert len(served) == len(expected), lines
    for line, part in zip(served, expected, strict=True):
        assert part in line, lines


# -- nothing but JSON ----------------------------------------------------------------------------

_RISKY_BUILTINS = {"eval", "exec", "compile", "__import__"}
_RISKY_MODULES = {"pickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle"}


def test_the_package_deserialises_nothing_but_json() -> None:
    found: list[str] = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        where = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), where)):
            if isinstance(node, ast.Import):
                found += [
                    f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in _RISKY_MODULES
                ]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in _RISKY_MODULES:
                found.append(f"{where}: import {node.module}")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in _RISKY_BUILTINS:  # a bare builtin, not re.compile and the like
                    found.append(f"{where}: {node.func.id}()")
            elif isinstance(node, ast.Call) and _is_unsafe_yaml(node.func):
                found.append(f"{where}: yaml load")
    # The one exception: `aiflow serve app.py:assistant` runs the file named on its command line.
    assert sorted(found) == [
        "src/sipgate_ai_flow/target.py: compile()",
        "src/sipgate_ai_flow/target.py: exec()",
    ]


def _is_unsafe_yaml(func: ast.expr) -> bool:
    return (
        isinstance(func, ast.Attribute)
        and func.attr in {"load", "unsafe_load", "full_load", "load_all"}
        and isinstance(func.value, ast.Name)
        and func.value.id == "yaml"
    )


@pytest.mark.parametrize(
    "stored",
    [
        b"\x80\x04\x95\x1c\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94.",  # pickle
        b"!!python/object/apply:os.system ['true']",  # unsafe YAML
        b'{"state": [["a", 1]], "starts": 0}',
        b'{"state": {}, "starts": "1"}',
        b"[]",
    ],
)
async def test_state_that_this_sdk_did_not_write_is_refused(redis_url: str, stored: bytes) -> None:
    store = RedisStore(redis_url, prefix="test-foreign:")
    try:
        await store.redis.set(store._key("s", "rec"), stored)
        with pytest.raises(StateError, match="not JSON this SDK wrote"):
            await store.load("s")
    finally:
        await store.redis.delete(store._key("s", "rec"))
        await store.close()


async def test_a_corrupt_record_gets_the_fallback_and_other_calls_go_on(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix="test-corrupt:")
    assistant = Assistant(store=store, on_user_speak=lambda ev, call: f"ok {call.id}")
    try:
        await store.redis.set(store._key("bad", "rec"), b"\x80\x04pickled")
        broken = await assistant.handle(parse_event(json.dumps(event("user_speak", "bad"))))
        fine = await assistant.handle(parse_event(json.dumps(event("user_speak", "good"))))
        assert [a.text for a in broken] == [assistant.fallback]  # type: ignore[attr-defined]
        assert [a.text for a in fine] == ["ok good"]  # type: ignore[attr-defined]
    finally:
        await store.redis.delete(store._key("bad", "rec"), store._key("good", "rec"))
        await store.close()
