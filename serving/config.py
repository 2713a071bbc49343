"""Serving configuration: API limits and the live fan-out hub."""

from __future__ import annotations

from market.config import Config


class LiveHubConfig(Config, frozen=True):
    client_queue_size: int = 2048  # frames waiting per SSE client before the oldest is dropped (ticks conflate)
    heartbeat_s: float = 15.0  # SSE comment sent to an idle client so proxies and browsers keep the stream
    retry_ms: int = 2000  # reconnect delay suggested to EventSource clients


class ServingConfig(Config, frozen=True):
    bars_limit_default: int = 500
    bars_limit_max: int = 5000
    signals_limit_default: int = 100
    signals_limit_max: int = 1000
    dead_letters_limit_default: int = 100
    dead_letters_limit_max: int = 1000
    status_interval_s: float = 2.0  # how often the app pushes `event: status` to stream clients; 0 = never
    live: LiveHubConfig = LiveHubConfig()
