"""Result documents and their transport (ZeroMQ)."""
