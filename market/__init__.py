"""The shared domain vocabulary: instruments, units and currencies, event types, codecs."""
