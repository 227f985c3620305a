"""Sources: where frames come from (a watched folder, a ZeroMQ socket, a replay)."""
