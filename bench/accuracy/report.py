"""report.md from results.json: targets met or missed by how much, per-group tables, real files, diagnosis."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from common import DIAGNOSIS, MIN_D50_PARTICLES, OUT, REPORT, TARGETS, _fmt
from evaluation import is_in_domain, pool_particles


def verdicts(model: dict[str, Any]) -> list[str]:
    """Target checks, one line each: met, or missed by how much."""
    lines = []
    g = model["groups"]
    if model["task"] == "particles":
        for group, s in g.items():
            m, b = s["model"], s["baseline"]
            if is_in_domain(group):
                f1t, d50t = TARGETS["particles_in_domain_f1"], TARGETS["particles_in_domain_d50_rel_error"]
                lines.append(_check(f"{group}: object F1 ≥ {f1t}", m["object_f1"], f1t, True))
                d = m["d50_rel_error_mean"]
                lines.append(_check(f"{group}: D50 error ≤ {100 * d50t:.0f} % (mean over frames)", d, d50t, False,
                                    pct=True))
                et = TARGETS["particles_in_domain_ecd_rel_error_median"]
                lines.append(_check(f"{group}: median per-particle ECD error ≤ {100 * et:.0f} %",
                                    m.get("ecd_rel_error_median"), et, False, pct=True))
                sel = [r for r in model["frames"] if r["group"] == group]
                mods = sorted({r.get("modality", "haadf") for r in sel})
                for mod in mods if len(mods) > 1 else []:
                    pm = pool_particles([r for r in sel if r.get("modality", "haadf") == mod], "model")
                    lines.append(_check(f"{group}, {mod} frames only: object F1 ≥ {f1t}", pm["object_f1"], f1t, True))
                    lines.append(_check(f"{group}, {mod} frames only: D50 error ≤ {100 * d50t:.0f} %",
                                        pm["d50_rel_error_mean"], d50t, False, pct=True))
            else:
                f1t = TARGETS["particles_shifted_f1"]
                lines.append(_check(f"{group}: object F1 ≥ {f1t}", m["object_f1"], f1t, True))
                lines.append(_check(f"{group}: learned beats classical (F1 {m['object_f1']:.3f} vs "
                                    f"{b['object_f1']:.3f})", m["object_f1"] - b["object_f1"], 0.0, True, strict=True))
    else:
        t = TARGETS["phases_fraction_error_pp"]
        for group, s in g.items():
            m, b = s["model"], s["baseline"]
            lines.append(_check(f"{group}: phase-fraction error ≤ {t} pp", m["fraction_error_pp_max_class_mean"], t,
                                False, unit=" pp"))
            if not is_in_domain(group):
                lines.append(_check(f"{group}: learned beats classical ({m['fraction_error_pp_max_class_mean']:.2f} "
                                    f"vs {b['fraction_error_pp_max_class_mean']:.2f} pp)",
                                    b["fraction_error_pp_max_class_mean"] - m["fraction_error_pp_max_class_mean"],
                                    0.0, True, strict=True))
    return lines


def _check(what: str, value, target: float, higher: bool, pct=False, unit="", strict=False) -> str:
    if value is None:
        return f"- ❔ {what}: no estimate"
    ok = (value > target if strict else value >= target) if higher else value <= target
    gap = abs(value - target)
    if pct:
        v, gtxt = f"{100 * value:.1f} %", f"{100 * gap:.1f} points"
    else:
        v, gtxt = f"{value:.3f}{unit}", f"{gap:.3f}{unit}"
    if strict:
        return f"- {'✅' if ok else '❌'} {what}" + ("" if ok else f" — behind by {gtxt}")
    return f"- {'✅' if ok else '❌'} {what}: {v}" + ("" if ok else f" — missed by {gtxt}")


def breakdowns(model: dict[str, Any]) -> list[str]:
    """Where the misses come from, computed from the per-frame rows (magnification split by side, etc.)."""
    rows = [r for r in model["frames"] if "truth_n" in r]
    if not rows:
        return []
    lines = ["| slice | frames | model F1 (pooled) [95 % CI over frames] | P | R | baseline F1 | model D50 err | "
             "baseline D50 err |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lo, hi = model["trained_nm_per_px_range"]

    def add(label, sel):
        if not sel:
            return
        m, b = pool_particles(sel, "model"), pool_particles(sel, "baseline")
        ci = m["object_f1_ci95"]
        lines.append(f"| {label} | {len(sel)} | {m['object_f1']:.3f} [{ci[0]:.2f}, {ci[1]:.2f}] | "
                     f"{m['object_precision']:.3f} | "
                     f"{m['object_recall']:.3f} | {b['object_f1']:.3f} | {_fmt(m['d50_rel_error_mean'], True)} | "
                     f"{_fmt(b['d50_rel_error_mean'], True)} |")

    for group in model["groups"]:
        sel = [r for r in rows if r["group"] == group]
        mods = sorted({r.get("modality", "haadf") for r in sel})
        if len(mods) > 1:
            for mod in mods:
                add(f"{group}: {mod} frames", [r for r in sel if r.get("modality", "haadf") == mod])
        if group == "magnification":
            add("magnification: finer than trained (< %.2g nm/px)" % lo, [r for r in sel if r["nm_per_px"] < lo])
            add("magnification: coarser than trained (> %.2g nm/px)" % hi, [r for r in sel if r["nm_per_px"] > hi])
        d = [r["params"].get("d50_nm") for r in sel]
        if all(v is not None for v in d) and len(sel) >= 8:
            med = float(np.median(d))
            add(f"{group}: small particles (sim D50 < {med:.1f} nm)", [r for r in sel if r["params"]["d50_nm"] < med])
            add(f"{group}: large particles (sim D50 ≥ {med:.1f} nm)", [r for r in sel if r["params"]["d50_nm"] >= med])
        if group == "dose":
            dd = [r["params"]["dose"] for r in sel]
            med = float(np.median(dd))
            add(f"dose < {med:.1f} counts/px", [r for r in sel if r["params"]["dose"] < med])
            add(f"dose ≥ {med:.1f} counts/px", [r for r in sel if r["params"]["dose"] >= med])
        if group == "defocus":
            dd = [r["params"]["probe_blur_nm"] for r in sel]
            med = float(np.median(dd))
            add(f"probe blur < {med:.2f} nm", [r for r in sel if r["params"]["probe_blur_nm"] < med])
            add(f"probe blur ≥ {med:.2f} nm", [r for r in sel if r["params"]["probe_blur_nm"] >= med])
    return lines


def _real_verdict(e: dict[str, Any]) -> str:
    v = e.get("verdict")
    if not v or not v.get("level"):
        return "–"
    pf = v.get("predicted_f1")
    return f"**{v['level']}**" + (f" (pred. F1 {pf:.2f})" if pf is not None else "") + (
        ": " + "; ".join(v["reasons"]) if v.get("reasons") else "")


def _verdicts(s: dict[str, Any]) -> str:
    v = s.get("verdicts")
    if not v or not any(v.values()):
        return "–"
    pf = s.get("predicted_f1_mean")
    return f"{v['ok']}/{v['warn']}/{v['fail']}" + (f" ({pf:.2f})" if pf is not None else "")


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _arrow(before, after, fmt=_pct) -> str:
    return f"{fmt(before)} → **{fmt(after)}**"


def sizing_section(after: dict[str, Any] | None, before: dict[str, Any] | None) -> list[str]:
    """Sizes against a standard (bench/accuracy/sizing.py), before → after."""
    if not after:
        return []
    before = before or {}
    T = TARGETS
    L = ["## Sizes against a standard (particles-stem, `bench/accuracy/sizing.py`)\n",
         f"After: {after.get('model')} {after.get('version')} with this tree's analysis; before: "
         f"{before.get('model', '–')} {before.get('version', '')} with the analysis of `{before.get('code', 'd92c152')}`"
         " (instances measured on the working grid). Simulated HAADF frames with shot noise (60 counts/px) → the "
         "shipped model as the daemon runs it → measurement; truth = the drawn geometry.\n",
         f"Known shapes: discs of 1.5–20 nm (one per 32 nm cell), ellipses of 4–20 nm (aspect 1.5–2), touching pairs "
         f"(neck 0 / 35 / 70 % of the smaller diameter). Targets: median ECD error ≤ {100 * T['known_shapes_median_ecd_rel_error']:.0f} %"
         f" (discs 2–20 nm), every disc ≥ 3 nm within {100 * T['known_shapes_max_ecd_rel_error_ge_3nm']:.0f} %, Feret "
         f"max/min within {100 * T['known_shapes_feret_rel_error']:.0f} %, ≥ 95 % of touching pairs split, no single "
         "particle split.\n",
         "| nm/px | median ECD err (2–20 nm) | worst disc ≥ 3 nm | discs ≥ 1.5 nm found within 10 % | worst Feret max "
         "| worst Feret min | ellipses found | pairs split | single discs split |",
         "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    ka, kb = after.get("known_shapes", {}), before.get("known_shapes", {})
    for nm, a in ka.items():
        b = kb.get(nm, {})
        pa, pb = a.get("pairs", {}), b.get("pairs", {})
        L.append(f"| {nm} | {_arrow(b.get('median_ecd_rel_error_2_20nm'), a['median_ecd_rel_error_2_20nm'])} | "
                 f"{_arrow(b.get('max_ecd_rel_error_ge_3nm'), a['max_ecd_rel_error_ge_3nm'])} | "
                 f"{_arrow(b.get('found_ge_1p5nm_within_10pct'), a['found_ge_1p5nm_within_10pct'])} | "
                 f"{_arrow(b.get('ellipse_feret_max_rel_error_max'), a['ellipse_feret_max_rel_error_max'])} | "
                 f"{_arrow(b.get('ellipse_feret_min_rel_error_max'), a['ellipse_feret_min_rel_error_max'])} | "
                 f"{_arrow(b.get('ellipses_found'), a['ellipses_found'])} | "
                 f"{_arrow(pb.get('split_fraction'), pa.get('split_fraction'))} | "
                 f"{b.get('single_discs_split', '–')} → **{a.get('single_discs_split', '–')}** |")
    sa, sb = after.get("sintering"), before.get("sintering", {})
    if sa:
        L += ["", f"Sintering: one stream at {sa['nm_per_px']} nm/px, {sa['size_px']}² frames, D50 growing 3 → 60 nm "
              f"in {len(sa['frames'])} frames (target: every frame within {100 * T['sintering_d50_rel_error']:.0f} % "
              f"of the simulator's D50). Worst frame {_arrow(sb.get('max_rel_error'), sa['max_rel_error'])}, median "
              f"{_arrow(sb.get('median_rel_error'), sa['median_rel_error'])}, frames within 3 %: "
              f"{sb.get('within_3pct', '–')} → **{sa['within_3pct']}** of {len(sa['frames'])}.\n",
              "| true D50 (nm) | before D50 (err) | after D50 (err) | frame px per working px (after) |",
              "| ---: | ---: | ---: | ---: |"]
        fb = {round(r["truth_d50_nm"], 2): r for r in sb.get("frames", [])}
        for r in sa["frames"]:
            b = fb.get(round(r["truth_d50_nm"], 2), {})
            fmt = lambda x: "–" if x.get("d50_nm") is None else f"{x['d50_nm']:.2f} ({_pct(x['rel_error'])})"  # noqa: E731
            L.append(f"| {r['truth_d50_nm']:.2f} | {fmt(b) if b else '–'} | {fmt(r)} | {r['grid_frame_px']:.2f} |")
    ca, cb = after.get("cost"), before.get("cost", {})
    if ca:
        L += ["", "Analysis cost (`measure` alone, p50 s per frame of simulated HAADF frames at 0.2 nm/px on 2 cores; "
              f"before: the analysis of {before.get('code', 'the code before')} (runs alternated with that day's "
              f"after on a loaded machine, load ~3); after: `sizing.py` on {after.get('code', 'this tree')}; "
              "`copilot bench` has the full-daemon numbers, `bench/results/postprocess-*.md` the stages):\n",
              "| frame | before | after | backend `segment` (after) |", "| --- | ---: | ---: | ---: |"]
        for size, a in ca.items():
            b = cb.get(size, {})
            sec = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
            L.append(f"| {size}² | {sec(b.get('analysis_s_p50'))} | **{sec(a['analysis_s_p50'])}** | "
                     f"{sec(a['segment_s_p50'])} |")
    return L + [""]


def write_report(results: dict[str, Any]) -> None:
    L: list[str] = []
    L.append("# Accuracy report: learned models vs the classical baseline\n")
    L.append(f"Generated {results['generated']} by `{results['command']}` "
             f"({results['per_group']} simulated frames of {results['size_px']}² per group, seed {results['seed']}; "
             f"{results['host']}). Numbers in `results.json`; re-render with `--report-only`.\n")
    L.append("**How it is measured.** The learned model runs exactly as the daemon runs it (`OrtBackend` on the CPU, "
             "2 threads → `copilot.analysis.measure`), so its instances live on the analysis grid (the card's working "
             "nm/px). The classical baseline (`copilot.baseline`: 1-px Gaussian, global Otsu with the contrast guessed "
             "per frame, holes filled, objects < 2 nm² removed, distance-transform watershed with seeds ≥ 2 nm apart) "
             "runs on the frame at its own resolution with fixed parameters, as one would run Fiji's Analyze "
             "Particles. Both are scored against the simulator's exact masks taken to the analysis grid "
             "(`nearest_to_grid`). Object F1 = IoU ≥ 0.5 matching, pooled over the group's objects. mIoU = mean of "
             "foreground and background IoU (F1 frame mean: the per-frame F1 averaged, every frame weighing the same, where "
             "the pooled F1 lets frames with many particles dominate). D50 error = |D50 − true D50| / true D50 per frame, edge particles "
             "excluded on both sides, mean over frames with ≥ %d interior truth particles; truth = median ECD of the "
             "simulator's drawn interior particles (the physical size, not a pixel mask).\n" % MIN_D50_PARTICLES)
    def load(name):
        path = OUT / name
        return json.loads(path.read_text()) if path.is_file() else None

    L += sizing_section(load("sizing.json"), load("sizing_before.json"))
    for model in results["models"]:
        name = model["model"]
        L.append(f"## {name} {model['version']} ({model['task']})\n")
        L.append(f"Working scale {model['working_nm_per_px']} nm/px, trained on frames of "
                 f"{model['trained_nm_per_px_range'][0]}–{model['trained_nm_per_px_range'][1]} nm/px. "
                 f"Groups: {model['groups_source']}.\n")
        if model.get("note"):
            L.append(f"_{model['note']}_\n")
            continue
        if model["task"] == "particles":
            L.append("| group | frames | nm/px | **F1 model** [95 % CI] | F1 baseline [95 % CI] | F1 frame mean model / baseline | "
                     "P / R model | P / R baseline | "
                     "mIoU model | mIoU baseline | **D50 err model** (mean / median) | D50 err baseline (mean / median) | "
                     "daemon verdict ok/warn/fail (pred. F1) |")
            L.append("| --- | ---: | --- | ---: | ---: | --- | --- | --- | ---: | ---: | --- | --- | --- |")
            for group, s in model["groups"].items():
                m, b = s["model"], s["baseline"]
                lo, hi = s["nm_per_px_range"]
                ci, cib = m.get("object_f1_ci95"), b.get("object_f1_ci95")
                L.append(f"| {group} | {s['frames']} | {lo:.2g}–{hi:.2g} | **{m['object_f1']:.3f}**"
                         + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") + f" | {b['object_f1']:.3f}"
                         + (f" [{cib[0]:.2f}, {cib[1]:.2f}]" if cib else "") + " | "
                         f"{m['object_f1_frame_mean']:.3f} / {b['object_f1_frame_mean']:.3f} | "
                         f"{m['object_precision']:.2f} / {m['object_recall']:.2f} | "
                         f"{b['object_precision']:.2f} / {b['object_recall']:.2f} | {m['miou_fg_bg']:.3f} | "
                         f"{b['miou_fg_bg']:.3f} | **{_fmt(m['d50_rel_error_mean'], True)}** / "
                         f"{_fmt(m['d50_rel_error_median'], True)} ({m['d50_frames']}/{m['d50_frames_eligible']}) | "
                         f"{_fmt(b['d50_rel_error_mean'], True)} / {_fmt(b['d50_rel_error_median'], True)} "
                         f"({b['d50_frames']}/{b['d50_frames_eligible']}) | {_verdicts(s)} |")
            L.append("\n(a/b after a D50 error: frames with an estimate / frames with ≥ %d interior truth particles.) "
                     "Baseline F1 scored at its own full resolution instead of the analysis grid: " % MIN_D50_PARTICLES
                     + ", ".join(f"{g} {s['baseline']['object_f1_native_grid']:.3f}"
                                 for g, s in model["groups"].items()) + ". Model D50 error against the truth mask "
                     "measured on the same grid (isolates segmentation from pixelation): "
                     + ", ".join(f"{g} {_fmt(s['model'].get('d50_rel_error_vs_grid_mask_mean'), True)}"
                                 for g, s in model["groups"].items()) + ".\n")
            L.append(f"![F1 per group](f1_by_group_{name}.png)\n")
        else:
            names = model["class_names"]
            L.append("| group | frames | mIoU model | mIoU baseline | fraction error model (pp, per class) | "
                     "fraction error baseline (pp, per class) | daemon verdict ok/warn/fail |")
            L.append("| --- | ---: | ---: | ---: | --- | --- | --- |")
            for group, s in model["groups"].items():
                m, b = s["model"], s["baseline"]
                L.append(f"| {group} | {s['frames']} | {m['miou']:.3f} | {b['miou']:.3f} | "
                         + ", ".join(f"{k} {v:.2f}" for k, v in m["fraction_error_pp_mean"].items()) + " | "
                         + ", ".join(f"{k} {v:.2f}" for k, v in b["fraction_error_pp_mean"].items())
                         + f" | {_verdicts(s)} |")
            L.append(f"\n![fraction error per group](f1_by_group_{name}.png)\n")
            del names
        L.append("### Targets\n")
        L += verdicts(model)
        L.append("")
        bd = breakdowns(model)
        if bd:
            L.append("### Where the errors come from (slices of the same frames)\n")
            L += bd
            L.append("")
        L.append("### Example overlays (green: truth, red: learned model, blue: classical baseline)\n")
        for group, s in model["groups"].items():
            ov = s.get("overlays", {})
            L.append(f"- {group}: [median frame]({ov.get('median')}), [worst frame]({ov.get('worst')})")
        L.append("")
    for task, info in results.get("tasks_without_engine", {}).items():
        L.append(f"## Task '{task}': no shipped model\n")
        L.append(f"The simulator offers {len(info['groups'])} '{task}' groups ({', '.join(info['groups']) or '–'}; "
                 f"{info['source']}), but no model under `engines/` has task '{task}', so nothing is scored and "
                 f"the phase-fraction target (≤ {TARGETS['phases_fraction_error_pp']} pp) is not measured. "
                 "Rerun this benchmark once one ships; it is picked up automatically.\n")
    L.append("## Real instrument files (no labels)\n")
    L.append("| file | frame | nm/px (trained range) | model | model: count / sized / D50 / ECD mean | "
             "baseline: count / sized / D50 / ECD mean | daemon verdict | overlay |")
    L.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for e in results.get("real", []):
        if "error" in e:
            L.append(f"| {e['file']} | – | – | – | {e['error']} | – | – | – |")
            continue
        nm = e.get("nm_per_px")
        rng_txt = (f"{nm:.4g} ({'in' if e.get('in_trained_range') else 'OUTSIDE'} "
                   f"{e['trained_nm_per_px_range'][0]}–{e['trained_nm_per_px_range'][1]})"
                   if nm and e.get("trained_nm_per_px_range") else (f"{nm:.4g}" if nm else "uncalibrated"))
        mr, br = e.get("model_result"), e["baseline"]
        if e["task"] == "particles":
            mtxt = (f"{mr['count']} / {mr['count_sized']} / {_fmt(mr['d50_nm'], digits=2)} nm / "
                    f"{_fmt(mr['ecd_mean_nm'], digits=2)} nm" if mr else "–")
            btxt = (f"{br['count']} / {br['count_sized']} / {_fmt(br['d50_nm'], digits=2)} nm / "
                    f"{_fmt(br['ecd_mean_nm'], digits=2)} nm")
        else:
            mtxt = (", ".join(f"{k} {100 * v:.1f} %" for k, v in mr["fractions"].items()) if mr
                    else e.get("model_note", "–"))
            btxt = f"pore (darkest Otsu class) fraction {100 * br['pore_fraction']:.1f} %"
        grid = f", grid {e['grid_shape'][0]}×{e['grid_shape'][1]}" if e.get("grid_shape") else ""
        L.append(f"| {e['label']} | {e['shape'][0]}×{e['shape'][1]}{grid} | {rng_txt} | {e.get('model') or '–'} | "
                 f"{mtxt} | {btxt} | {_real_verdict(e)} | [png]({e['overlay']}) |")
    L.append("")
    if DIAGNOSIS.is_file():
        L.append(DIAGNOSIS.read_text().strip() + "\n")
    else:
        L.append("_No diagnosis written yet (bench/accuracy/diagnosis.md)._\n")
    REPORT.write_text("\n".join(L) + "\n")
