"""`commodex stack up|down|status|serve`: the local scale-out services under one state dir, and the web app
on them (history from PostgreSQL/ClickHouse, live updates from Redis; see stack.serve).

Addresses come from `stack.settings.load_settings()` (COMMODEX_* environment variables override them)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import msgspec

from stack.services.base import ServiceError, ServiceStatus
from stack.settings import StackSettings, load_settings, saved_settings


def add_stack_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("stack", help="start/stop/inspect the local Kafka, PostgreSQL and Redis")
    sub = p.add_subparsers(dest="stack_command", required=True)
    up = sub.add_parser("up", help="start every service (idempotent), create topics, apply the PostgreSQL schema")
    up.add_argument("--no-topics", action="store_true", help="do not create the standard topics")
    up.add_argument("--no-schema", action="store_true", help="do not apply sql/postgres")
    sub.add_parser("down", help="stop every service this state dir started")
    sub.add_parser("status", help="each service with its address and version")
    for s in sub.choices.values():
        s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    serve = sub.add_parser("serve", help="the API and dashboard on the stack: history from PostgreSQL (or a "
                                         "ClickHouse server), live updates from Redis")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8766, help="default 8766 (the embedded demo uses 8765)")
    serve.add_argument("--history", choices=["auto", "postgres", "clickhouse"], default="auto",
                       help="history store: auto = ClickHouse when its DSN is a server URL, else PostgreSQL")
    for s in sub.choices.values():
        s.add_argument("--state-dir", default=None, help="where service data lives (default: $COMMODEX_STATE_DIR "
                                                         "or .commodex/stack)")
    p.set_defaults(handler=run_stack)


def _table(rows: list[ServiceStatus]) -> str:
    lines = [("service", "address", "version", "state")]
    for r in rows:
        if r.name == "clickhouse":
            state = r.detail
        elif r.running:
            state = f"running (pid {r.pid}), {'healthy' if r.healthy else 'NOT healthy'}"
        else:
            state = "stopped" + (f"; {r.detail}" if r.detail else "")
        lines.append((r.name, r.address, r.version, state))
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(line[:3], widths, strict=True)), line[3]])
                     for line in lines)


def settings_for(command: str, state_dir: str | None) -> StackSettings:
    """status/down describe the stack already in the state dir (the settings it was brought up with); up uses
    the current settings unless that stack is still running."""
    from stack.services.stack import Stack

    fresh = load_settings(state_dir=state_dir) if state_dir else load_settings()
    saved = saved_settings(fresh.state_path)
    if saved is None:
        return fresh
    if command != "up" or any(svc.pid() for svc in Stack(saved).services):
        return saved
    return fresh


def run_stack(args: argparse.Namespace) -> int:
    if args.stack_command == "serve":
        from stack.serve import run_serve

        return run_serve(args, settings_for("serve", args.state_dir))
    from stack.services.stack import Stack

    stack = Stack(settings_for(args.stack_command, args.state_dir))
    try:
        if args.stack_command == "up":
            rows = stack.up(topics=not args.no_topics, schema=not args.no_schema)
        elif args.stack_command == "down":
            stopped = stack.down()
            if args.json:
                print(json.dumps({"stopped": stopped}))
            else:
                print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
            return 0
        else:
            rows = stack.status()
    except ServiceError as e:
        print(f"commodex stack {args.stack_command}: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([msgspec.to_builtins(r) for r in rows]))
    else:
        print(_table(rows))
    if args.stack_command == "up":
        return 0 if all(r.healthy for r in rows) else 1
    return 0
