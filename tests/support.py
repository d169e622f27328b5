"""Helpers shared by the tests: recorded server answers and an aioresponses router."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aioresponses import CallbackResult
from yarl import URL

FIXTURES = Path(__file__).parent / "fixtures" / "real-server"
BASE = "https://bio.example"
API = f"{BASE}/api.php"
TOKEN = "tok3nSECRETvalue-do-not-log"
COOKIES = {"session": "sessSECRETcookie", "userid": "2"}


def _fake_secrets() -> list[str]:
    from biotorrents_async.testing import DEMO_COOKIES, DEMO_TOKEN, FakeUser
    from biotorrents_async.testing._server import ADMIN_TOKEN

    keys = []
    for user_id in range(1, 300):
        user = FakeUser(user_id, "x")
        keys += [user.passkey, user.authkey]
    return [DEMO_TOKEN, ADMIN_TOKEN, DEMO_COOKIES["session"], *keys]


#: Values that must never show in a log line, repr or exception message.
SECRETS = [TOKEN, COOKIES["session"], *_fake_secrets()]


@dataclass
class Exchange:
    """One recorded HTTP answer: status, headers and the raw body."""

    status: int
    headers: dict[str, str]
    body: bytes


def load_exchanges(name: str) -> list[Exchange]:
    """Parse a recorded `.txt` file (one or more exchanges) from the real server."""
    raw = (FIXTURES / name).read_bytes()
    chunks = re.split(rb"(?m)^###[^\n]*\n", raw)
    out = []
    for chunk in chunks:
        text = b"\n".join(ln for ln in chunk.split(b"\n") if not ln.startswith(b"###"))
        start = text.find(b"HTTP/1.")
        if start < 0:
            continue
        head, _, body = text[start:].partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode().split("\r\n")
        headers = {}
        for line in header_lines:
            key, _, value = line.partition(":")
            headers[key.strip()] = value.strip()
        if body.endswith(b"\n"):
            body = body[:-1]  # the recorder's own line break
        out.append(Exchange(int(status_line.split()[1]), headers, body))
    return out


def load_exchange(name: str) -> Exchange:
    (only,) = load_exchanges(name)
    return only


def response_of(name: str) -> Any:
    """The `response` value of a recorded success envelope."""
    return json.loads(load_exchange(name).body)["response"]


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    data: Any


Handler = Callable[[Call], "Exchange | CallbackResult | BaseException"]


@dataclass
class Router:
    """Answers every request to the API URL from a queue or a handler function."""

    calls: list[Call] = field(default_factory=list)
    queue: list[Any] = field(default_factory=list)
    handler: Handler | None = None

    def reply(self, *answers: Exchange | str | BaseException) -> None:
        """Queue answers: Exchange, a fixture file name, or an exception to raise."""
        for answer in answers:
            if isinstance(answer, str):
                answer = load_exchange(answer)
            self.queue.append(answer)

    def json(self, body: str, status: int = 200, **headers: str) -> None:
        self.queue.append(
            Exchange(
                status, {"Content-Type": "application/json", **headers}, body.encode()
            )
        )

    def __call__(self, url: URL, **kwargs: Any) -> CallbackResult:
        call = Call(
            method=kwargs.get("method", "GET"),
            path=url.path,
            query=dict(url.query),
            headers=dict(kwargs.get("headers") or {}),
            data=kwargs.get("data"),
        )
        self.calls.append(call)
        if self.queue:
            answer = self.queue.pop(0)
        elif self.handler is not None:
            answer = self.handler(call)
        else:
            raise AssertionError(f"unexpected request: {call}")
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, CallbackResult):
            return answer
        headers = dict(answer.headers)
        content_type = headers.pop(
            "Content-Type", headers.pop("Content-type", "text/html")
        )
        headers.pop("Content-Length", None)
        return CallbackResult(
            status=answer.status,
            body=answer.body,
            headers=headers,
            content_type=content_type.split(";")[0],
        )


@contextlib.contextmanager
def fake_server_process(*options: str) -> Iterator[tuple[str, str]]:
    """Run ``python -m biotorrents_async fake-server`` (no rate limit) on a free port.

    Yields the base URL and the first line it printed.
    """
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "biotorrents_async",
            "fake-server",
            "--port",
            "0",
            "--rate-limit",
            "none",
            *options,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        first = proc.stdout.readline()
        yield first.split()[-1].removesuffix("/api.php"), first
    finally:
        proc.terminate()
        proc.wait(5)
        proc.stdout.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(port: int | None = None) -> Iterator[str]:
    """Run a throwaway redis-server on loopback (no persistence); yield its URL."""
    port = port or free_port()
    binary = shutil.which("redis-server") or "redis-server"
    with tempfile.TemporaryDirectory() as folder:
        proc = subprocess.Popen(  # noqa: S603 - our own arguments
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                folder,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("redis-server did not start") from None
                    time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)
