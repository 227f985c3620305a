"""The honest accuracy report: every shipped model, every simulated domain group, beside the classical baseline.

    .venv/bin/python bench/accuracy/run.py [--per-group 24] [--size 512] [--seed 20261125] [--models NAME ...]
    .venv/bin/python bench/accuracy/run.py --report-only      # rebuild report.md (+ PNGs) from results.json

For every model under ``engines/`` (card.json + model.onnx) and every domain group the simulator offers for the
backend's task (``copilot.sim.domains``; every group except ``in-domain`` is a held-out shift), the same simulated
frames go through

* the learned model, run exactly as the daemon runs it: ``OrtBackend.from_name(name, threads=2)`` →
  ``backend.segment(frame)`` → ``copilot.analysis.measure`` (instances on the analysis grid, the card's working nm/px);
* the classical baseline (``copilot.baseline``: Otsu + distance-transform watershed; contrast guessed per frame),
  run on the frame at its own resolution, as a microscopist would run Fiji.

Both are scored against the simulator's exact masks on the model's analysis grid (``nearest_to_grid`` of the truth;
the baseline's labels are taken to the same grid the same way), so both face the same reference:

* pixel mIoU: mean of the foreground and background IoU (particles), or over all classes (phases), pooled;
* object F1 / precision / recall at IoU ≥ 0.5 (``copilot.train.reliability.object_scores`` per frame; pooled over
  the group's objects for the headline);
* per-frame D50 relative error, particles cut by the frame edge excluded on both sides: the model's D50 is the
  daemon's own ``summary.particles.d50``, the baseline's the median ECD (nm) of its interior objects at full
  resolution, the truth the simulator's median ECD of the drawn interior particles (``truth["d50_nm"]``); only frames
  with at least ``MIN_D50_PARTICLES`` interior truth particles count;
* phase models: absolute error of each class's area fraction in percentage points.

Three real instrument files (no labels) are run through the right model and the baseline; overlays are saved.
Outputs: results.json, report.md, f1_by_group_<model>.png, overlay_<model>_<group>_{median,worst}.png,
real_<name>.png — all in bench/accuracy/. ``diagnosis.md`` (hand-written after looking at the overlays) is
included in the report when present.
"""


from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from common import MIN_D50_PARTICLES, RESULTS, REPORT, TARGETS, console
from evaluation import discover_engines, evaluate_model, groups_for_task, pool_particles, show_frames
from copilot.sim.domains import DOMAIN_GROUPS
from figures import charts
from real_files import run_real_files
from report import write_report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/accuracy/run.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-group", type=int, default=24, help="simulated frames per domain group (default 24)")
    ap.add_argument("--size", type=int, default=512, help="frame edge in pixels (default 512)")
    ap.add_argument("--seed", type=int, default=20261125, help="the same seed gives the same frames per group")
    ap.add_argument("--models", nargs="*",
                    help="model names or engine folders (default: every model under engines/)")
    ap.add_argument("--no-real", action="store_true", help="skip the real vendor files")
    ap.add_argument("--report-only", action="store_true", help="rebuild report.md and charts from results.json")
    ap.add_argument("--show", nargs="+", metavar="GROUP:INDEX",
                    help="re-simulate these frames of the first model and save diag_*.png overlays (full + zoom)")
    args = ap.parse_args(argv)
    if args.show:
        show_frames((args.models or discover_engines())[0], args.show, args.per_group, args.size, args.seed)
        return 0
    if args.report_only:
        results = json.loads(RESULTS.read_text())
        for model in results["models"]:  # pooled numbers are recomputed from the per-frame rows
            for group, summary in model["groups"].items():
                rows = [r for r in model["frames"] if r["group"] == group]
                if model["task"] == "particles" and rows:
                    summary["model"], summary["baseline"] = pool_particles(rows, "model"), pool_particles(rows, "baseline")
        charts(results)
        write_report(results)
        console.log(f"wrote {REPORT}")
        return 0
    models = discover_engines(args.models)
    if not models:
        console.log("[red]no shipped engines (engines/<name>/card.json + model.onnx)")
        return 1
    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/accuracy/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "per_group": args.per_group, "size_px": args.size, "seed": args.seed,
        "host": f"{platform.machine()}, {platform.python_version()}, onnxruntime CPU 2 threads",
        "domain_groups_available": list(DOMAIN_GROUPS),
        "min_d50_particles": MIN_D50_PARTICLES, "targets": TARGETS, "models": [], "real": [],
    }
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        for name in models:
            results["models"].append(evaluate_model(name, args.per_group, args.size, args.seed, progress))
            RESULTS.write_text(json.dumps(results, indent=1, default=float) + "\n")
    tasks_scored = {m["task"] for m in results["models"]}
    for task in ("particles", "phases"):
        if task not in tasks_scored:
            try:
                groups, how = groups_for_task(task)
            except Exception as exc:  # noqa: BLE001
                groups, how = [], f"{type(exc).__name__}: {exc}"
            results.setdefault("tasks_without_engine", {})[task] = {"groups": groups, "source": how}
    if not args.no_real:
        results["real"] = run_real_files(models)
    results["seconds"] = time.perf_counter() - t0
    RESULTS.write_text(json.dumps(results, indent=1, default=float) + "\n")
    charts(results)
    write_report(results)
    console.log(f"wrote {RESULTS}, {REPORT} and PNGs in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
