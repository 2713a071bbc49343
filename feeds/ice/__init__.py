"""ICE-style WebSocket venue adapter: JSON messages, login -> subscribe -> snapshot + sequenced incrementals."""
