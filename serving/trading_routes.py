"""HTTP routes of the trade module: approvals, kill switch, positions, orders. Parse, call the service, shape.

Every route needs an API key (serving.auth): "viewer" reads, "trader" also approves, rejects, kills, resumes.
Errors: 401 no/invalid key, 403 role too low, 404 unknown order, 409 order not waiting for approval,
422 malformed input (path, query or body).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from serving.auth import ApiKeyStore, Principal, Role, authenticator
from serving.routes import json_response
from serving.services import InvalidQuery, NotFound
from serving.trading_service import REASON_MAX_CHARS, OrderConflict, TradingService

__all__ = ["ReasonBody", "install_trading", "trading_router"]

OrderId = Annotated[int, Path(ge=1, le=2**63 - 1, description="order id (GET /api/trading/orders)")]


class ReasonBody(BaseModel):
    """Why a human rejects an order or stops trading (kept in the order and the audit trail)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: str = Field(min_length=1, max_length=REASON_MAX_CHARS, pattern=r"^[^\x00-\x1f\x7f]+$")


def trading_router(service: TradingService, keys: ApiKeyStore) -> APIRouter:
    # dependencies built per router (they close over the key store); `who` is the caller, for the audit trail
    viewer = Depends(authenticator(keys, Role.VIEWER))
    trader = Depends(authenticator(keys, Role.TRADER))
    router = APIRouter(prefix="/api/trading", tags=["trading"])

    @router.get("/approvals")
    async def approvals(who: Principal = viewer) -> Response:
        return json_response(service.approvals())

    @router.post("/approvals/{order_id}/approve")
    async def approve(order_id: OrderId, who: Principal = trader) -> Response:
        return json_response({"order": service.approve(order_id, who.name)})

    @router.post("/approvals/{order_id}/reject")
    async def reject(order_id: OrderId, body: ReasonBody, who: Principal = trader) -> Response:
        return json_response({"order": service.reject(order_id, who.name, body.reason)})

    @router.post("/kill")
    async def kill(body: ReasonBody, who: Principal = trader) -> Response:
        return json_response(service.kill(who.name, body.reason))

    @router.post("/resume")
    async def resume(who: Principal = trader) -> Response:
        return json_response(service.resume(who.name))

    @router.get("/positions")
    async def positions(who: Principal = viewer) -> Response:
        return json_response(service.positions())

    @router.get("/orders")
    async def orders(
        status: str | None = Query(None, description="parked, sent, working, filled, cancelled or rejected"),
        limit: int | None = Query(None, description="max orders, newest first (capped)"),
        who: Principal = viewer,
    ) -> Response:
        return json_response(service.orders(status, limit))

    @router.get("/audit")
    async def audit(limit: int | None = Query(None), who: Principal = viewer) -> Response:
        return json_response({"audit": service.audit(limit)})

    return router


async def _conflict(request: Request, exc: Exception) -> Response:
    return json_response({"detail": str(exc)}, status_code=409)


async def _not_found(request: Request, exc: Exception) -> Response:
    return json_response({"detail": str(exc.args[0] if exc.args else exc)}, status_code=404)


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidQuery)
    return json_response({"detail": str(exc), "param": exc.param}, status_code=422)


def install_trading(app: FastAPI, service: TradingService, keys: ApiKeyStore) -> None:
    """Mount the trading routes on `app` (serving.app.create_app does this when given a trading service)."""
    app.include_router(trading_router(service, keys))
    app.add_exception_handler(OrderConflict, _conflict)
    # create_app maps these already (same shapes); a bare app gets them here
    if NotFound not in app.exception_handlers:
        app.add_exception_handler(NotFound, _not_found)
    if InvalidQuery not in app.exception_handlers:
        app.add_exception_handler(InvalidQuery, _invalid)
