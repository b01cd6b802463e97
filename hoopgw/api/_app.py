"""The starlette application on ``api_listen``, served by uvicorn inside the gateway's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import h11
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from hoopgw.api._approvals import ApprovalApi, approval_routes
from hoopgw.api._http import json_response
from hoopgw.api._keys import KeyApi, key_routes
from hoopgw.api._openapi import openapi_document

if TYPE_CHECKING:
    from hoopgw.config import Listen


def build_app(
    status: Callable[[], dict[str, Any]],
    *,
    keys: KeyApi | None = None,
    approvals: ApprovalApi | None = None,
    routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """Build the API app; ``status`` reports live gateway state for /healthz; ``keys`` adds /api/keys,
    ``approvals`` /api/approvals and /api/signing-key; ``routes`` are more routes (each described in
    hoopgw/api/_openapi.py). /api/openapi.json describes the API."""
    #: set by ApiServer.stop: long polls and event streams answer at once instead of holding shutdown
    stopping = asyncio.Event()

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", **status()})

    document = openapi_document()

    async def openapi(_request: Request) -> Response:
        return json_response(document)

    all_routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/api/openapi.json", openapi, methods=["GET"]),
    ]
    if keys is not None:
        all_routes += key_routes(keys)
    if approvals is not None:
        all_routes += approval_routes(approvals, stopping)
    all_routes += routes
    app = Starlette(routes=all_routes)
    app.state.stopping = stopping
    return app


#: a connection must send a whole request head (request line and headers) within this many seconds of
#: connecting, or of starting its next request: uvicorn alone keeps a silent connection open for ever
HEAD_TIMEOUT_S = 10.0


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request head.

    Without it, anyone who reaches ``api_listen`` — no credential needed — holds a file descriptor of the
    gateway per silent or trickling connection for as long as they like; enough of them and the gateway
    can accept neither API calls nor database sessions. Idle keep-alive connections between requests
    are closed by uvicorn's own keep-alive timeout; request bodies have their own deadline
    (``hoopgw.api._http.BODY_TIMEOUT_S``).
    """

    _head_deadline: asyncio.TimerHandle | None = None

    # uvicorn's H11Protocol narrows the parameter to asyncio.Transport (its own override does too)
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_head_deadline()
        super().connection_lost(exc)

    def _watch_head(self) -> None:
        """Arm the deadline while a request head is awaited (h11 stays IDLE until it is whole)."""
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            if self._head_deadline is None:
                self._head_deadline = self.loop.call_later(HEAD_TIMEOUT_S, self._head_late)
        else:
            self._clear_head_deadline()

    def _clear_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_late(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the gateway owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """Runs the API app on ``listen`` as a task of the current loop."""

    def __init__(self, app: Starlette, listen: Listen) -> None:
        config = uvicorn.Config(
            app,
            host=listen.host,
            port=listen.port,
            http=_Protocol,
            loop="none",
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
        )
        self._server = _Server(config)
        self._app = app
        self._listen = listen
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind (raising OSError with the address on failure) and start serving."""
        host = self._listen.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, self._listen.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot listen on {host}:{self._listen.port}: {exc.strerror}") from exc
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        for _ in range(500):
            if self._server.started or self._task.done():
                break
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        stopping: asyncio.Event | None = getattr(self._app.state, "stopping", None)
        if stopping is not None:
            stopping.set()  # long polls and event streams answer now: uvicorn waits for them
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
