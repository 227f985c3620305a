"""TIFF → Decoded via tifffile: first page, grey, with calibration from the richest source the file has.

Calibration priority (first that yields a positive length wins; ``calibration_source`` names it):

1. ``"fei"`` — FEI/Thermo (FEI_HELIOS / FEI_SFEG tag): ``[Scan] PixelWidth`` in metres (``[EScan]``/``[IScan]``,
   then ``HFW / ResolutionX`` as fallbacks), rescaled if the saved width differs from ``[Image] ResolutionX``.
2. ``"zeiss"`` — Zeiss SmartSEM (CZ_SEM tag): ``ap_image_pixel_size``, else ``ap_pixel_size``, with their unit.
3. ``"imagej"`` — ImageJ ``unit=`` plus XResolution (pixels per unit). ``unit`` inch/cm go through the dpi rule below;
   ``pixel`` or no unit means uncalibrated.
4. ``"tiff-resolution"`` — XResolution with ResolutionUnit inch or cm, **only if it implies a pixel finer than 1 µm**
   (> 25 400 px/inch). Everything a program or scanner writes (72, 96, 150, 300 … 9600 dpi) is coarser than that
   and is a print setting, not a specimen scale, so it is treated as uncalibrated; ResolutionUnit "none" is a ratio.

Data bar: FEI files say how many rows are image (``[Image] ResolutionY``); other TIFFs are scanned for a bar.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from copilot.errors import UnreadableFrame
from copilot.readers.base import Decoded, parse_datetime, positive_or_none, to_grey
from copilot.readers.limits import check_header_pixels
from copilot.readers.units import nm_per_unit, plain_resolution_nm, to_nm

_RESUNIT_NAME = {2: "inch", 3: "cm"}


def read_tiff(path: Path) -> Decoded:
    """Decode the first page of a TIFF (see module docstring for the calibration rules)."""
    size = os.path.getsize(path)
    _check_first_ifd(path, size)
    with tifffile.TiffFile(path) as tif:
        if not len(tif.pages):
            raise UnreadableFrame(str(path), "TIFF has no readable image directory (corrupt or truncated)")
        page = tif.pages.first
        _check_complete(path, page, size)
        itemsize = page.dtype.itemsize if page.dtype is not None else 8
        check_header_pixels(str(path), (page.imagelength, page.imagewidth),
                            samples=page.samplesperpixel * max(1, page.imagedepth), itemsize=itemsize)
        pixels, conversion = _grey_pixels(path, page)
        meta: dict[str, Any] = {"format": "tiff", "pages": _page_count(tif),
                                "photometric": page.photometric.name.lower()}
        if conversion:
            meta["colour_conversion"] = conversion
        out = Decoded(pixels=pixels, meta=meta, may_have_data_bar=True)
        full_height, full_width = pixels.shape
        if tif.is_fei and tif.fei_metadata:
            _apply_fei(out, tif.fei_metadata, full_width, full_height)
        if out.nm_per_px is None and tif.is_sem and tif.sem_metadata:
            _apply_zeiss(out, tif.sem_metadata)
        if out.nm_per_px is None and tif.is_imagej:
            _apply_imagej(out, tif.imagej_metadata or {}, page)
        if out.nm_per_px is None:
            _apply_resolution(out, page)
        if out.acquired_at is None:
            stamp = page.tags.get("DateTime")
            if stamp is not None:
                out.acquired_at = parse_datetime(str(stamp.value), ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S"))
                out.acquired_at_source = "tiff-datetime" if out.acquired_at else None
    return out


# --- pixels -------------------------------------------------------------------------------------------------------


def _check_first_ifd(path: Path, size: int) -> None:
    """Instruments often write the image directory after the pixels: a cut copy loses it first."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    order = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    width = 8 if big else 4
    if len(head) < (16 if big else 8):
        raise UnreadableFrame(str(path), f"truncated TIFF: only {size} bytes, not even a complete header")
    offset = int.from_bytes(head[8:16] if big else head[4:8], "little" if order == "<" else "big")
    if offset + width > size:
        raise UnreadableFrame(str(path), f"truncated TIFF: the first image directory should be at byte {offset} "
                                         f"but the file has only {size} bytes (copy still in progress or interrupted?)")


def _check_complete(path: Path, page, size: int) -> None:
    offsets, counts = page.dataoffsets, page.databytecounts
    if not offsets:
        raise UnreadableFrame(str(path), "corrupt or truncated TIFF: the first page has no image data "
                                         "(no strips or tiles)")
    end = max(int(o) + int(c) for o, c in zip(offsets, counts, strict=False))
    if end > size:
        raise UnreadableFrame(str(path), f"truncated TIFF: image data should end at byte {end} but the file has "
                                         f"only {size} bytes (copy still in progress or interrupted?)")


def _page_count(tif: tifffile.TiffFile) -> int:
    if tif.is_imagej and tif.imagej_metadata and "images" in tif.imagej_metadata:
        return int(tif.imagej_metadata["images"])
    return len(tif.pages)


def _grey_pixels(path: Path, page) -> tuple[np.ndarray, str | None]:
    """The page as a 2-D grey array and a note on any colour conversion."""
    photometric = int(page.photometric)
    if photometric == 5:  # SEPARATED (CMYK)
        raise UnreadableFrame(str(path), "CMYK TIFF is not a microscope image; save it as grey or RGB")
    data = page.asarray()
    axes = page.axes
    if data.ndim != len(axes):  # defensive: tifffile keeps these in step
        axes = axes[-data.ndim :]
    if "S" in axes and data.shape[axes.index("S")] > 1:
        data = np.moveaxis(data, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    # drop any remaining leading axes (depth planes …) by taking the first plane, squeeze singleton samples
    while data.ndim > (3 if axes.endswith("S") else 2):
        data = data[0]
        axes = axes[1:]
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    note = None
    if photometric == 3 and page.colormap is not None and data.ndim == 2:  # PALETTE
        data, note = _apply_palette(data, page.colormap)
    if data.ndim == 3:
        data, note = to_grey(data)
    if data.ndim != 2:
        raise UnreadableFrame(str(path), f"TIFF first page is not a 2-D image (shape {data.shape}, axes {page.axes})")
    if data.dtype == bool:
        data = data.astype(np.uint8) * np.uint8(255)
    if np.iscomplexobj(data):
        raise UnreadableFrame(str(path), "TIFF holds complex values (an FFT?), not an image")
    if photometric == 0 and np.issubdtype(data.dtype, np.integer):  # MINISWHITE: 0 is white
        data = np.iinfo(data.dtype).max - data
        note = "miniswhite-inverted"
    return np.ascontiguousarray(data), note


def _apply_palette(index: np.ndarray, colormap: np.ndarray) -> tuple[np.ndarray, str]:
    """Grey palettes (≥ 75 % of entries grey, e.g. Zeiss with its overlay colours) map through their grey ramp;
    coloured palettes become RGB and then luma."""
    cmap = np.asarray(colormap)
    grey = (cmap[0] == cmap[1]) & (cmap[1] == cmap[2])
    out_dtype = np.uint8 if cmap.shape[1] <= 256 else np.uint16
    shift = 8 if out_dtype == np.uint8 else 0
    if grey.mean() >= 0.75:
        idx = np.arange(cmap.shape[1])
        lut = np.interp(idx, idx[grey], cmap[0][grey].astype(np.float64))  # overlay colours → neighbouring grey
        lut = (np.rint(lut).astype(np.uint32) >> shift).astype(out_dtype)
        if np.array_equal(lut, idx.astype(out_dtype)):
            return index.astype(out_dtype, copy=False), "palette-grey"
        return lut[index], "palette-grey"
    rgb = (cmap.T[index] >> shift).astype(out_dtype)
    grey_img, _ = to_grey(rgb)
    return grey_img, "palette-luminance"


# --- FEI / Thermo ------------------------------------------------------------------------------------------------


def _apply_fei(out: Decoded, fei: dict, width: int, height: int) -> None:
    image = fei.get("Image", {}) or {}
    res_x = _int(image.get("ResolutionX"))
    res_y = _int(image.get("ResolutionY"))
    factor = width / res_x if res_x else 1.0  # saved at another size than scanned
    pixel_m = None
    for section in ("Scan", "EScan", "IScan"):
        pixel_m = positive_or_none((fei.get(section) or {}).get("PixelWidth"))
        if pixel_m:
            break
    beam_name = (fei.get("Beam") or {}).get("Beam") or "EBeam"
    beam = fei.get(beam_name) or fei.get("EBeam") or {}
    hfw_m = positive_or_none(beam.get("HFW")) or positive_or_none((fei.get("Scan") or {}).get("HorFieldsize"))
    if pixel_m is None and hfw_m and res_x:
        pixel_m = hfw_m / res_x
    if pixel_m:
        out.nm_per_px = pixel_m * 1e9 / factor
        out.calibration_source = "fei"
    if res_y:
        image_rows = int(round(res_y * factor))
        if 0 < image_rows <= height:
            out.data_bar_rows = height - image_rows
            out.data_bar_source = "fei-resolution-y"

    system = fei.get("System") or {}
    detectors = fei.get("Detectors") or {}
    scan = fei.get("Scan") or {}
    mag_canvas = positive_or_none(image.get("MagCanvasRealWidth"))
    meta = out.meta
    meta["vendor"] = "fei"
    _put(meta, "instrument", system.get("SystemType") or system.get("Type"))
    _put(meta, "hv_v", positive_or_none((fei.get("Beam") or {}).get("HV")) or positive_or_none(beam.get("HV")))
    _put(meta, "magnification", round(mag_canvas / hfw_m, 3) if mag_canvas and hfw_m else None)
    _put(meta, "hfw_nm", hfw_m * 1e9 if hfw_m else None)
    _put(meta, "detector", " ".join(str(v) for v in (detectors.get("Name"), detectors.get("Mode")) if v) or None)
    _put(meta, "dwell_s", positive_or_none(scan.get("Dwelltime")) or positive_or_none(scan.get("Dwell")))
    wd = positive_or_none(beam.get("WD")) or positive_or_none((fei.get("Stage") or {}).get("WorkingDistance"))
    _put(meta, "working_distance_mm", wd * 1e3 if wd else None)
    _put(meta, "beam", beam_name)

    private = fei.get("PrivateFei") or {}
    user = fei.get("User") or {}
    when = None
    if private.get("TimeOfCreation"):
        when = parse_datetime(str(private["TimeOfCreation"]), ("%d.%m.%Y %H:%M:%S",))
    if when is None and user.get("Date") and user.get("Time"):
        when = parse_datetime(f"{user['Date']} {user['Time']}", ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S"))
    if when is not None:
        out.acquired_at, out.acquired_at_source = when, "fei"


# --- Zeiss SmartSEM ----------------------------------------------------------------------------------------------


def _apply_zeiss(out: Decoded, sem: dict) -> None:
    for key in ("ap_image_pixel_size", "ap_pixel_size"):
        nm = _zeiss_length_nm(sem.get(key))
        if nm:
            out.nm_per_px, out.calibration_source = nm, "zeiss"
            break
    meta = out.meta
    meta["vendor"] = "zeiss"
    _put(meta, "instrument", _zeiss_value(sem.get("sv_serial_number")))
    kv = _zeiss_quantity(sem.get("ap_actualkv")) or _zeiss_quantity(sem.get("ap_manualkv"))
    if kv:
        factor = {"kv": 1e3, "v": 1.0}.get(kv[1].lower())
        _put(meta, "hv_v", kv[0] * factor if factor else None)
    _put(meta, "magnification", _parse_magnification(sem.get("ap_mag")))
    _put(meta, "detector", _zeiss_value(sem.get("dp_detector_channel")))
    dwell = _zeiss_quantity(sem.get("dp_dwell_time"))
    if dwell:
        factor = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}.get(dwell[1].lower())
        _put(meta, "dwell_s", dwell[0] * factor if factor else None)
    wd = _zeiss_length_nm(sem.get("ap_wd"))
    _put(meta, "working_distance_mm", wd / 1e6 if wd else None)
    date, time_ = _zeiss_value(sem.get("ap_date")), _zeiss_value(sem.get("ap_time"))
    if date and time_:
        when = parse_datetime(f"{date} {time_}", ("%d %b %Y %H:%M:%S", "%d %B %Y %H:%M:%S"))
        if when is not None:
            out.acquired_at, out.acquired_at_source = when, "zeiss"


def _zeiss_value(entry: Any) -> Any:
    """('Label', value[, unit]) → value; '' → None."""
    if isinstance(entry, (tuple, list)) and len(entry) >= 2:
        value = entry[1]
        return value if value not in ("", None) else None
    return None


def _zeiss_quantity(entry: Any) -> tuple[float, str] | None:
    if isinstance(entry, (tuple, list)) and len(entry) >= 3:
        value = positive_or_none(entry[1])
        if value is not None:
            return value, str(entry[2])
    return None


def _zeiss_length_nm(entry: Any) -> float | None:
    quantity = _zeiss_quantity(entry)
    return to_nm(*quantity) if quantity else None


def _parse_magnification(entry: Any) -> float | None:
    """Zeiss 'Mag' as ('Mag', '500.00 K X') or ('Mag', 105, 'X') → 500000.0 / 105.0."""
    if not isinstance(entry, (tuple, list)) or len(entry) < 2:
        return None
    if isinstance(entry[1], (int, float)):
        return positive_or_none(entry[1])
    match = re.match(r"\s*([0-9.]+)\s*([kKmM]?)\s*[xX]?", str(entry[1]))
    if not match:
        return None
    value = positive_or_none(match.group(1))
    scale = {"": 1.0, "k": 1e3, "m": 1e6}[match.group(2).lower()]
    return value * scale if value else None


# --- ImageJ and plain resolution tags ------------------------------------------------------------------------------


def _resolution(page, tag_name: str = "XResolution") -> float | None:
    """Pixels per resolution unit from ``XResolution`` (or ``YResolution``): a rational or a number."""
    tag = page.tags.get(tag_name)
    if tag is None:
        return None
    value = tag.value
    if isinstance(value, tuple) and len(value) == 2:
        return value[0] / value[1] if value[1] else None
    return positive_or_none(value)


def _apply_imagej(out: Decoded, ij: dict, page) -> None:
    unit = ij.get("unit")
    factor = nm_per_unit(unit)
    out.meta["imagej_unit"] = str(unit) if unit is not None else None
    xres = _resolution(page)
    if factor is None or not xres:
        return
    if factor >= 1e7:  # inch / cm: ImageJ copied a dpi setting; same rule as plain tags
        nm = plain_resolution_nm(xres, unit)
    else:
        nm = to_nm(1.0 / xres, unit)
    if nm:
        out.nm_per_px, out.calibration_source = nm, "imagej"
        _record_y(out, page, unit, xres)


def _apply_resolution(out: Decoded, page) -> None:
    unit_tag = page.tags.get("ResolutionUnit")
    unit = _RESUNIT_NAME.get(int(unit_tag.value)) if unit_tag is not None else None
    xres = _resolution(page)
    if unit is None or not xres:
        return
    nm = plain_resolution_nm(xres, unit)
    if nm:
        out.nm_per_px, out.calibration_source = nm, "tiff-resolution"
        _record_y(out, page, unit, xres)
    else:
        out.meta["ignored_resolution"] = f"{xres:g} px/{unit} (print/dpi setting, not a specimen scale)"


def _record_y(out: Decoded, page, unit: str, xres: float) -> None:
    yres = _resolution(page, "YResolution")
    if yres and abs(yres - xres) > 0.01 * xres:
        out.meta["nm_per_px_y"] = to_nm(1.0 / yres, unit)


def _int(value: Any) -> int | None:
    try:
        v = int(value)
    except (TypeError, ValueError):
        return None
    return v if v > 0 else None


def _put(meta: dict, key: str, value: Any) -> None:
    if value is not None and value != "":
        meta[key] = value
