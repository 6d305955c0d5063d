"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, between tailup and the S3 server.

It runs its own event loop in a thread (so the same proxy serves an in-process daemon or a
subprocess one) and, for each request, either forwards it or injects one fault:

- ``500`` / ``503``: answers an S3-style error (InternalError, SlowDown) without forwarding;
- ``reset``: resets the connection before forwarding (the server never sees the request);
- ``reset_after``: forwards, then resets instead of relaying the answer: the server did it and the
  client does not know (a lost reply: retried parts arrive twice, a retried Complete finds
  NoSuchUpload, a retried Create leaves an orphan upload);
- ``stall``: holds the request without answering for ``stall_s``, then resets (the client's read
  timeout must fire first).

Faults are dealt from a deck reshuffled (seeded) every ``len(deck)`` requests, so each kind
occurs a known number of times per block of requests rather than maybe never. A test can also
``hold`` one matching request until it releases it (to act while a part is in flight).
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

# Transient faults, which a random deck deals: the streams must ride them out.
FAULTS = ("500", "503", "reset", "reset_after", "stall")
# Never dealt at random, only aimed or set as a deck on purpose: an S3 NoSuchUpload answer
# without forwarding (as AWS S3 answers a Complete retried after the upload was completed), and
# AccessDenied (a permanent refusal: the stream fails and waits for a retry).
AIMED_ONLY = ("no_such_upload", "403")
_HOP_BY_HOP = {"connection", "keep-alive", "expect", "proxy-connection", "te", "upgrade"}


def operation(method: str, target: str) -> str:
    """The S3 operation a request is (for stats and for choosing what to hold)."""
    query = target.partition("?")[2]
    if method == "PUT":
        return "UploadPart" if "uploadId=" in query else "PutObject"
    if method == "POST":
        return "CompleteMultipartUpload" if "uploadId=" in query else "CreateMultipartUpload"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId=" in query else "DeleteObject"
    if method == "GET" and "uploadId=" in query:
        return "ListParts"
    if method == "GET" and (query.startswith("uploads") or "&uploads" in query):
        return "ListMultipartUploads"
    return f"{method}"


@dataclass
class Hold:
    """One request matching ``predicate`` waits, once, until ``release()``."""

    predicate: Callable[[str, str], bool]
    held: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    claimed: bool = False

    def release(self) -> None:
        self.released.set()


@dataclass
class Aim:
    """The next ``times`` requests matching ``predicate`` get ``fault`` (before the deck)."""

    predicate: Callable[[str, str], bool]
    fault: str
    times: int = 1
    hits: int = 0


@dataclass
class Request:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return ""


class FaultProxy:
    def __init__(
        self,
        upstream_port: int,
        *,
        seed: int,
        deck: Sequence[str] = (),
        stall_s: float = 5.0,
    ) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.seed = seed
        self._rng = random.Random(seed)
        self._deck_template = list(deck)
        self._deck: list[str] = []
        self.stall_s = stall_s
        self.port = 0
        self.stats: Counter[str] = Counter()  # fault kind or "forwarded"
        self.log: list[tuple[str, str]] = []  # (operation, outcome) in arrival order
        self._holds: list[Hold] = []
        self._aims: list[Aim] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- control (any thread) --

    def set_deck(self, deck: Sequence[str]) -> None:
        """Faults to deal from now on (each entry: a fault kind or "ok"); empty: no faults."""
        with self._lock:
            self._deck_template = list(deck)
            self._deck = []

    def hold(self, predicate: Callable[[str, str], bool]) -> Hold:
        hold = Hold(predicate)
        with self._lock:
            self._holds.append(hold)
        return hold

    def aim(self, predicate: Callable[[str, str], bool], fault: str, times: int = 1) -> Aim:
        """Give ``fault`` to the next ``times`` requests matching ``predicate(op, target)``."""
        if fault not in FAULTS + AIMED_ONLY:
            raise ValueError(f"unknown fault {fault!r}")
        aimed = Aim(predicate, fault, times)
        with self._lock:
            self._aims.append(aimed)
        return aimed

    def outcomes(self, op: str) -> list[str]:
        """What happened to each request of operation ``op``, in arrival order."""
        with self._lock:
            return [outcome for o, outcome in self.log if o == op]

    def faults_injected(self) -> int:
        with self._lock:
            return sum(n for kind, n in self.stats.items() if kind in FAULTS)

    def __enter__(self) -> Self:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.port = future.result(timeout=10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for hold in list(self._holds):
            hold.release()
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    # -- the proxy (its own loop) --

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections):
            writer.transport.abort()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _next_fault(self, op: str = "", target: str = "") -> str:
        with self._lock:
            for aimed in self._aims:
                if aimed.hits < aimed.times and aimed.predicate(op, target):
                    aimed.hits += 1
                    return aimed.fault
            if not self._deck_template:
                return "ok"
            if not self._deck:
                self._deck = list(self._deck_template)
                self._rng.shuffle(self._deck)
            return self._deck.pop()

    def _claim_hold(self, op: str, target: str) -> Hold | None:
        with self._lock:
            for hold in self._holds:
                if not hold.claimed and hold.predicate(op, target):
                    hold.claimed = True
                    return hold
        return None

    def _record(self, op: str, outcome: str) -> None:
        with self._lock:
            self.stats[outcome] += 1
            self.log.append((op, outcome))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                request = await _read_request(reader, writer)
                if request is None:
                    return
                if not await self._handle(request, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        finally:
            self._connections.discard(writer)
            if not writer.transport.is_closing():
                writer.close()

    async def _handle(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the client connection is done."""
        op = operation(request.method, request.target)
        hold = self._claim_hold(op, request.target)
        if hold is not None:
            hold.held.set()
            await asyncio.to_thread(hold.released.wait)
        fault = self._next_fault(op, request.target)
        self._record(op, "forwarded" if fault == "ok" else fault)
        if fault in _ERRORS:
            writer.write(_error_response(request.method, fault))
            await writer.drain()
            return True
        if fault == "reset":
            _reset(writer)
            return False
        if fault == "stall":
            await asyncio.sleep(self.stall_s)
            _reset(writer)
            return False
        response, keep_open = await self._forward(request)
        if fault == "reset_after":
            _reset(writer)
            return False
        writer.write(response)
        await writer.drain()
        return keep_open

    async def _forward(self, request: Request) -> tuple[bytes, bool]:
        reader, writer = await asyncio.open_connection(*self.upstream)
        try:
            headers = [(k, v) for k, v in request.headers if k.lower() not in _HOP_BY_HOP]
            head = f"{request.method} {request.target} HTTP/1.1\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "Connection: close\r\n\r\n"
            writer.write(head.encode("latin-1") + request.body)
            await writer.drain()
            return await _read_response(reader, request.method)
        finally:
            writer.close()


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = [(k.strip(), v.strip()) for k, _, v in (x.partition(":") for x in lines[1:] if x)]
    request = Request(method, target, headers, b"")
    if request.header("expect").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    if request.header("transfer-encoding").lower() == "chunked":
        request.body = await _read_chunked(reader)
    else:
        request.body = await reader.readexactly(int(request.header("content-length") or 0))
    return request


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """The raw chunked body, framing included (it is relayed as is)."""
    raw = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        raw += size_line
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            while True:  # trailers, then the empty line
                line = await reader.readuntil(b"\r\n")
                raw += line
                if line == b"\r\n":
                    return bytes(raw)
        raw += await reader.readexactly(size + 2)


async def _read_response(reader: asyncio.StreamReader, method: str) -> tuple[bytes, bool]:
    """(the response to relay, whether the client connection can stay open after it)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = [(k.strip(), v.strip()) for k, _, v in (x.partition(":") for x in lines[1:] if x)]
    names = {k.lower(): v for k, v in headers}
    keep_open = True
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        body = b""
    elif names.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    elif "content-length" in names:
        body = await reader.readexactly(int(names["content-length"]))
    else:
        body = await reader.read()  # delimited by the end of the connection
        keep_open = False
    relayed = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
    out = lines[0] + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in relayed)
    if not keep_open:
        out += "Connection: close\r\n"
    return (out + "\r\n").encode("latin-1") + body, keep_open


_ERRORS = {
    "500": ("500 Internal Server Error", "InternalError", "injected by the test proxy"),
    "503": ("503 Slow Down", "SlowDown", "Please reduce your request rate (test proxy)"),
    # An IAM policy still propagating, an expired session token: permanent to S3's client.
    "403": ("403 Forbidden", "AccessDenied", "Access Denied (test proxy)"),
    "no_such_upload": (
        "404 Not Found",
        "NoSuchUpload",
        "The specified multipart upload does not exist (test proxy)",
    ),
}


def _error_response(method: str, fault: str) -> bytes:
    status, code, message = _ERRORS[fault]
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message><RequestId>faultproxy</RequestId></Error>"
    ).encode()
    if method == "HEAD":
        body = b""
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a crashed peer or a middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def fault_deck(ok: int, *faults: str) -> list[str]:
    """A deck with ``ok`` forwarded requests and each of ``faults`` once."""
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}")
    return ["ok"] * ok + list(faults)
