"""Inference backends: Frame → Segmentation."""
