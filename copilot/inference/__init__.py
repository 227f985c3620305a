"""Engines: Frame → Segmentation."""
