"""The FastAPI app: HTTP API, the play websocket and the static page. Handlers stay thin."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from server.config import Settings
from server.connection import Connection
from server.engine import Engine
from server.protocol import PROTOCOL_VERSION, CloseCode, Error

log = logging.getLogger(__name__)


def page_url(settings: Settings, port: int | None = None) -> str:
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port or settings.port}/"


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """No Origin (not a browser), the page's own origin, or one on the allow list ('*' = any)."""
    if origin is None or "*" in allowed or origin in allowed:
        return True
    return bool(host) and urlsplit(origin).netloc.lower() == host.lower()


def include_viewer(app: FastAPI) -> None:
    """The policy viewer's routes (server/viewer.py, another component); the game runs without it."""
    try:
        from server.viewer import router
    except Exception as e:  # noqa: BLE001 - a broken viewer must not stop the arcade
        log.warning("policy viewer not available: %s", e)
        return
    app.include_router(router)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = Engine(settings)
        await asyncio.to_thread(engine.start)
        app.state.engine = engine
        if settings.announce:
            games = ", ".join(sorted(engine.games)) or "none: see docs/serving.md"
            print(f"Dream Arcade: open {page_url(settings)}  (games: {games})", flush=True)
        try:
            yield
        finally:
            # uvicorn has closed the websockets with 1012 by now (SIGTERM, Ctrl-C); the same code
            # for any still open (an app served some other way).
            for conn in list(engine.connections.values()):
                await conn.close(CloseCode.RESTART, "server shutting down")
            engine.stop()

    app = FastAPI(title="Dream Arcade", version=str(PROTOCOL_VERSION), lifespan=lifespan)
    app.state.settings = settings

    def engine_of(request: Request | WebSocket) -> Engine:
        return request.app.state.engine

    @app.get("/api/health")
    async def health(request: Request) -> dict:
        engine = engine_of(request)
        return {
            "status": "ok",
            "protocol": PROTOCOL_VERSION,
            "games": sorted(engine.games),
            "sessions": len(engine.connections),
            "load_errors": engine.load_errors,
        }

    @app.get("/api/games")
    async def games(request: Request) -> dict:
        engine = engine_of(request)
        return {"games": [engine.game_info(rt) for _, rt in sorted(engine.games.items())]}

    @app.get("/api/metrics")
    async def metrics(request: Request) -> JSONResponse:
        return JSONResponse(engine_of(request).metrics())

    @app.get("/api/episodes/{key}")
    async def saved_episode(key: str, request: Request) -> FileResponse:
        """An episode this server's sessions saved, by the id in the `saved` message."""
        path = engine_of(request).saved_episodes.get(key)
        if path is None or not path.is_file():
            raise HTTPException(404, "no saved episode with this id (ids come in `saved` messages, until a restart)")
        return FileResponse(path, media_type="application/octet-stream", filename=f"{path.parent.name}-{path.name}")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        """For clients that ask for /favicon.ico whatever the page links (the pages link the SVG)."""
        icon = settings.web_dir / "favicon.svg"
        if not icon.is_file():
            raise HTTPException(404, f"no {icon}")
        return FileResponse(icon, media_type="image/svg+xml")

    @app.websocket("/ws")
    async def play(ws: WebSocket) -> None:
        engine = engine_of(ws)
        if not origin_allowed(ws.headers.get("origin"), ws.headers.get("host"), settings.allowed_origins):
            await ws.close(CloseCode.ORIGIN_REJECTED, "origin not allowed")
            return
        await ws.accept()
        conn = Connection(ws, engine)
        if not engine.admit(conn.id, conn):
            cap = settings.max_sessions
            await conn.send(Error(code="server_full", message=f"server full ({cap} players); try later", fatal=True))
            await conn.close(CloseCode.SERVER_FULL, "server_full")
            return
        try:
            await conn.run()
        finally:
            engine.release(conn.id)

    include_viewer(app)
    if settings.web_dir.is_dir():  # last: the API and the viewer's routes win over static files
        app.mount("/", StaticFiles(directory=settings.web_dir, html=True), name="web")
    return app
