"""Scaling-out benchmark: the triton backend against a local V2 server, two daemons on one server, analyze --dask.

    python bench/scaleout/run.py [--frames 6] [--archive 12] [--out bench/scaleout]

Writes results.json and results.md beside this file (or in --out). Numbers only, never asserted; the load average
at start and end says how busy the machine was.

1. remote vs local: 1024² frames (simulated HAADF, already at the card's working scale 0.5 nm/px, so the network
   sees 1024²) segmented by ONNX Runtime CPU here and by the ``triton`` backend (gRPC) against MLServer +
   adapters/mlserver_onnx on 127.0.0.1; mask equality in % of pixels, per-frame latency p50 of both, the difference.
2. two daemons, one server: each "daemon" is a thread with its own TritonBackend segmenting frames back to back;
   aggregate frames/s for one and for two daemons (best of two interleaved tries each), on a model with adaptive (dynamic) batching (max batch 8,
   10 ms window) and on the same model without (max batch 1).
3. archive on Dask: ``copilot analyze`` over the same files locally, with ``--dask local:1`` and ``--dask local:2``
   (one thread per worker, ONNX Runtime with 1 thread); steady throughput (n − 1) / (last − first result),
   scaling efficiency = thr(2) / (2 · thr(1)), and whether the exports are identical (timings aside).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from copilot.inference.card import load_card  # noqa: E402
from copilot.inference.mlserver_launch import MLServer  # noqa: E402
from copilot.inference.ort_backend import OrtBackend  # noqa: E402
from copilot.inference.triton_backend import TritonBackend  # noqa: E402
from copilot.inference.triton_repo import export_model, mlserver_settings, triton_version  # noqa: E402
from copilot.inference.triton_settings import TritonSettings  # noqa: E402

MODEL = "particles-stem"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def sim_files(folder: Path, n: int, size: int, seed: int) -> list[Path]:
    from copilot.sim.microscope import run_microscope

    return run_microscope(folder, n_frames=n, interval_s=0.01, time_scale=6000, size_px=size, nm_per_px=0.5, seed=seed)


def make_repo(root: Path, threads: int) -> None:
    export_model(root, MODEL, mlserver=True, threads=threads)
    card, _ = load_card(MODEL)
    v = triton_version(card.version)
    for name, batch, window in ((f"{MODEL}-batch8", 8, 0.01), (f"{MODEL}-nobatch", 1, 0.0)):
        shutil.copytree(root / MODEL, root / name)
        s = mlserver_settings(card, name=name, version=v, threads=threads, max_batch=batch, max_batch_time_s=window)
        (root / name / "model-settings.json").write_text(json.dumps(s))


def remote_vs_local(srv: MLServer, frames, threads: int) -> dict:
    card, folder = load_card(MODEL)
    local = OrtBackend(card, folder, threads=threads, max_whole_px=2048)
    remote = TritonBackend(card, folder, TritonSettings(url=srv.grpc_url), max_whole_px=2048)
    local.segment(frames[0]), remote.segment(frames[0])  # warm-up
    t_local, t_remote, t_server, equal, dprob = [], [], [], [], 0.0
    for f in frames:
        t0 = time.perf_counter()
        a = local.segment(f)
        t1 = time.perf_counter()
        b = remote.segment(f)
        t2 = time.perf_counter()
        t_local.append((t1 - t0) * 1e3)
        t_remote.append((t2 - t1) * 1e3)
        t_server.append(remote.last_server_compute_ms or float("nan"))
        equal.append(float((a.labels == b.labels).mean()))
        dprob = max(dprob, float(np.abs(a.probabilities - b.probabilities).max()))
    p50l, p50r = statistics.median(t_local), statistics.median(t_remote)
    return {"frames": len(frames), "grid_px": list(local.prepare(frames[0])[0].shape),
            "mask_equal_pct_min": round(100 * min(equal), 4), "mask_equal_pct_mean": round(100 * np.mean(equal), 4),
            "max_abs_prob_diff": dprob, "local_p50_ms": round(p50l, 1), "remote_p50_ms": round(p50r, 1),
            "added_p50_ms": round(p50r - p50l, 1), "server_compute_p50_ms": round(statistics.median(t_server), 1),
            "protocol_overhead_p50_ms": round(statistics.median(np.subtract(t_remote, t_server)), 1),
            "local_ms": [round(x, 1) for x in t_local],
            "remote_ms": [round(x, 1) for x in t_remote]}


def transport_floor(shape=(1, 1, 1024, 1024), n_classes: int = 3, emb: int = 64, repeats: int = 5) -> dict:
    """What the protocol itself costs per 1024² frame on loopback, with no server work: tritonclient (gRPC) to a
    minimal V2 ``ModelInfer`` that answers zero tensors as raw bytes at once (what Triton adds beyond the
    network's compute is about this plus a copy; MLServer adds its Python list codec on top)."""
    from concurrent import futures

    import grpc
    import tritonclient.grpc as tc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    n, _, h, w = shape
    probs = np.zeros((n, n_classes, h, w), np.float32).tobytes()
    embedding = np.zeros((n, emb), np.float32).tobytes()

    class Echo(service_pb2_grpc.GRPCInferenceServiceServicer):
        def ModelInfer(self, request, context):
            r = service_pb2.ModelInferResponse(model_name=request.model_name, model_version="1")
            for name, dims in (("probabilities", [n, n_classes, h, w]), ("embedding", [n, emb])):
                out = r.outputs.add()
                out.name, out.datatype = name, "FP32"
                out.shape.extend(dims)
            r.raw_output_contents.extend([probs, embedding])
            return r

    opts = [("grpc.max_send_message_length", 1 << 30), ("grpc.max_receive_message_length", 1 << 30)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=opts)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        client = tc.InferenceServerClient(f"127.0.0.1:{port}")
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            inp = tc.InferInput("image", list(shape), "FP32")
            inp.set_data_from_numpy(x)
            r = client.infer("m", [inp], outputs=[tc.InferRequestedOutput("probabilities"),
                                                  tc.InferRequestedOutput("embedding")])
            r.as_numpy("probabilities"), r.as_numpy("embedding")
            times.append((time.perf_counter() - t0) * 1e3)
        client.close()
    finally:
        server.stop(0)
    return {"request_MiB": round(x.nbytes / 2**20, 2), "answer_MiB": round((len(probs) + len(embedding)) / 2**20, 2),
            "p50_ms": round(statistics.median(times[1:]), 1), "ms": [round(t, 1) for t in times[1:]]}


def daemons(srv: MLServer, frames, model: str, n_daemons: int, per_daemon: int) -> dict:
    card, folder = load_card(MODEL)
    backends = [TritonBackend(card, folder, TritonSettings(url=srv.grpc_url, model_name=model, verify=False),
                              max_whole_px=2048) for _ in range(n_daemons)]
    for e in backends:
        e.segment(frames[0])
        e.batched_with_others = e.largest_server_batch = 0
    start = threading.Barrier(n_daemons + 1)
    done = []

    def daemon(e: TritonBackend) -> None:
        start.wait()
        for i in range(per_daemon):
            e.segment(frames[i % len(frames)])
        done.append(time.perf_counter())

    threads = [threading.Thread(target=daemon, args=(e,)) for e in backends]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = max(done) - t0
    return {"daemons": n_daemons, "frames": n_daemons * per_daemon, "seconds": round(wall, 2),
            "frames_per_s": round(n_daemons * per_daemon / wall, 3),
            "requests_batched_with_another_daemon": sum(e.batched_with_others for e in backends),
            "largest_server_batch": max(e.largest_server_batch for e in backends)}


def _worker_cpu_s() -> float:
    import psutil

    t = psutil.Process().cpu_times()
    return t.user + t.system


def dask_scaling(files_dir: Path, work: Path, rounds: int) -> dict:
    """Local pipeline once, then local:1 and local:2 interleaved ``rounds`` times (the machine's load drifts).

    Each Dask run gets its own LocalCluster (one thread per worker) handed to ``run_files`` by address; the workers'
    CPU seconds per frame say whether a slower wall clock comes from the design or from CPU the machine did not
    have to give."""
    from distributed import Client, LocalCluster

    from copilot.analyze import _run_local, collect_files
    from copilot.config import load_settings
    from copilot.distributed import run_files
    from copilot.exports import ResultWriter
    from copilot.inference.network import for_batch
    from copilot.inference.select import load_backend

    settings = load_settings(None, {"model": {"name": MODEL, "backend": "onnxruntime", "threads": 1}})
    files = collect_files([files_dir], settings.source.include)
    ref = None
    runs = []
    for i, mode in enumerate(["local"] + ["local:1", "local:2"] * rounds):
        out = work / f"{i}-{mode.replace(':', '-')}"
        writer = ResultWriter(out)
        stamps: list[float] = []
        sink = [writer, lambda r: stamps.append(time.perf_counter())]
        load0 = os.getloadavg()[0]
        cpu = None
        t0 = time.perf_counter()
        if mode == "local":
            st = _run_local(for_batch(load_backend(MODEL, "onnxruntime", 1)), files, settings, sink)
        else:
            n = int(mode.split(":")[1])
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                              host="127.0.0.1") as cluster, Client(cluster.scheduler_address) as c:
                before = c.run(_worker_cpu_s)
                st = run_files(files, settings, sink, cluster.scheduler_address)
                after = c.run(_worker_cpu_s)
                cpu = sum(after[w] - before.get(w, 0.0) for w in after)
        wall = time.perf_counter() - t0
        writer.close()
        steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else None
        row = {"mode": mode, "files": len(files), "processed": st.processed, "wall_s": round(wall, 2),
               "steady_frames_per_s": round(steady, 3) if steady else None, "load_at_start": round(load0, 2),
               "worker_cpu_s_per_frame": round(cpu / len(files), 3) if cpu else None}
        got = comparable(out)
        if ref is None:
            ref = got
        else:
            row["identical_to_local"] = got == ref
        runs.append(row)
        print(json.dumps(row), flush=True)
    best = {m: max(r["steady_frames_per_s"] for r in runs if r["mode"] == m) for m in ("local:1", "local:2")}
    cpu = {m: statistics.median(r["worker_cpu_s_per_frame"] for r in runs if r["mode"] == m)
           for m in ("local:1", "local:2")}
    return {"runs": runs, "best_steady_frames_per_s": best,
            "scaling_efficiency": round(best["local:2"] / (2 * best["local:1"]), 3),
            "worker_cpu_s_per_frame_median": cpu,
            "cpu_bound_efficiency": round(cpu["local:1"] / cpu["local:2"], 3)}


def comparable(out: Path) -> dict:
    import csv

    docs = []
    for line in (out / "results.jsonl").read_text().splitlines():
        d = json.loads(line)
        d.pop("timings_ms"), d.pop("processed_at")
        docs.append(d)
    # every *_ms column is a timing (end_to_end_ms, queue_wait_ms)
    frames = [{k: v for k, v in r.items() if not k.endswith("_ms")} for r in csv.DictReader(open(out / "frames.csv"))]
    return {"docs": docs, "frames": frames, "particles": (out / "particles.csv").read_text()}


def write_md(res: dict, path: Path) -> None:
    r, d, k = res["remote_vs_local"], res["two_daemons"], res["dask"]
    lines = [
        "# Scaling out — results", "",
        f"Machine: {res['machine']}; load average at start {res['load_start']}, at end {res['load_end']} "
        f"(shared with other jobs: read the absolute numbers with that in mind).", "",
        "## Remote backend (triton, gRPC) vs local ONNX Runtime CPU, 1024² working grid", "",
        f"Load average when this part started: {res.get('remote_load_start', res['load_start'])}.", "",
        "| measure | value |", "| --- | --- |",
        f"| frames | {r['frames']} (grid {r['grid_px'][0]}×{r['grid_px'][1]} px) |",
        f"| mask equal to local, worst frame | {r['mask_equal_pct_min']} % of pixels |",
        f"| max abs probability difference | {r['max_abs_prob_diff']:.2e} |",
        f"| local p50 | {r['local_p50_ms']} ms/frame |",
        f"| remote p50 (MLServer on 127.0.0.1) | {r['remote_p50_ms']} ms/frame |",
        f"| added by the remote path | {r['added_p50_ms']} ms/frame |",
        f"| of the remote p50: the network on the server (session.run) | {r['server_compute_p50_ms']} ms |",
        f"| of the remote p50: protocol + server overhead (remote − server compute) | "
        f"{r['protocol_overhead_p50_ms']} ms |",
        f"| the protocol alone (tritonclient + gRPC on loopback to a V2 stub that answers at once; "
        f"{res['transport_floor']['request_MiB']} MiB in, {res['transport_floor']['answer_MiB']} MiB out) | "
        f"{res['transport_floor']['p50_ms']} ms |", "",
        "## Two daemons on one server (frames of 1024², segment only)", "",
        "| server model | daemons | frames/s (aggregate) | vs one daemon | requests batched across daemons | "
        "largest server batch |", "| --- | --- | --- | --- | --- | --- |"]
    for model, rows in d.items():
        one = rows[0]["frames_per_s"]
        for row in rows:
            lines.append(f"| {model} | {row['daemons']} | {row['frames_per_s']} | {row['frames_per_s'] / one:.2f}× | "
                         f"{row['requests_batched_with_another_daemon']} | {row['largest_server_batch']} |")
    lines += ["", "## `copilot analyze --dask` (one thread per worker, ONNX Runtime 1 thread, 1024² frames)", "",
              "| run | files | steady frames/s | wall incl. start (s) | worker CPU s/frame | worker cores in use | "
              "load at start | exports identical to local |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in k["runs"]:
        cpu, fps = row["worker_cpu_s_per_frame"], row["steady_frames_per_s"]
        cores = f"{cpu * fps:.2f}" if cpu and fps else "–"
        lines.append(f"| {row['mode']} | {row['files']} | {fps} | {row['wall_s']} | {cpu or '–'} | {cores} | "
                     f"{row['load_at_start']} | {row.get('identical_to_local', '(reference)')} |")
    lines += ["", f"Scaling efficiency, best local:2 vs best local:1 (wall clock): **{k['scaling_efficiency']}** "
              "(target ≥ 0.8).",
              f"Worker CPU seconds per frame, median: local:1 {k['worker_cpu_s_per_frame_median']['local:1']:.3f}, "
              f"local:2 {k['worker_cpu_s_per_frame_median']['local:2']:.3f} (CPU-bound efficiency "
              f"{k['cpu_bound_efficiency']}: what two workers sharing the cores cost each other per frame). A "
              "wall-clock efficiency below that is CPU the machine did not give: *worker cores in use* (CPU s/frame × "
              f"frames/s) is how much of the {os.cpu_count()} cores the workers actually got.", ""]
    path.write_text("\n".join(lines))


def regenerate(out: Path) -> None:
    """Rewrite results.md from results.json (after adding a part measured separately)."""
    write_md(json.loads((out / "results.json").read_text()), out / "results.md")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=6, help="1024² frames for parts 1 and 2")
    ap.add_argument("--per-daemon", type=int, default=6, help="frames each daemon segments in part 2")
    ap.add_argument("--archive", type=int, default=12, help="files for the Dask part")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads, local backend and server")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--rounds", type=int, default=2, help="local:1 / local:2 pairs in the Dask part")
    ap.add_argument("--parts", default="remote,dask", help="remote (parts 1 and 2, one server) and/or dask; a part "
                    "left out keeps its numbers from an earlier results.json in --out")
    args = ap.parse_args(argv)
    from copilot.readers import read_frame

    parts = set(args.parts.split(","))
    earlier = args.out / "results.json"
    res = json.loads(earlier.read_text()) if earlier.is_file() and parts != {"remote", "dask"} else {}
    res.update(machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
               load_start=load())
    with tempfile.TemporaryDirectory(prefix="scaleout-") as tmp:
        tmp = Path(tmp)
        if "remote" in parts:
            res["remote_load_start"] = load()
            paths = sim_files(tmp / "frames", args.frames, 1024, seed=11)
            frames = [read_frame(p, stream="bench") for p in paths]
            make_repo(tmp / "repo", args.threads)
            srv = MLServer(tmp / "repo").start()
            try:
                res["transport_floor"] = transport_floor()
                print(json.dumps(res["transport_floor"]), flush=True)
                res["remote_vs_local"] = remote_vs_local(srv, frames, args.threads)
                print(json.dumps(res["remote_vs_local"]), flush=True)
                res["two_daemons"] = {}
                for model in (f"{MODEL}-batch8", f"{MODEL}-nobatch"):
                    rows = [daemons(srv, frames, model, n, args.per_daemon) for n in (1, 2, 1, 2)]  # load drifts
                    res["two_daemons"][model] = [max((r for r in rows if r["daemons"] == n),
                                                     key=lambda r: r["frames_per_s"]) for n in (1, 2)]
                    print(model, json.dumps(res["two_daemons"][model]), flush=True)
            finally:
                srv.stop()
        if "dask" in parts:
            sim_files(tmp / "archive", args.archive, 1024, seed=5)
            res["dask"] = dask_scaling(tmp / "archive", tmp / "dask", args.rounds)
    res["load_end"] = load()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    if {"dask", "remote_vs_local"} <= set(res):
        write_md(res, args.out / "results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
