"""How visible are the particles particles-stem misses? The ideal observer's detectability d' of every particle.

    PYTHONPATH=. python bench/accuracy/particle_visibility.py [--per-group 24] [--groups in-domain,dose,...]

The accuracy bench's frames of each group (``evaluation.sample_frame``: same seeds, same order) are simulated again;
the simulator's draws are replayed to get the noiseless image and each interior particle's own signal
(``copilot.sim.stem``: its thickness profile and contrast factor; HAADF adds it, BF-TEM attenuates the support and
adds the Fresnel fringe; probe blur). Its detectability is that of an observer who knows the exact signal and where
it is: d'² = Σ (dose·Δ)² / (dose·I + σ_read²) over the pixels it touches (I: the noiseless image, Poisson noise). An
observer searching a frame needs d' of about 5 (the Rose criterion). A particle is found when the daemon's analysis
matches it at IoU ≥ 0.5 on the analysis grid, as the accuracy bench scores it. Writes particle_visibility.md (+ .json).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from defects_visibility import BINS, bin_cells, bin_header, summary  # noqa: E402 (the same bins and Rose criterion)


def particle_dprimes(params, rng: np.random.Generator) -> dict[int, float]:
    """d' of each particle (by instance label) of the frame ``simulate_frame(params, rng)`` would draw from this
    ``rng`` state (read from a copy: ``rng`` itself is not advanced)."""
    from copilot.sim.stem import (form_image, particle_profiles, particle_strengths, place_particles,
                                  render_particles, support_texture)

    twin = copy.deepcopy(rng)  # the simulator's own draws, in its order, without the noise
    parts = place_particles(params, twin)
    strengths = particle_strengths(len(parts), params, twin)
    powers = particle_profiles(len(parts), params, twin)
    signal, inst = render_particles(parts, params.shape, params.nm_per_px, params, strengths=strengths, powers=powers)
    support = support_texture(params.shape, params.nm_per_px, params, twin)
    sig = params.probe_blur_nm / params.nm_per_px

    def blur(a):
        return ndi.gaussian_filter(a, sig, truncate=3.0) if sig > 0.25 else a

    lam = np.clip(blur(form_image(signal, support, params)), 0, None) * params.dose
    out = {}
    for k in np.unique(inst[inst > 0]) - 1:
        alone, _ = render_particles([parts[k]], params.shape, params.nm_per_px, params,
                                    strengths=None if strengths is None else strengths[k:k + 1],
                                    powers=None if powers is None else powers[k:k + 1])
        if params.modality == "haadf":
            delta = alone
        else:
            delta = -support * alone
            if params.bf_fringe != 0:
                fs = max(params.fringe_nm / params.nm_per_px, 0.3)
                delta = delta + params.bf_fringe * (ndi.gaussian_filter(alone, fs, truncate=3.0) - alone)
        d = blur(delta) * params.dose
        touched = np.abs(d) > 1e-6 * max(float(np.abs(d).max()), 1e-12)
        out[int(k) + 1] = float(np.sqrt(np.sum(d[touched] ** 2 / (lam[touched] + params.read_noise**2 + 1e-9))))
    return out


def frame_rows(backend, group: str, i: int, rng: np.random.Generator) -> list[dict]:
    """(diameter, d', found) of each interior particle of the group's next frame (advances ``rng`` as the bench)."""
    from evaluation import nearest_to_grid, run_model, seq

    from copilot.sim.domains import POST, domain_params
    from copilot.sim.stem import simulate_frame
    from copilot.train.metrics import matched_pairs

    params = domain_params(group, rng, 512, "particles", None)
    dprime = particle_dprimes(params, rng)
    sim = POST.get(group, lambda f: f)(simulate_frame(params, rng))
    sim.truth["domain"] = group
    fm, _, _ = run_model(backend, sim, group, i)
    native_on_grid = nearest_to_grid(sim.instances, fm.instances.shape)
    truth_g = seq(native_on_grid)
    matched = set(matched_pairs(fm.instances, truth_g)[:, 1].tolist())
    on = truth_g > 0
    to_grid = dict(zip(native_on_grid[on].tolist(), truth_g[on].tolist()))
    return [{"frame": i, "modality": params.modality, "ecd_nm": q["ecd_nm"], "dprime": dprime[q["instance"]],
             "found": to_grid.get(q["instance"]) in matched}
            for q in sim.truth["particles"] if not q["touches_edge"]]


def report(groups: dict[str, dict], source: str) -> str:
    head = bin_header()
    lines = ["# Which particles can be seen at all: detectability of the particles particles-stem misses", "",
             f"{source}. Interior particles only. Per d' cell: share of the group's particles, and the model's "
             "recall there (IoU ≥ 0.5 on the analysis grid, as `report.md` scores). d' is the ideal observer's (exact "
             "signal, known position; see the script's docstring); a search needs about 5 (Rose). Regenerate: "
             "`PYTHONPATH=. python bench/accuracy/particle_visibility.py`.", "",
             f"| group | particles | recall | missed (below d' 5 / below 8) | share below d' 5 | recall at d' ≥ 5 | "
             f"{head} |", "|---|---|---|---|---|---|" + "---|" * (len(BINS) - 1)]
    for g, s in groups.items():
        lines.append(f"| {g} | {s['particles']} | {s['recall']:.3f} | {s['missed']} ({s['missed_below_rose']} / "
                     f"{s['missed_below_8']}) | {s['below_rose']:.1%} | {s['recall_above_rose']:.3f} | {bin_cells(s)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from copilot.inference.ort_backend import OrtBackend
    from copilot.sim.domains import groups_for

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="particles-stem")
    ap.add_argument("--per-group", type=int, default=24)
    ap.add_argument("--seed", type=int, default=20261125, help="the accuracy bench's seed (run.py)")
    ap.add_argument("--groups", default=None, help="comma-separated (default: every particles group)")
    ap.add_argument("--out", type=Path, default=HERE)
    a = ap.parse_args(argv)
    backend = OrtBackend.from_name(a.model, threads=2)
    groups = {}
    for g in (a.groups.split(",") if a.groups else list(groups_for("particles"))):
        rng = np.random.default_rng([a.seed, sum(map(ord, g)), len(g)])  # evaluation.evaluate_model's
        rows = [r for i in range(a.per_group) for r in frame_rows(backend, g, i, rng)]
        groups[g] = summary(rows, "particles")
        s = groups[g]
        print(f"{g}: {s['particles']} particles, recall {s['recall']:.3f}, below d' 5: {s['below_rose']:.1%}, "
              f"missed {s['missed']} ({s['missed_below_rose']} below d' 5)")
    source = (f"{backend.card.name} {backend.card.version}, {a.per_group} frames of 512² per group "
              f"(seed {a.seed}, the accuracy bench's frames)")
    (a.out / "particle_visibility.md").write_text(report(groups, source))
    (a.out / "particle_visibility.json").write_text(json.dumps({"source": source, "groups": groups}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
