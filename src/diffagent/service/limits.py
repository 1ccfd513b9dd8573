"""ASGI middleware that keeps the service safe to expose: access log, key, rate limit, body size and time.

Each class wraps the next application and answers a refusal itself, before any route runs:

    AccessLog   one log line per request: method, path (never the query, which may hold a prompt), status, ms
    BearerAuth  401 without ``Authorization: Bearer KEY`` when a key is configured (``/health`` and the page
                stay open, so that a browser can load the page and ask for the key)
    RateLimit   429 with ``Retry-After`` once a client has spent its token bucket
    BodyLimit   413 over the size limit (told by Content-Length or counted while reading), 408 for a body
                that does not arrive in time; the body is read here once and replayed to the route
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["PUBLIC_PATHS", "AccessLog", "BearerAuth", "BodyLimit", "RateLimit", "client_id"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC_PATHS = ("/", "/health", "/favicon.ico")
"""Paths answered without a key (with everything under ``/static/``): the page must load to ask for one."""

access_log = logging.getLogger("diffagent.access")


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith("/static/")


async def refuse(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """Answer ``{"detail": ...}`` with ``status``; ``detail`` is ours, never the client's input."""
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def client_id(scope: Scope, trust_forwarded_for: bool) -> str:
    """Who is asking: the peer address, or the address a trusted reverse proxy put last in X-Forwarded-For."""
    if trust_forwarded_for:
        for key, value in scope.get("headers", ()):
            if key == b"x-forwarded-for":
                last = value.decode("latin-1").split(",")[-1].strip()
                if last:
                    return last
    client = scope.get("client")
    return client[0] if client else "?"


class AccessLog:
    """Logs each request without its query string or body, so that prompts never reach the log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = [0]

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            client = scope.get("client")
            access_log.info(
                "%s %s %s %d %.1fms",
                client[0] if client else "-",
                scope["method"],
                scope["path"],
                status[0] or 500,
                (time.perf_counter() - began) * 1000,
            )


class BearerAuth:
    """Requires ``Authorization: Bearer KEY`` on every path but the public ones (constant-time compare)."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.expected = f"Bearer {key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_public(scope["path"]) or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), b"")
        if not hmac.compare_digest(given, self.expected):
            await refuse(
                send,
                401,
                "an API key is required: send Authorization: Bearer KEY",
                {"WWW-Authenticate": "Bearer"},
            )
            return
        await self.app(scope, receive, send)


class RateLimit:
    """A token bucket per client: ``burst`` requests at once, then ``rate`` a second (``/health`` is free)."""

    MAX_CLIENTS = 10_000
    """Buckets kept; when there are more, the full ones (idle clients) are forgotten."""

    def __init__(self, app: ASGIApp, rate: float, burst: int, trust_forwarded_for: bool = False) -> None:
        self.app = app
        self.rate = rate
        self.burst = max(1, burst)
        self.trust_forwarded_for = trust_forwarded_for
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when)

    def take(self, client: str, now: float) -> float:
        """Spend one token of ``client``; 0 when allowed, else the seconds until a token is back."""
        tokens, when = self.buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - when) * self.rate)
        if tokens < 1:
            self.buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate
        self.buckets[client] = (tokens - 1, now)
        if len(self.buckets) > self.MAX_CLIENTS:
            self._forget_idle(now)
        return 0.0

    def _forget_idle(self, now: float) -> None:
        for key, (tokens, when) in list(self.buckets.items()):
            if tokens + (now - when) * self.rate >= self.burst:
                del self.buckets[key]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/health" or self.rate <= 0:
            await self.app(scope, receive, send)
            return
        wait = self.take(client_id(scope, self.trust_forwarded_for), time.monotonic())
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            await refuse(send, 429, f"too many requests: retry in {seconds} s", {"Retry-After": str(seconds)})
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """Reads the body up to a per-path limit and within a time limit, then replays it to the route.

    After the body, ``receive`` passes through, so that a route can still notice the client going away.
    """

    def __init__(self, app: ASGIApp, limits: dict[str, int], default: int, timeout_s: float) -> None:
        self.app = app
        self.limits = limits
        self.default = default
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.default)
        too_large = f"the body is larger than this endpoint's limit of {limit:,} bytes"
        declared = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
        if declared is not None:
            if not declared.isdigit():
                await refuse(send, 400, "Content-Length must be a number of bytes")
                return
            if int(declared) > limit:
                await refuse(send, 413, too_large)
                return
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.timeout_s
        more = True
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                await refuse(send, 408, f"the body did not arrive within {self.timeout_s:g} s")
                return
            if message["type"] == "http.disconnect":
                return  # nobody is left to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await refuse(send, 413, too_large)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
