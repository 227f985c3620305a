"""The overlay's widgets, one per panel of a stream: header, frame view, numbers, size distribution, trend."""
