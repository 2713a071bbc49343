"""The embedded runtime's infrastructure: in-process bus and ClickHouse (chdb) storage."""
