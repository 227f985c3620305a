"""Microscope co-pilot: live segmentation, measurement and reliability beside an electron microscope."""

__version__ = "0.1.0"
