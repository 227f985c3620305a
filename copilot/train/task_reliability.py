"""Shared machinery of the per-task reliability recipes (defects, grains): simulate frames in every domain group of a
task, run the model and the daemon's analysis, record the reliability features beside the true per-frame scores,
fit the regressor (``copilot.train.reliability.fit_and_write``) and keep the table for bench/reliability.

A task recipe supplies its targets and a ``score(fm, sim) -> dict`` of them; see ``defects_reliability`` and
``grains_reliability``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class TaskRecipe:
    task: str  # copilot.sim.domains task name
    default_model: str
    targets: list[str]  # the regressor's outputs; "f1", "precision", "recall" drive the verdict
    score: Callable  # (FrameMeasurements, simulated frame) -> {target: value}
    table: Path
    frame_meta: Callable = lambda sim: {}  # simulated frame -> Frame.meta the analysis needs
    default_per_group: int = 40
    module: str = ""

    def collect(self, model: str, per_group: int, seed: int, size_px: int = 512,
                log=print) -> tuple[list[dict], np.ndarray]:
        """One row per simulated frame: group, features, targets; plus the in-domain embeddings."""
        from copilot.analysis import measure
        from copilot.frame import Frame
        from copilot.inference.ort_backend import OrtBackend
        from copilot.reliability.score import Assessor
        from copilot.sim.domains import groups_for, sample_domain_frame

        backend = OrtBackend.from_name(model, threads=2)
        assessor = Assessor(backend.card.model_copy(update={"reliability_regressor": None}), backend.folder)
        rng = np.random.default_rng(seed)
        rows, embeddings = [], []
        for group in groups_for(self.task):
            for i in range(per_group):
                sim = sample_domain_frame(group, rng, size_px, task=self.task)
                frame = Frame(sim.image, sim.nm_per_px, stream=f"{group}-{i}", frame_id=str(i), origin="sim",
                              meta=self.frame_meta(sim))
                fm = measure(backend.segment(frame))
                rows.append({"group": group, **assessor.frame(fm).features, **self.score(fm, sim)})
                if group == "in-domain":
                    embeddings.append(fm.segmentation.embedding)
            if log is not None:
                f1 = np.mean([r["f1"] for r in rows[-per_group:]])
                log(f"{group}: {per_group} frames, mean true F1 {f1:.3f}")
        return rows, np.array(embeddings)

    def fit_and_write(self, model: str, rows: list[dict], command: str, seed: int = 0) -> Path:
        """Fit on ``rows``; reliability.onnx + reliability.json beside the model, named in its card."""
        from copilot.train.reliability import fit_and_write as write

        return write(model, rows, None, command, seed, targets=self.targets)

    def main(self, argv: list[str] | None = None, doc: str | None = None) -> int:
        from copilot.train.reliability import read_table, write_table

        ap = argparse.ArgumentParser(prog=f"python -m {self.module}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
        ap.add_argument("model", nargs="?", default=self.default_model, help="model name or folder")
        ap.add_argument("--per-group", type=int, default=self.default_per_group,
                        help="simulated frames per domain group")
        ap.add_argument("--seed", type=int, default=0, help="seed of the simulated frames and the trees")
        ap.add_argument("--size", type=int, default=512, help="frame edge in pixels")
        ap.add_argument("--table", type=Path, default=self.table, help="per-frame table (CSV)")
        ap.add_argument("--refit", action="store_true", help="refit from --table without simulating again")
        ap.add_argument("--no-fit", action="store_true", help="simulate and write --table only")
        ap.add_argument("--add-table", type=Path, action="append", default=[],
                        help="a further table (e.g. of another frame size) fitted on with --table")
        a = ap.parse_args(argv)
        command = f"python -m {self.module} {a.model} --per-group {a.per_group} --seed {a.seed}"
        if a.size != 512:
            command += f" --size {a.size}"
        if a.refit:
            rows = read_table(a.table)
            command = f"python -m {self.module} {a.model} --refit --table {a.table} --seed {a.seed}"
        else:
            rows, _ = self.collect(a.model, a.per_group, a.seed, a.size)
            write_table(rows, a.table)
            if a.no_fit:
                print(f"wrote {len(rows)} frames of {a.size}² to {a.table}")
                return 0
        for extra in a.add_table:
            rows += read_table(extra)
            command += f" --add-table {extra}"
        folder = self.fit_and_write(a.model, rows, command, a.seed)
        print(f"wrote {folder}/reliability.onnx (+ .json) from {len(rows)} frames; table {a.table}"
              + "".join(f" + {t}" for t in a.add_table))
        return 0


def prf(prefix: str, tp: float, n_p: float, n_t: float) -> dict[str, float]:
    """F1, precision and recall from counts (empty prediction vs empty truth scores 1)."""
    if n_p + n_t == 0:
        return {f"{prefix}f1": 1.0, f"{prefix}precision": 1.0, f"{prefix}recall": 1.0}
    return {f"{prefix}f1": 2 * tp / (n_p + n_t), f"{prefix}precision": tp / n_p if n_p else 0.0,
            f"{prefix}recall": tp / n_t if n_t else 0.0}
