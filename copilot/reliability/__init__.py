"""Reliability: how far a frame's measurements can be trusted, with reasons a person understands."""
