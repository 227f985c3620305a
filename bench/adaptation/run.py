"""Adaptation bench: before → after, no labels used, per shifted simulator group and on a second simulator.

For each group, ``--frames`` frames of ``--size``² are the unlabeled target: every method adapts the shipped model
to them, the label-free checks decide whether it would be promoted, and the simulator's exact labels — used only
here, after the fact — score parent and adapted models on the same frames: object F1, D50 error, predicted-F1 error
(particles); phase-fraction error and mIoU (phases). A "bad promotion" is a promotion of a model worse on the true
labels (F1 down by more than 0.005, or fraction error up by more than 0.5 pp).

    python -m bench.adaptation.run --task particles [--groups dose,defocus] [--methods selftrain,appearance]
           [--frames 12] [--size 512] [--json bench/adaptation/particles.json]
           [--streams K --eval-frames 8 [--first-stream 0]]

``--streams K``: per group, K streams that each keep one setting (as one microscope session does; new specimen in
every frame): adapt to ``--frames`` of a stream, score on ``--eval-frames`` other frames of it.

Run it through the training lock (minutes of CPU): ``flock /work/runs/train.lock nice -n 2 python -m ...``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20_261_129
HEADLINE = {"particles": "object_f1", "phases": "fraction_error_pp"}  # the figure each task's tables lead with


@dataclass
class Target:
    image: np.ndarray
    nm_per_px: float
    labels: np.ndarray  # particles: instances; phases: class map (names in class_names)
    d50_nm: float = float("nan")
    inner: int = 0
    class_names: tuple[str, ...] = ()


def targets(task: str, group: str, n: int, size: int, seed: int, params=None) -> list[Target]:
    """``n`` frames of ``group``; ``params``: one set of imaging parameters for all of them (a stream), else each
    frame draws its own."""
    rng = np.random.default_rng(seed)
    if group == "othersim":
        from bench.adaptation.othersim import other_frame

        return [Target(f.image, f.nm_per_px, f.instances, f.d50_nm, f.inner)
                for f in (other_frame(rng, size) for _ in range(n))]
    from copilot.sim.domains import sample_domain_frame

    out = []
    for _ in range(n):
        s = sample_domain_frame(group, rng, size, task=task, params=params)
        if task == "particles":
            inner = sum(1 for q in s.truth["particles"] if not q["touches_edge"])
            out.append(Target(s.image, s.nm_per_px, s.instances, s.truth.get("d50_nm", float("nan")), inner))
        else:
            out.append(Target(s.image, s.nm_per_px, s.instances, class_names=tuple(s.truth["class_names"])))
    return out


def as_frames(ts: list[Target], group: str):
    from copilot.frame import Frame

    return [Frame(t.image, t.nm_per_px, stream=group, frame_id=str(i), origin=f"sim:{group}:{i}")
            for i, t in enumerate(ts)]


def score(backend, ts: list[Target], group: str) -> dict[str, float]:
    """True-label metrics of one backend on the targets (the daemon's path: segment, measure, assess)."""
    from copilot.analysis import measure
    from copilot.reliability.score import Assessor
    from copilot.train.data import labels_to_grid
    from copilot.train.metrics import match_instances

    backend.scale_memory = False
    assessor = Assessor(backend.card, backend.folder)
    names = list(backend.card.class_names)
    tp = npred = ntrue = 0
    d50_err, f1_err, frac_err = [], [], []
    inter, union = np.zeros(len(names)), np.zeros(len(names))
    for frame, t in zip(as_frames(ts, group), ts):
        fm = measure(backend.segment(frame))
        if backend.card.task == "particles":
            truth = labels_to_grid(t.labels, fm.instances.shape)
            a, b, c = match_instances(fm.instances, truth)
            tp, npred, ntrue = tp + a, npred + b, ntrue + c
            pred_f1 = assessor.frame(fm).predicted_f1
            if pred_f1 is not None and c:
                f1_err.append(abs(pred_f1 - 2 * a / max(b + c, 1)))
            p = fm.summary.particles
            if t.inner >= 5 and np.isfinite(t.d50_nm):
                d50_err.append(abs(p.d50 - t.d50_nm) / t.d50_nm if p is not None and p.d50 is not None else 1.0)
        else:
            lut = np.array([names.index(c) for c in t.class_names], np.int32)
            native = lut[t.labels]
            truth = labels_to_grid(native, fm.instances.shape)
            for k in range(len(names)):
                inter[k] += np.sum((fm.instances == k) & (truth == k))
                union[k] += np.sum((fm.instances == k) | (truth == k))
            true_frac = np.bincount(native.ravel(), minlength=len(names))[:len(names)] / native.size
            pred_frac = np.array([ph.area_fraction for ph in fm.summary.phases.phases])
            frac_err.append(100 * np.abs(pred_frac - true_frac))
    if backend.card.task == "particles":
        return {"object_f1": 2 * tp / max(npred + ntrue, 1), "precision": tp / max(npred, 1),
                "recall": tp / max(ntrue, 1), "d50_rel_error": float(np.mean(d50_err)) if d50_err else float("nan"),
                "predicted_f1_abs_error": float(np.mean(f1_err)) if f1_err else float("nan")}
    e = np.mean(frac_err, axis=0)
    present = union > 0
    return {"fraction_error_pp": float(e.max()), "miou": float((inter / np.maximum(union, 1))[present].mean())}


def worse(task: str, before: dict, after: dict) -> bool:
    if task == "particles":
        return after["object_f1"] < before["object_f1"] - 0.005
    return after["fraction_error_pp"] > before["fraction_error_pp"] + 0.5


def group_seed(group: str) -> int:
    """Each group's own seed: its frames do not depend on which other groups run, or in what order."""
    return SEED + sum(map(ord, group))


def stream_targets(task: str, group: str, stream: int, n: int, n_eval: int, size: int):
    """Stream ``stream`` of ``group``: one set of imaging parameters (as one microscope session keeps them), ``n``
    frames to adapt on and ``n_eval`` other frames of the same stream to score on; and the conditions in words."""
    from copilot.sim.domains import domain_params

    seed = group_seed(group) + 1000 * (stream + 1)
    params = domain_params(group, np.random.default_rng(seed), size, task)
    frames = targets(task, group, n + n_eval, size, seed + 1, params=params)
    return frames[:n], frames[n:], conditions(params)


def conditions(params) -> str:
    """The imaging parameters a stream's frames share, in words."""
    parts = [getattr(params, "modality", None) or getattr(params, "detector", None),
             f"{params.nm_per_px:.3g} nm/px", f"dose {params.dose:.3g}", f"blur {params.probe_blur_nm:.2f} nm"]
    return ", ".join(str(p) for p in parts if p)


def run_group(model: str, task: str, group: str, methods: list[str], n: int, size: int, steps: dict, log,
              render_pairs: int = 96, stream: int | None = None, n_eval: int = 0) -> dict:
    """Adapt to ``n`` frames of ``group`` and score parent and adapted models. ``stream``: the frames come from one
    stream (``stream_targets``) and are scored on ``n_eval`` other frames of it; else on the same frames."""
    from copilot.adapt.run import AdaptOptions, adapt_engine
    from copilot.inference.card import load_card
    from copilot.inference.ort_backend import OrtBackend

    label = group
    if stream is None:
        ts = evals = targets(task, group, n, size, group_seed(group))
        cond = "each frame its own"
    else:
        ts, evals, cond = stream_targets(task, group, stream, n, n_eval, size)
        label = f"{group}#{stream}"
    card, folder = load_card(model)
    before = score(OrtBackend(card, folder, threads=2), evals, group)
    log(f"{label} ({cond}): parent {card.version} " + _fmt(before))
    row = {"group": group, "stream": stream, "conditions": cond, "scored_on": "held-out frames of the stream"
           if stream is not None else "the adaptation frames", "parent_version": card.version, "before": before,
           "methods": {}}
    for method in methods:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            out = adapt_engine(model, as_frames(ts, group), Path(tmp) / "model", f"bench group {group}",
                               AdaptOptions(method=method, steps=steps.get(method), seed=0, promote=False,
                                            render_pairs=render_pairs),
                               command=f"bench.adaptation {group} {method}", log=lambda *_: None)
            took = time.perf_counter() - t0
            ncard, nfolder = load_card(out.folder)
            after = score(OrtBackend(ncard, nfolder, threads=2), evals, group)
        d = out.decision
        promote = d["promote"]
        row["methods"][method] = {"after": after, "promote": promote, "reasons": d["reasons"], "checks": d["checks"],
                                  "label_free": {"parent": d["parent"], "adapted": d["adapted"]},
                                  "info": d["info"], "seconds": round(took, 1),
                                  "bad_promotion": bool(promote and worse(task, before, after)),
                                  "effective": after if promote else before}
        log(f"{label}: {method} " + _fmt(after) + f" | {'PROMOTE' if promote else 'keep aside'} "
            f"{'; '.join(d['reasons'])} ({took:.0f} s)")
    return row


def stream_summary(task: str, rows: list[dict]) -> str:
    """Per group, the mean over its streams: parent, each method's adapted model, and what the gate leaves running
    (the adapted model where promoted, else the parent)."""
    key = HEADLINE[task]
    lines = [f"| group | streams | parent {key} | " + " | ".join(f"{m} adapted / after the gate" for m in
                                                                 rows[0]["methods"]) + " |",
             "|" + " --- |" * (3 + len(rows[0]["methods"]))]
    for g in dict.fromkeys(r["group"] for r in rows):
        rs = [r for r in rows if r["group"] == g]
        cells = []
        for m in rs[0]["methods"]:
            adapted = np.mean([r["methods"][m]["after"][key] for r in rs])
            kept = np.mean([r["methods"][m]["effective"][key] for r in rs])
            cells.append(f"{adapted:.3f} / {kept:.3f}")
        lines.append(f"| {g} | {len(rs)} | {np.mean([r['before'][key] for r in rs]):.3f} | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines)


def _fmt(m: dict) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in m.items())


def table(task: str, rows: list[dict]) -> str:
    key = HEADLINE[task]
    extra = ["d50_rel_error", "predicted_f1_abs_error"] if task == "particles" else ["miou"]
    lines = [f"| group | parent {key} | " + " | ".join(f"{m} {key} (promoted?)" for m in rows[0]["methods"])
             + " | " + " | ".join(f"{k} before → after (best)" for k in extra) + " |",
             "|" + " --- |" * (2 + len(rows[0]["methods"]) + len(extra))]
    for r in rows:
        cells = [f"{m['after'][key]:.3f} ({'yes' if m['promote'] else 'no'}{', BAD' if m['bad_promotion'] else ''})"
                 for m in r["methods"].values()]
        best = max(r["methods"].values(), key=lambda m: m["after"][key] * (1 if task == "particles" else -1))
        ex = [f"{r['before'][k]:.3f} → {best['after'][k]:.3f}" for k in extra]
        name = r["group"] if r.get("stream") is None else f"{r['group']} #{r['stream']} ({r['conditions']})"
        lines.append(f"| {name} | {r['before'][key]:.3f} | " + " | ".join(cells) + " | " + " | ".join(ex) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.adaptation.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["particles", "phases"], default="particles")
    ap.add_argument("--model", default=None, help="default: particles-stem / phases-sem")
    ap.add_argument("--groups", default=None, help="comma-separated (default: the shifted groups of the task)")
    ap.add_argument("--methods", default="selftrain,appearance")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps-selftrain", type=int, default=100)
    ap.add_argument("--steps-appearance", type=int, default=120)
    ap.add_argument("--render-pairs", type=int, default=80)
    ap.add_argument("--streams", type=int, default=0,
                    help="K > 0: per group, K streams that each keep one set of imaging parameters; adapt to "
                         "--frames of a stream, score on --eval-frames others of it")
    ap.add_argument("--eval-frames", type=int, default=8)
    ap.add_argument("--first-stream", type=int, default=0, help="streams --first-stream … + K - 1 (more of a group)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.streams and "othersim" in (a.groups or ""):
        ap.error("--streams: othersim frames each draw their own parameters; leave othersim out of --groups")
    from copilot.train.recipe import set_train_threads

    threads = set_train_threads()
    model = a.model or ("particles-stem" if a.task == "particles" else "phases-sem")
    default = ("dose,defocus,magnification,othersim,in-domain" if a.task == "particles"
               else "detector,dose,etching,defocus,magnification")
    groups = (a.groups or default).split(",")
    if a.streams:  # the default list's othersim has no stream of its own
        groups = [g for g in groups if g != "othersim"]
    out = a.json or HERE / f"{a.task}.json"
    steps = {"selftrain": a.steps_selftrain, "appearance": a.steps_appearance}
    t0 = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)  # noqa: E731
    rows = []
    meta = {"task": a.task, "model": model, "frames_per_group": a.frames, "size_px": a.size, "seed": SEED,
            "steps": steps, "render_pairs": a.render_pairs,
            "machine": platform.processor() or platform.machine(), "torch_threads": threads}
    if a.streams:
        meta.update(streams_per_group=a.streams, first_stream=a.first_stream, eval_frames_per_stream=a.eval_frames)
    streams = range(a.first_stream, a.first_stream + a.streams) if a.streams else [None]
    runs = [(g, k) for g in groups for k in streams]
    for g, k in runs:
        rows.append(run_group(model, a.task, g, a.methods.split(","), a.frames, a.size, steps, log, a.render_pairs,
                              stream=k, n_eval=a.eval_frames))
        bad = sum(m["bad_promotion"] for r in rows for m in r["methods"].values())
        out.write_text(json.dumps({**meta, "groups": rows, "bad_promotions": bad,
                                   "minutes": round((time.perf_counter() - t0) / 60, 1)}, indent=2) + "\n")
        md = table(a.task, rows) + f"\n\nbad promotions: {bad}\n"
        if a.streams:
            md += "\nMean over each group's streams:\n\n" + stream_summary(a.task, rows) + "\n"
        out.with_suffix(".md").write_text(md)
    log(f"done: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
