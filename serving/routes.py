"""HTTP routes: parse the request, call a service, shape the document. No SQL, no logic here.

JSON bodies are encoded with msgspec (prices as exact decimal strings, see serving.views).
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from serving.live import SSEResponse
from serving.services import Services

_json = msgspec.json.Encoder()


def json_response(doc: Any, status_code: int = 200) -> Response:
    return Response(_json.encode(doc), status_code=status_code, media_type="application/json")


def services_of(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


router = APIRouter(prefix="/api")


@router.get("/instruments")
async def instruments(request: Request) -> Response:
    return json_response({"instruments": services_of(request).history.instruments()})


@router.get("/bars")
async def bars(
    request: Request,
    instrument: str = Query(..., description="instrument id, e.g. GC.COMEX"),
    interval: str = Query("1m", description="bar interval: 1s, 1m, 5m, 1h"),
    start: str | None = Query(None, description="window start >= this: ISO 8601 with zone, or UTC ns"),
    end: str | None = Query(None, description="window start < this: ISO 8601 with zone, or UTC ns"),
    limit: int | None = Query(None, description="max bars (capped); the most recent ones when more match"),
) -> Response:
    page = await services_of(request).history.bars(instrument, interval, start, end, limit)
    return json_response(page)


@router.get("/signals")
async def signals(
    request: Request,
    kind: str | None = Query(None, description="arbitrage, anomaly, crash or forecast"),
    instrument: str | None = Query(None, description="instrument id, or an arbitrage pair 'BUY/SELL'"),
    since: str | None = Query(None, description="ts_event >= this: ISO 8601 with zone, or UTC ns"),
    limit: int | None = Query(None),
) -> Response:
    views = await services_of(request).history.signals(kind, instrument, since, limit)
    return json_response({"signals": views})


@router.get("/deadletters")
async def dead_letters(
    request: Request,
    reason: str | None = Query(None, description="e.g. malformed, late, unknown_instrument"),
    limit: int | None = Query(None),
) -> Response:
    views = await services_of(request).history.dead_letters(reason, limit)
    return json_response({"dead_letters": views})


@router.get("/status")
async def status(request: Request) -> Response:
    return json_response(await services_of(request).status_document())


@router.get("/stream")
async def stream(
    request: Request,
    topics: str | None = Query(None, description="comma list: bar, bar.1m, tick, tick.trade, signal, signal.crash, "
                                                 "status (default: all)"),
    instrument: str | None = Query(None, description="comma list of instrument ids (default: all)"),
) -> SSEResponse:
    svc = services_of(request)
    client = svc.hub.connect(svc.stream_filter(topics, instrument))
    return SSEResponse(svc.hub, client)
