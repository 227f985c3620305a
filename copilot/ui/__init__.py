"""Subscribers people look at: the terminal view (rich) and the on-screen overlay (Qt)."""
