"""The FastAPI app: HTTP API, the play websocket, the policy viewer and the static page. Handlers stay thin."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from server.config import Settings
from server.connection import Connection
from server.engine import Engine
from server.guard import serve
from server.protocol import PROTOCOL_VERSION, CloseCode

if TYPE_CHECKING:
    from server.viewer import ViewerSettings

log = logging.getLogger(__name__)

OPTIONAL_MODULES = ("gymnasium_robotics", "mujoco", "matplotlib")
"""The `dbc` extra (pyproject.toml). The arcade runs without it; nothing else may be missing."""


def page_url(settings: Settings, port: int | None = None) -> str:
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port or settings.port}/"


def include_viewer(app: FastAPI, viewer: ViewerSettings | None = None) -> None:
    """The policy viewer's routes (server/viewer.py). Only a missing optional dependency leaves them
    out (with a warning); any other error is a bug and stops the app."""
    try:
        from server.viewer import make_router
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in OPTIONAL_MODULES:
            raise
        log.warning("policy viewer not available: %s (pip install -e '.[dbc]')", e)
        return
    app.include_router(make_router(viewer))


def create_app(settings: Settings | None = None, viewer: ViewerSettings | None = None) -> FastAPI:
    """The app; `viewer` configures the policy viewer (default: ViewerSettings())."""
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
        await serve(ws, engine_of(ws), Connection)

    include_viewer(app, viewer)
    if settings.web_dir.is_dir():  # last: the API and the viewer's routes win over static files
        app.mount("/", StaticFiles(directory=settings.web_dir, html=True), name="web")
    return app
