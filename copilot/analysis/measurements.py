"""What leaves analysis: plain, numpy-backed types (no wire, no pydantic). ``copilot.result`` turns them into the
document; their field names are the document's, so that conversion is a validation, not a mapping."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from copilot.analysis.morphology import Morphology
from copilot.analysis.geometry import PackedOutlines, RefinedParticles, paint
from copilot.inference.preprocess import nearest_resample
from copilot.inference.segmentation import Segmentation

if TYPE_CHECKING:
    from copilot.eds.frame_eds import FrameInclusions


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float = 0.95
    method: str = "bootstrap"


@dataclass(frozen=True)
class Histogram:
    edges: list[float]
    counts: list[int]
    scale: str


@dataclass(frozen=True)
class LogNormalFit:
    geometric_mean: float
    sigma_g: float


@dataclass(frozen=True)
class Sufficiency:
    quantity: str
    estimate: float | None
    target_rel: float
    enough: bool
    scope: str
    half_width_rel: float | None = None
    more_objects_needed: int | None = None
    more_frames_needed: int | None = None


@dataclass(slots=True)
class ParticleRow:
    """One particle (a row of :class:`ParticleTable`, copied out of it); lengths in the table's unit. Not frozen:
    a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, 7× the cost, and the document
    of a 2048² frame builds hundreds of rows."""

    id: int
    centroid_x_px: float
    centroid_y_px: float
    centroid_x_nm: float | None
    centroid_y_nm: float | None
    area: float
    ecd: float
    feret_max: float
    feret_min: float
    aspect_ratio: float
    circularity: float
    solidity: float
    mean_intensity: float
    confidence: float
    touches_edge: bool
    resolved: bool


@dataclass
class ParticleTable:
    """Per-particle columns (numpy arrays, one entry per particle). Lengths in the frame's length unit (nm, or
    frame px when uncalibrated); centroids in frame pixels (and nm when calibrated)."""

    id: np.ndarray
    centroid_x_px: np.ndarray
    centroid_y_px: np.ndarray
    area: np.ndarray
    ecd: np.ndarray
    feret_max: np.ndarray
    feret_min: np.ndarray
    aspect_ratio: np.ndarray
    circularity: np.ndarray
    solidity: np.ndarray
    mean_intensity: np.ndarray
    confidence: np.ndarray
    touches_edge: np.ndarray
    resolved: np.ndarray  # ECD at or above the resolvable size (see particles.RESOLVABLE_PX)
    nm_per_px: float | None = None

    def __len__(self) -> int:
        return int(self.id.size)

    def row(self, i: int) -> ParticleRow:
        cols = {f.name: getattr(self, f.name)[i] for f in fields(self) if f.name != "nm_per_px"}
        vals = {k: (bool(v) if isinstance(v, np.bool_) else int(v) if k == "id" else float(v)) for k, v in cols.items()}
        x = (vals["centroid_x_px"] + 0.5) * self.nm_per_px if self.nm_per_px else None  # from the frame's corner
        y = (vals["centroid_y_px"] + 0.5) * self.nm_per_px if self.nm_per_px else None
        return ParticleRow(centroid_x_nm=x, centroid_y_nm=y, **vals)

    def rows(self) -> list[ParticleRow]:
        """Every row (the same values as ``row(i)``), converted column by column; positional arguments in
        ParticleRow's order (``_ROW_ORDER``, checked at import)."""
        cols = [getattr(self, name).tolist() for name in _TABLE_COLUMNS]
        nm = self.nm_per_px
        if not nm:
            return [ParticleRow(i, x, y, None, None, *rest) for i, x, y, *rest in zip(*cols)]
        return [ParticleRow(i, x, y, (x + 0.5) * nm, (y + 0.5) * nm, *rest) for i, x, y, *rest in zip(*cols)]

    @property
    def sized(self) -> np.ndarray:
        """Which particles enter the size statistics: inside the frame and resolvable."""
        return ~self.touches_edge & self.resolved


_TABLE_COLUMNS = tuple(f.name for f in fields(ParticleTable) if f.name != "nm_per_px")
_ROW_ORDER = (*_TABLE_COLUMNS[:3], "centroid_x_nm", "centroid_y_nm", *_TABLE_COLUMNS[3:])
assert tuple(f.name for f in fields(ParticleRow)) == _ROW_ORDER, "ParticleTable.rows builds rows positionally"


@dataclass
class ParticleStats:
    """Counts and size statistics of one frame (names as in the document's ParticleSummary)."""

    table: ParticleTable
    count: int
    count_edge: int
    count_sized: int
    count_unresolved: int = 0
    analysed_area_um2: float | None = None
    density_per_um2: float | None = None
    ecd_mean: float | None = None
    ecd_sd: float | None = None
    d10: float | None = None
    d50: float | None = None
    d90: float | None = None
    ecd_mean_ci: Interval | None = None
    d50_ci: Interval | None = None
    lognormal: LogNormalFit | None = None
    psd: Histogram | None = None
    resolvable_ecd: float | None = None
    note: str | None = None

    @property
    def particles(self) -> list[ParticleRow]:
        """Row view of the table (what the document lists)."""
        return self.table.rows()

    @property
    def sized_ecd(self) -> np.ndarray:
        return self.table.ecd[self.table.sized]


@dataclass(frozen=True)
class PhaseFraction:
    name: str
    area_fraction: float
    point_count: float
    ci: Interval | None = None
    point_count_ci: Interval | None = None


@dataclass
class PhaseStats:
    phases: list[PhaseFraction]
    grid_points: int
    block_px: int
    subpixel_boundary_px: int = 0  # working pixels on phase boundaries whose area was split sub-pixel


@dataclass(frozen=True)
class GrainRow:
    """One grain inside the frame (a row of :class:`GrainTable`)."""

    id: int
    centroid_x_px: float
    centroid_y_px: float
    area_um2: float
    ecd_um: float
    g: float


@dataclass
class GrainTable:
    """Columns of the grains inside the frame: id (in the label mask), centroid in frame pixels, area (µm²), ECD
    (µm) and the grain's own E112 G from its area."""

    id: np.ndarray
    centroid_x_px: np.ndarray
    centroid_y_px: np.ndarray
    area_um2: np.ndarray
    ecd_um: np.ndarray
    g: np.ndarray

    def __len__(self) -> int:
        return int(self.id.size)

    def rows(self) -> list[GrainRow]:
        cols = [self.id.tolist(), self.centroid_x_px.tolist(), self.centroid_y_px.tolist(), self.area_um2.tolist(),
                self.ecd_um.tolist(), self.g.tolist()]
        return [GrainRow(int(i), x, y, a, d, g) for i, x, y, a, d, g in zip(*cols)]


@dataclass
class GrainStats:
    """Grains of one frame (ASTM E112 / E1382 / E930; names as in the document's GrainSummary). Counts: grains
    inside the frame and cut by its edge; sizes of the inside grains in µm; None where the frame is uncalibrated."""

    count: int
    count_edge: int
    analysed_area_mm2: float | None = None
    grains_per_mm2: float | None = None
    g_planimetric: float | None = None
    g_planimetric_ci: Interval | None = None
    g_intercept: float | None = None
    g_intercept_ci: Interval | None = None
    mean_intercept_um: float | None = None
    ecd_mean_um: float | None = None
    ecd_sd_um: float | None = None
    ecd_d10_um: float | None = None
    ecd_d50_um: float | None = None
    ecd_d90_um: float | None = None
    area_mean_um2: float | None = None
    ala_g: float | None = None
    ala: bool = False
    g_histogram: Histogram | None = None
    boundary_fraction: float | None = None
    note: str | None = None
    table: GrainTable | None = None

    @property
    def grains(self) -> list[GrainRow]:
        """Row view of the table (what the document lists)."""
        return [] if self.table is None else self.table.rows()


@dataclass
class Measures:
    """All of a frame's measurements (the document's ``measurements``)."""

    task: str
    length_unit: str
    particles: ParticleStats | None = None
    phases: PhaseStats | None = None
    defects: Any = None  # copilot.analysis.defects.DefectStats (task "defects")
    grains: GrainStats | None = None
    sufficiency: list[Sufficiency] = field(default_factory=list)


@dataclass(frozen=True)
class FrameMeasurements:
    """What analysis found in one frame: instance labels on the segmentation grid (``instances``), the measurements,
    and (particles) the outlines at the frame's resolution they were measured on (``refined``; as they came from a
    measure worker process, still packed, until something paints them)."""

    segmentation: Segmentation
    instances: np.ndarray
    summary: Measures
    refined: RefinedParticles | PackedOutlines | None = None
    morphology: Morphology | None = None  # phases: widths and intercepts (copilot.result documents it)
    boundaries: np.ndarray | None = None  # grains: the boundary map on the segmentation grid
    inclusions: "FrameInclusions | None" = None  # EDS of the frame's file (.bcf/.emd) when the config has [eds]

    def frame_labels(self) -> np.ndarray:
        """Labels on the frame's own pixels (what --save-masks writes): the measured outlines for particles, the
        grid labels taken to the frame (nearest) otherwise."""
        if isinstance(self.refined, PackedOutlines):
            return paint(self.refined.unpacked())
        if self.refined is not None:
            return paint(self.refined)
        return nearest_resample(self.instances, self.segmentation.frame.pixels.shape[:2])
