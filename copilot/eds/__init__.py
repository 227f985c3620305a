"""EDS spectrum images beside the frame: reading (``cube``), net line intensities and semi-quantitative element
fractions (``quant``), inclusion classes by rules (``classify``), and per-object analysis (``inclusions``)."""
