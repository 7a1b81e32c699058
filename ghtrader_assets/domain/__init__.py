"""Pure domain rules: no Dagster, no sockets, no environment reads."""
