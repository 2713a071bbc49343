"""The wire codec: JSON, one record per message, tagged with its type and schema version.

Encoders and decoders are built once at import. A message that does not decode is returned as a
DeadLetter by `decode_or_dead_letter`, never raised into the pipeline.
"""

from __future__ import annotations

import msgspec

from market.events import DeadLetter, Event, Tick

WIRE_FORMAT = "json"
WIRE_VERSION = 1
CONTENT_TYPE = f"application/vnd.commodex.v{WIRE_VERSION}+json"

_encoder = msgspec.json.Encoder()
_event_decoder = msgspec.json.Decoder(Event)
_tick_decoder = msgspec.json.Decoder(Tick)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def encode_many(events: list[Event]) -> bytes:
    """Newline-delimited JSON."""
    buf = bytearray()
    for e in events:
        _encoder.encode_into(e, buf, len(buf))
        buf += b"\n"
    return bytes(buf)


def decode(data: bytes | str) -> Event:
    return _event_decoder.decode(data)


def decode_tick(data: bytes | str) -> Tick:
    return _tick_decoder.decode(data)


def decode_tick_or_dead_letter(data: bytes | str, ts_recv: int, source: str = "codec") -> Tick | DeadLetter:
    try:
        return _tick_decoder.decode(data)
    # msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 inside a JSON string
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as e:
        raw = data.decode("utf-8", "backslashreplace") if isinstance(data, bytes) else data
        return DeadLetter(source=source, reason="malformed", detail=str(e), raw=raw[:4096], ts_recv=ts_recv)


def to_builtins(event: Event) -> dict:
    """JSON-ready dict (tag included) for APIs that shape their own documents."""
    return msgspec.to_builtins(event)  # type: ignore[no-any-return]
