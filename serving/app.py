"""The FastAPI app: JSON API under /api, live SSE at /api/stream, the dashboard at /.

Binding (host/port) is the runtime's business; this module only builds the ASGI app.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from serving.routes import json_response, router
from serving.services import InvalidQuery, NotFound, Services

if TYPE_CHECKING:
    from serving.auth import ApiKeyStore
    from serving.trading_service import TradingService

__all__ = ["STATIC_DIR", "Services", "create_app"]

STATIC_DIR = Path(__file__).resolve().parent / "static"


async def _push_status(services: Services, interval_s: float) -> None:
    """Periodic `event: status` for stream clients (the dashboard's health line)."""
    while True:
        await asyncio.sleep(interval_s)
        if services.hub.stats().clients:
            services.hub.publish_status(await services.status_document())


def create_app(services: Services, trading: TradingService | None = None,
               api_keys: ApiKeyStore | None = None) -> FastAPI:
    """`trading`: also serve the trade module's API under /api/trading (every route needs a key from `api_keys`)."""
    if trading is not None and api_keys is None:
        raise ValueError("the trading API needs an API key store")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services.hub.bind(asyncio.get_running_loop())
        task = None
        if services.config.status_interval_s > 0:
            task = asyncio.create_task(_push_status(services, services.config.status_interval_s))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(title="commodex", version="0.1.0", lifespan=lifespan)
    app.state.services = services
    app.include_router(router)

    @app.exception_handler(InvalidQuery)
    async def invalid_query(request: Request, exc: InvalidQuery) -> Response:
        return json_response({"detail": str(exc), "param": exc.param}, status_code=422)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return json_response({"detail": str(exc.args[0] if exc.args else exc)}, status_code=404)

    if trading is not None and api_keys is not None:
        from serving.trading_routes import install_trading  # the trade module loads only when asked for

        install_trading(app, trading, api_keys)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
