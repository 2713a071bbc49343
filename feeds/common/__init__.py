"""Machinery shared by every exchange adapter: backoff, watchdog, sequencer, metrics, the adapter shape."""
