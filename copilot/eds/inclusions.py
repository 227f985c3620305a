"""Per-object EDS: summed spectrum, net line intensities, element fractions and inclusion class of every object,
and counts and area per class per mm² of the analysed field."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from copilot.eds.classify import classify
from copilot.eds.cube import EdsCube
from copilot.eds.lines import element
from copilot.eds.quant import element_fractions, line_intensities, line_windows
from copilot.eds.settings import EdsSettings

SEMI_QUANT = "semi-quantitative: Cliff–Lorimer k-factor ratios, no absorption/fluorescence correction"


@dataclass(frozen=True)
class InclusionObject:
    id: int
    area_px: int
    centroid_yx_px: tuple[float, float]
    counts: int  # all counts of the summed spectrum
    net: dict[str, float]  # line → net counts
    fractions: dict[str, float]  # element → fraction (basis of the settings), detected non-matrix elements only
    fraction_sigma: dict[str, float]
    inclusion_class: str
    confidence: float


@dataclass(frozen=True)
class ClassTally:
    name: str
    count: int
    area_px: int
    count_per_mm2: float | None
    area_fraction: float  # of the analysed field


@dataclass(frozen=True)
class InclusionReport:
    objects: tuple[InclusionObject, ...]
    classes: tuple[ClassTally, ...]
    basis: str
    field_area_mm2: float | None
    spectra: np.ndarray  # (n_objects, channels) summed spectra, rows in the order of ``objects``
    note: str = SEMI_QUANT


def object_spectra(counts: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Object ids, their pixel counts and summed spectra (n, channels) for every label > 0."""
    h, w, c = counts.shape
    if labels.shape != (h, w):
        raise ValueError(f"labels {labels.shape} do not match the EDS map {(h, w)}")
    lab = labels.ravel()
    idx = np.flatnonzero(lab > 0)
    if not len(idx):
        return np.zeros(0, int), np.zeros(0, int), np.zeros((0, c))
    idx = idx[np.argsort(lab[idx], kind="stable")]
    ids, starts, areas = np.unique(lab[idx], return_index=True, return_counts=True)
    rows = counts.reshape(h * w, c)[idx]
    # one contiguous sum per object: ~10x faster than np.add.reduceat over the gathered rows
    spectra = np.empty((len(ids), c), np.float64)
    for k, (a, n) in enumerate(zip(starts, areas)):
        spectra[k] = rows[a:a + n].sum(axis=0, dtype=np.int64)
    return ids, areas, spectra


def channel_sum(counts: np.ndarray, channels: np.ndarray) -> np.ndarray:
    """Per-pixel sum over ``channels`` (any order, repeats counted once), one slice per contiguous run of channels
    (3x faster than gathering them).

    >>> channel_sum(np.arange(12).reshape(1, 2, 6), np.array([4, 1, 2, 1])).tolist()
    [[7, 25]]
    """
    ch = np.unique(np.asarray(channels, int))
    out = np.zeros(counts.shape[:2], np.int64)
    for run in np.split(ch, np.flatnonzero(np.diff(ch) != 1) + 1):
        if run.size:
            out += counts[:, :, run[0]:run[-1] + 1].sum(axis=2, dtype=np.int64)
    return out


def segment_inclusions(cube: EdsCube, cfg: EdsSettings, z: float = 5.0) -> np.ndarray:
    """Objects where the non-matrix lines' gross counts (smoothed over 1 px) stand z robust σ above the field."""
    win = line_windows(cube.offset_kev, cube.scale_kev, cube.counts.shape[2], cfg)
    matrix = set(cfg.matrix_elements)
    chans = np.concatenate([pk for ln, pk in zip(win.lines, win.peak) if element(ln) not in matrix] or [[]]).astype(int)
    if not len(chans):
        raise ValueError("no non-matrix line on this energy axis: nothing to segment on")
    signal = ndi.gaussian_filter(channel_sum(cube.counts, chans).astype(np.float32), 1.0)
    med = float(np.median(signal))
    mad = 1.4826 * float(np.median(np.abs(signal - med))) or 1.0
    mask = ndi.binary_fill_holes(ndi.binary_opening(signal > med + z * mad))
    labels, _ = ndi.label(mask)
    sizes = np.bincount(labels.ravel())
    small = sizes < cfg.min_area_px
    small[0] = False
    labels[small[labels]] = 0
    labels, _, _ = _relabel(labels)
    return labels


def _relabel(labels: np.ndarray):
    ids = np.unique(labels)
    lut = np.zeros(int(ids.max()) + 1, np.int32)
    lut[ids[ids > 0]] = np.arange(1, int((ids > 0).sum()) + 1)
    return lut[labels], ids, lut


def analyse_inclusions(cube: EdsCube, labels: np.ndarray, cfg: EdsSettings | None = None) -> InclusionReport:
    """Every object of ``labels`` (0 = matrix) on the EDS map: spectrum, net intensities, fractions, class."""
    cfg = cfg or EdsSettings()
    ids, areas, spectra = object_spectra(cube.counts, np.asarray(labels))
    keep = areas >= cfg.min_area_px
    ids, areas, spectra = ids[keep], areas[keep], spectra[keep]
    win, net, sigma, bg = line_intensities(spectra, cube.offset_kev, cube.scale_kev, cfg)
    fr = element_fractions(net, sigma, bg, win, cfg)
    f, s = (fr.atomic, fr.atomic_sigma) if cfg.basis == "atomic" else (fr.weight, fr.weight_sigma)
    names, conf = classify(f, s, fr.elements, cfg.classes)
    centroids = ndi.center_of_mass(np.ones(labels.shape), labels, ids) if len(ids) else []
    objects = tuple(
        InclusionObject(
            id=int(ids[i]), area_px=int(areas[i]), centroid_yx_px=(float(centroids[i][0]), float(centroids[i][1])),
            counts=int(spectra[i].sum()),
            net={ln: float(net[i, j]) for j, ln in enumerate(win.lines)},
            fractions={el: float(f[i, j]) for j, el in enumerate(fr.elements) if fr.detected[i, j]},
            fraction_sigma={el: float(s[i, j]) for j, el in enumerate(fr.elements) if fr.detected[i, j]},
            inclusion_class=names[i], confidence=float(conf[i]),
        )
        for i in range(len(ids))
    )
    field_px = labels.size
    field_mm2 = None if cube.nm_per_px is None else field_px * (cube.nm_per_px * 1e-6) ** 2
    tallies = []
    for name in [r.name for r in cfg.classes] + ["unclassified"]:
        sel = [o for o in objects if o.inclusion_class == name]
        area = sum(o.area_px for o in sel)
        tallies.append(ClassTally(name, len(sel), area, None if field_mm2 is None else len(sel) / field_mm2,
                                  area / field_px))
    return InclusionReport(objects, tuple(tallies), cfg.basis, field_mm2, spectra)
