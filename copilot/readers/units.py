"""Length units → nanometres, and the rule that decides when a TIFF resolution tag is a real calibration.

>>> to_nm(543.0, "pm"), to_nm(0.5, "µm"), to_nm(2.0, "Å"), to_nm(1.0, "pixel")
(0.543, 500.0, 0.2, None)
"""

from __future__ import annotations

import math

_NM_PER_UNIT = {
    "m": 1e9,
    "meter": 1e9,
    "metre": 1e9,
    "cm": 1e7,
    "mm": 1e6,
    "µm": 1e3,  # U+00B5 micro sign
    "μm": 1e3,  # U+03BC greek mu
    "um": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "micrometre": 1e3,
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "å": 0.1,  # U+00E5, lower-cased Å (U+00C5 or U+212B)
    "angstrom": 0.1,
    "angstroms": 0.1,
    "pm": 1e-3,
    "inch": 2.54e7,
    "in": 2.54e7,
}

#: Finest scanner/printer resolution we still believe is a *print* setting, not a specimen calibration.
#: A plain TIFF resolution tag (or an ImageJ unit of inch/cm) counts as calibration only when it implies
#: pixels smaller than this: 1 µm/px = 25 400 dpi, far above any dpi a program or scanner writes (72, 96,
#: 150, 300, … 9600), and coarser than almost any electron-microscope frame worth segmenting.
MAX_PLAIN_RESOLUTION_NM_PER_PX = 1000.0


def normalise_unit(unit: str | None) -> str:
    """Lower-cased unit with ImageJ-style escapes (``\\u00B5m``) decoded and Å variants folded."""
    if unit is None:
        return ""
    u = str(unit).strip()
    if "\\u" in u:
        try:
            u = u.encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeError:
            pass
    u = u.replace("\u212b", "\u00c5")  # ANGSTROM SIGN → LATIN CAPITAL A WITH RING
    return u.lower()


def nm_per_unit(unit: str | None) -> float | None:
    """Nanometres in one ``unit``, or None when ``unit`` is not a length (``''``, ``'pixel'``, ``'1/nm'``)."""
    return _NM_PER_UNIT.get(normalise_unit(unit))


def to_nm(value: float | None, unit: str | None) -> float | None:
    """``value`` in ``unit`` expressed in nm; None if the unit is not a length or the value is not positive."""
    factor = nm_per_unit(unit)
    if factor is None or value is None:
        return None
    try:
        nm = float(value) * factor
    except (TypeError, ValueError):
        return None
    return nm if math.isfinite(nm) and nm > 0 else None


def plain_resolution_nm(pixels_per_unit: float | None, unit: str | None) -> float | None:
    """nm/px from a resolution value (pixels per inch/cm) if it passes the dpi rule, else None.

    >>> plain_resolution_nm(72, "inch") is None, plain_resolution_nm(1e8, "cm")
    (True, 0.1)
    """
    if not pixels_per_unit or pixels_per_unit <= 0:
        return None
    nm = to_nm(1.0 / float(pixels_per_unit), unit)
    if nm is None or nm >= MAX_PLAIN_RESOLUTION_NM_PER_PX:
        return None
    return nm
