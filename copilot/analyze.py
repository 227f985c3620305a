"""`copilot analyze`: the live pipeline, run offline over files and folders."""

from __future__ import annotations

import fnmatch
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from copilot.config import Settings
from copilot.errors import UserError
from copilot.exports import ResultWriter
from copilot.inference.network import for_batch
from copilot.inference.select import load_backend
from copilot.pipeline import Pipeline
from copilot.sources.base import Arrival

console = Console(stderr=True)


def collect_files(paths: list[Path], include: list[str]) -> list[Path]:
    """Files named directly, plus every matching file below named folders, in name order."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and any(fnmatch.fnmatch(f.name.lower(), g) for g in include))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return files


def analyze_paths(paths: list[Path], out_dir: Path, settings: Settings, save_masks: bool = False,
                  dask: str | None = None) -> int:
    """``dask``: run each file as a task on a dask.distributed cluster (``local:N`` or ``tcp://…``; distributed.py)."""
    files = collect_files(paths, settings.source.include)
    if not files:
        raise UserError(f"no image files in {', '.join(map(str, paths))} (looked for {' '.join(settings.source.include)}; "
                        "set source.include in a --config to read others)")
    m = settings.model
    backend = None if dask else for_batch(load_backend(m.name, m.backend, m.threads, m.max_whole_px,
                                                       state_dir=settings.daemon.state_dir, precision=m.precision,
                                                       triton=settings.triton))
    writer = ResultWriter(out_dir, save_masks=save_masks)
    with Progress(TextColumn("[bold]analyze"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=console) as progress:
        task = progress.add_task("", total=len(files))

        def advance(result) -> None:
            p, g = result.doc.measurements.particles, result.doc.measurements.grains
            d50 = f"D50 {p.d50:.2f} {result.doc.measurements.length_unit}" if p and p.d50 else ""
            what = (f"{g.count} grains G {g.g_planimetric:.2f}" if g.g_planimetric is not None else f"{g.count} grains") \
                if g else f"{p.count if p else 0} particles {d50}"
            if result.doc.measurements.defects is not None:
                from copilot.ui.text import count_text

                what = count_text(result.doc)
            progress.update(task, advance=1, description=f"{result.doc.frame_id}: {what}")

        if dask:
            from copilot.distributed import run_files

            try:
                st = run_files(files, settings, [writer, advance], dask)
            except ValueError as exc:  # a malformed --dask
                progress.stop()
                writer.close()
                console.print(f"copilot analyze: {exc}")
                return 2
        else:
            st = _run_local(backend, files, settings, [writer, advance])
        progress.update(task, completed=len(files))
    writer.close()
    console.print(f"{st.processed} analysed, {st.quarantined} unreadable, {st.failed} failed → {out_dir}")
    if st.last_error:
        console.print(f"[yellow]last problem:[/yellow] {st.last_error}")
    return 0 if st.processed else 1


def _run_local(backend, files: list[Path], settings: Settings, sinks: list):
    pipeline = Pipeline(
        backend, stream=settings.daemon.stream, sinks=sinks, quarantine_dir=None,
        analysis=settings.analysis, eds=settings.eds,
        series=settings.series,
        thresholds=settings.verdict, queue_size=settings.pipeline.queue_size,
        workers=settings.pipeline.measure_workers, measure_mode=settings.pipeline.measure_mode,
    ).start()
    for f in files:
        pipeline.submit(Arrival(origin=str(f), path=f))
    pipeline.stop()
    return pipeline.stats
