"""DM3/DM4, EMD (Velox/NCEM), SER (TIA), BCF (Bruker) and MRC via RosettaSciIO → Decoded.

A file may hold several signals; the reader keeps 2-D real-valued images (the last two axes are signal axes, any
leading navigation axes are frames, of which the first is taken) and prefers, in order: a title containing HAADF,
then other STEM/SEM detector names (DF, ADF, BF, ABF, SE, BSE…), then the first image. Overview images (Bruker) and
complex data (FFT, DPC) are skipped. ``meta["signal"]`` records the title kept, ``meta["signals"]`` all titles.

nm/px comes from the x (last) axis scale and unit (m, mm, µm/um, nm, Å, pm); reciprocal or missing units mean
uncalibrated. MRC headers with no cell size, or the 1 Å/px placeholder (cell = grid size) that IMOD/EMAN write
when the pixel size is unknown, are uncalibrated too. ``calibration_source`` is ``"rosettasciio"``.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np

from copilot.errors import UnreadableFrame
from copilot.readers.base import Decoded, parse_datetime, positive_or_none
from copilot.readers.limits import check_header_pixels
from copilot.readers.units import to_nm

_SPECTRAL_TYPES = {"EELS", "EDS", "EDS_TEM", "EDS_SEM", "EDX", "CL", "CL_SEM", "CL_STEM", "LUMISPECTRUM", "PL"}
_DETECTOR_WORDS = ("ADF", "DF", "BF", "ABF", "SE", "BSE", "BSD", "ETD", "TLD", "INLENS", "SEM")


def read_dm(path: Path) -> Decoded:
    return _decode(path, "digitalmicrograph", {}, fmt=path.suffix.lower().lstrip(".") or "dm")


def read_emd(path: Path) -> Decoded:
    if importlib.util.find_spec("h5py") is None:
        raise UnreadableFrame(str(path), "EMD files need the 'h5py' package, which is not installed")
    return _decode(path, "emd", {"select_type": "images"}, fmt="emd")


def read_ser(path: Path) -> Decoded:
    return _decode(path, "tia", {}, fmt="ser")


def read_bcf(path: Path) -> Decoded:
    return _decode(path, "bruker", {"select_type": "image"}, fmt="bcf")


def read_mrc(path: Path) -> Decoded:
    _check_mrc_header(path)
    return _decode(path, "mrc", {}, fmt="mrc")


# --- shared ------------------------------------------------------------------------------------------------------


def _decode(path: Path, plugin: str, kwargs: dict, fmt: str) -> Decoded:
    signals = _load(path, plugin, kwargs)
    images = [(i, s) for i, s in enumerate(signals) if _image_axes(s) is not None]
    titles = [_title(s) for s in signals]
    if not images:
        shapes = ", ".join(_describe(s) for s in signals) or "none"
        raise UnreadableFrame(str(path), f"{fmt.upper()} file holds no 2-D image (signals: {shapes})")
    index, signal = min(images, key=lambda item: (_rank(_title(item[1])), item[0]))
    data = signal["data"]  # lazy (dask) where RosettaSciIO can: nothing is decoded before the bound is checked
    check_header_pixels(str(path), np.shape(data)[-2:], itemsize=np.dtype(data.dtype).itemsize)
    frames = int(np.prod(np.shape(data)[:-2])) if np.ndim(data) > 2 else 1
    pixels = data[(0,) * (np.ndim(data) - 2)] if np.ndim(data) > 2 else data
    pixels = np.ascontiguousarray(np.asarray(pixels))
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * np.uint8(255)

    axes = _image_axes(signal)
    x_axis, y_axis = axes[-1], axes[-2]
    meta: dict[str, Any] = {"format": fmt, "signal": _title(signal) or f"signal {index}", "signals": titles}
    if frames > 1:
        meta["frames"] = frames
        meta["frame_index"] = 0
    units = str(x_axis.get("units") or "")
    if units:
        meta["axis_units"] = units
    out = Decoded(pixels=pixels, meta=meta, may_have_data_bar=False)
    nm = axis_nm(x_axis)
    if nm is not None and plugin == "mrc" and _mrc_placeholder(signal):
        meta["ignored_calibration"] = "MRC header cell size missing or the 1 Å/px placeholder"
        nm = None
    if nm is not None:
        out.nm_per_px, out.calibration_source = nm, "rosettasciio"
        ny = axis_nm(y_axis)
        if ny is not None and abs(ny - nm) > 0.01 * nm:
            meta["nm_per_px_y"] = ny
    _standard_metadata(out, _mapped_metadata(signal))
    if plugin == "emd":
        _velox_metadata(out.meta, signal.get("original_metadata") or {})
    return out


def _load(path: Path, plugin: str, kwargs: dict) -> list[dict]:
    module = importlib.import_module(f"rsciio.{plugin}")
    try:
        return list(module.file_reader(str(path), lazy=_LAZY, **kwargs))
    except ModuleNotFoundError as exc:
        if plugin == "emd" and "sparse" in str(exc):
            return _velox_images_without_sparse(path, exc)
        raise


def _velox_images_without_sparse(path: Path, exc: Exception) -> list[dict]:
    """Velox files with an EDS spectrum stream: RosettaSciIO 0.15 insists on 'sparse' even when only the images are
    wanted. Read just the images with its own reader class; if its internals moved, say what to install."""
    try:
        import h5py
        from rsciio.emd._emd_velox import FeiEMDReader

        class _ImagesOnly(FeiEMDReader):
            def _read_data(self, select_type):
                self.load_images, self.load_SI, self.load_single_spectrum = True, False, False
                self._read_images()

        reader = _ImagesOnly(select_type="images")
        with h5py.File(path, "r") as f:
            reader.read_file(f)
        return list(reader.dictionaries)
    except Exception as inner:  # depends on RosettaSciIO internals
        raise UnreadableFrame(str(path), f"Velox EMD with a spectrum image needs the 'sparse' package ({exc}); "
                                         f"images-only fallback failed: {inner}") from inner


#: read lazily (dask) where installed, so only the first image is decoded and its size is checked first
_LAZY = importlib.util.find_spec("dask") is not None


def _describe(signal: dict) -> str:
    kind = str(((signal.get("metadata") or {}).get("Signal") or {}).get("signal_type") or "")
    return " ".join(p for p in (_title(signal) or "?", str(tuple(np.shape(signal.get("data")))), kind) if p)


def _title(signal: dict) -> str:
    return str(((signal.get("metadata") or {}).get("General") or {}).get("title") or "")


def _rank(title: str) -> int:
    t = title.upper()
    if "HAADF" in t:
        return 0
    words = t.replace("-", " ").replace("_", " ").split()
    if any(w.rstrip("0123456789") in _DETECTOR_WORDS or w in _DETECTOR_WORDS for w in words):
        return 1
    return 2


def _image_axes(signal: dict) -> list[dict] | None:
    """The axes of a 2-D real image (last two = signal axes), or None if the signal is not one."""
    data = signal.get("data")
    axes = list(signal.get("axes") or [])
    if data is None or np.ndim(data) < 2 or len(axes) != np.ndim(data):
        return None
    dtype = data.dtype if hasattr(data, "dtype") else np.asarray(data).dtype  # never computes a lazy array
    if np.dtype(dtype).kind not in "biuf":
        return None
    if "overview" in (((signal.get("metadata") or {}).get("Markers")) or {}):
        return None
    signal_type = str(((signal.get("metadata") or {}).get("Signal") or {}).get("signal_type") or "")
    if np.ndim(data) > 2 and (signal_type.upper() in _SPECTRAL_TYPES or _is_spectral_axis(axes[0])):
        return None  # spectrum image stored energy-first (DM EELS/CL SI), not a stack of images
    nav = [a.get("navigate") for a in axes]
    if any(n is not None for n in nav):
        signal_axes = [i for i, n in enumerate(nav) if not n]
        if signal_axes != [len(axes) - 2, len(axes) - 1]:
            return None
    elif np.ndim(data) != 2:
        return None
    if min(np.shape(data)[-2:]) < 2:
        return None
    return axes


def _is_spectral_axis(axis: dict) -> bool:
    name = str(axis.get("name") or "").lower()
    units = str(axis.get("units") or "").lower()
    return any(w in name for w in ("energy", "wavelength", "channel")) or units in ("ev", "kev")


def axis_nm(axis: dict) -> float | None:
    scale = positive_or_none(axis.get("scale"))
    return to_nm(scale, axis.get("units")) if scale else None


# --- MRC ---------------------------------------------------------------------------------------------------------

_MRC_BYTES_PER_PX = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2, 101: 0.5}


def _check_mrc_header(path: Path) -> None:
    with path.open("rb") as fh:
        raw = fh.read(1024)
    if len(raw) < 1024:
        raise UnreadableFrame(str(path), "not an MRC file: shorter than the 1024-byte MRC header")
    nx, ny, nz, mode = np.frombuffer(raw[:16], "<i4")
    next_bytes = int(np.frombuffer(raw[92:96], "<i4")[0])
    if mode not in _MRC_BYTES_PER_PX or min(nx, ny, nz) < 1 or next_bytes < 0:
        raise UnreadableFrame(str(path), f"not a valid MRC header (nx={nx}, ny={ny}, nz={nz}, mode={mode}); "
                                         "corrupt, big-endian or not MRC")
    check_header_pixels(str(path), (int(ny), int(nx)), itemsize=max(1, math.ceil(_MRC_BYTES_PER_PX[int(mode)])))
    needed = 1024 + next_bytes + math.ceil(int(nx) * int(ny) * int(nz) * _MRC_BYTES_PER_PX[int(mode)])
    size = path.stat().st_size
    if size < needed:
        raise UnreadableFrame(str(path), f"truncated MRC: header promises {needed} bytes, file has {size}")


def _mrc_placeholder(signal: dict) -> bool:
    header = ((signal.get("original_metadata") or {}).get("std_header")) or {}
    if "fei_header" in (signal.get("original_metadata") or {}):
        return False
    xlen, mx = _scalar(header.get("Xlen")), _scalar(header.get("MX"))
    if not xlen or not mx:
        return True
    return abs(xlen / mx - 1.0) < 1e-6


def _scalar(value: Any) -> float | None:
    try:
        return float(np.asarray(value).ravel()[0])
    except (TypeError, ValueError, IndexError):
        return None


# --- metadata ----------------------------------------------------------------------------------------------------


def _mapped_metadata(signal: dict) -> dict:
    """``metadata`` with RosettaSciIO's ``mapping`` applied (what HyperSpy does on load: DM keeps date, voltage and
    magnification in original_metadata until mapped)."""
    import copy

    md = copy.deepcopy(signal.get("metadata") or {})
    original = signal.get("original_metadata") or {}
    for source, target in (signal.get("mapping") or {}).items():
        try:
            dst, convert = target if isinstance(target, tuple) else (target, None)
            found, value = _lookup(original, str(source).split("."))
            if not found:
                continue
            if convert is not None:
                value = convert(value)
            if value is None:
                continue
            node = md
            *parents, leaf = str(dst).split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        except Exception:  # a mapping that does not apply to this file is simply skipped
            continue
    return md


def _lookup(tree: Any, path: list[str]) -> tuple[bool, Any]:
    for segment in path:
        if not isinstance(tree, dict):
            return False, None
        if segment in tree:
            tree = tree[segment]
            continue
        alias = next((k for k in tree if str(k).replace(" ", "_") == segment), None)
        if alias is None:
            return False, None
        tree = tree[alias]
    return True, tree


def _standard_metadata(out: Decoded, md: dict) -> None:
    general = md.get("General") or {}
    date, time_ = general.get("date"), general.get("time")
    if date:
        text = f"{date} {time_ or '00:00:00'}".split(".")[0]
        when = parse_datetime(text, ("%Y-%m-%d %H:%M:%S",), tz=general.get("time_zone"))
        if when is not None:
            out.acquired_at, out.acquired_at_source = when, out.meta["format"]
    instrument = md.get("Acquisition_instrument") or {}
    for kind in ("TEM", "SEM"):
        inst = instrument.get(kind)
        if not isinstance(inst, dict):
            continue
        out.meta["instrument_kind"] = kind
        _put(out.meta, "instrument", inst.get("microscope"))
        kv = positive_or_none(inst.get("beam_energy"))
        _put(out.meta, "hv_v", kv * 1e3 if kv else None)
        _put(out.meta, "magnification", positive_or_none(inst.get("magnification")))
        _put(out.meta, "camera_length_mm", positive_or_none(inst.get("camera_length")))
        _put(out.meta, "dwell_s", positive_or_none(inst.get("dwell_time")))
        detector = inst.get("Detector")
        if isinstance(detector, dict):
            names = [str(v.get("detector_type") or v.get("detector_name") or k) for k, v in detector.items()
                     if isinstance(v, dict)]
            _put(out.meta, "detector", ", ".join(names) or None)
        break


def _put(meta: dict, key: str, value: Any) -> None:
    if value is not None and value != "":
        meta[key] = value


def _velox_metadata(meta: dict, om: dict) -> None:
    """Velox keeps instrument facts in original_metadata only (strings); fill what the standard keys lack."""
    instrument = om.get("Instrument") or {}
    optics = om.get("Optics") or {}
    parts = (instrument.get("Manufacturer"), instrument.get("InstrumentClass"), instrument.get("InstrumentModel"))
    name = " ".join(dict.fromkeys(str(v) for v in parts if v))
    facts = {
        "instrument": name or None,
        "hv_v": positive_or_none(optics.get("AccelerationVoltage")),
        "magnification": positive_or_none(optics.get("NominalMagnification")),
        "dwell_s": positive_or_none((om.get("Scan") or {}).get("DwellTime")),
        "detector": (om.get("BinaryResult") or {}).get("Detector"),
    }
    for key, value in facts.items():
        if key not in meta:
            _put(meta, key, value)
