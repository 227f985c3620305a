"""``copilot grains IMAGE``: ASTM E112 grain size from a boundary mask, or from an etched micrograph by the grains
boundary model (``--boundaries model``: the daemon's own backend and boundary analysis) or classically (dark/bright)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from copilot.errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("grains", help="ASTM E112 grain size (planimetric + intercept) from a boundary image")
    p.add_argument("image", type=Path, help="any image the readers take (TIFF, PNG, DM, ...)")
    p.add_argument("--boundaries", choices=["mask", "model", "dark", "bright"], default="mask",
                   help="mask: non-zero pixels are boundaries; model: the grains boundary model (--model); dark/bright: "
                        "etched boundaries found classically (top-hat, Otsu hysteresis)")
    p.add_argument("--model", default="grains-sem", help="grains model for --boundaries model (name or folder)")
    p.add_argument("--nm-per-px", type=float, default=None, help="calibration when the file carries none")
    p.add_argument("--close-px", type=int, default=None,
                   help="bridge boundary gaps up to this many pixels (default 1; with --boundaries model the "
                        "analysis' grain_close_px, 2 working px)")
    p.add_argument("--fields", type=int, default=3, help="fields per side for the 95 %% intervals (fields² in all)")
    p.add_argument("--out", type=Path, default=None, help="write grains.csv (interior grains) here")
    p.set_defaults(func=run)


def boundary_map(pixels: np.ndarray, kind: str, radius_px: int = 4) -> np.ndarray:
    """Boolean boundaries: the mask itself, or the dark (bright) lines of an etched image."""
    if kind == "mask":
        return np.asarray(pixels) > 0
    from scipy import ndimage as ndi
    from skimage.filters import apply_hysteresis_threshold, threshold_otsu

    img = ndi.gaussian_filter(np.asarray(pixels, np.float32), 1.0)
    size = 2 * radius_px + 1
    lines = ndi.grey_closing(img, size=size) - img if kind == "dark" else img - ndi.grey_opening(img, size=size)
    high = threshold_otsu(lines)  # hysteresis: faint stretches of a boundary stay joined to its strong parts
    return apply_hysteresis_threshold(lines, 0.3 * high, high)


def model_boundaries(frame, nm_per_px: float, model: str) -> tuple[np.ndarray, float]:
    """The grains model's boundary map (working grid) and that grid's nm/px."""
    from dataclasses import replace

    from copilot.analysis.grain_frame import boundary_map as model_map
    from copilot.analysis.settings import AnalysisSettings
    from copilot.inference.select import load_backend

    backend = load_backend(model, "auto", threads=2)
    if backend.card.task != "grains":
        raise UserError(f"{model} is a {backend.card.task} model: --boundaries model needs a grains model")
    seg = backend.segment(replace(frame, nm_per_px=nm_per_px))
    cfg = AnalysisSettings()
    return model_map(seg.probabilities, seg.class_names, cfg.grain_boundary_low, cfg.grain_boundary_high), seg.nm_per_px


def run(args) -> int:
    from copilot.analysis.grains import measure_grains
    from copilot.readers import read_frame

    frame = read_frame(args.image)
    nm = args.nm_per_px or frame.nm_per_px
    if not nm:
        raise UserError(f"{args.image.name} carries no calibration: pass --nm-per-px")
    if args.fields < 2:
        raise UserError("--fields must be at least 2 (intervals need two fields or more)")
    if args.boundaries == "model":
        b, nm = model_boundaries(frame, nm, args.model)
    else:
        b = boundary_map(frame.pixels, args.boundaries)
    if args.close_px is None:
        from copilot.analysis.settings import AnalysisSettings

        args.close_px = AnalysisSettings().grain_close_px if args.boundaries == "model" else 1
    r = measure_grains(b, nm, fields=args.fields, close_px=args.close_px)

    def show(v):
        if v is None:
            return "n/a"
        ci = "" if v.low is None else f"  (95 % CI {v.low:.2f} – {v.high:.2f})"
        return f"G = {v.g:.2f}{ci}"

    print(f"{args.image.name}: {r.n_inside} grains inside, {r.n_intercepted} cut by the frame edge, {nm:g} nm/px")
    print(f"  planimetric (Jeffries)    {show(r.planimetric)}")
    print(f"  intercept (Abrams)        {show(r.intercept)}"
          + ("" if r.mean_intercept_um is None else f"   mean intercept {r.mean_intercept_um:.3g} µm"))
    if r.ala_g is not None:
        print(f"  ALA (largest grain)       G = {r.ala_g:.2f}" + ("   ALA condition: report per E930" if r.ala else ""))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        with open(args.out / "grains.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["area_um2", "ecd_um", "g"])
            for a, d in zip(r.areas_um2, r.ecd_um):
                w.writerow([f"{a:.5g}", f"{d:.5g}", f"{3.321928 * np.log10(1e6 / a) - 2.954:.3f}"])
    return 0
