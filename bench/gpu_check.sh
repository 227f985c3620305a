#!/usr/bin/env bash
# One GPU check, under 8 minutes on a lent GPU machine (one NVIDIA GPU, torch-CUDA in its python3, nothing reachable):
# build and verify every backend that can be built there, run the `gpu` tests and `copilot bench` at 1024² and 2048²,
# and write the results to bench/results/gpu-check/ (and to $OUT when set, so they come back).
#
#   bench/gpu_check.sh --fetch-wheels   # HERE, before: the few pure-Python packages that machine lacks → .cache/gpu-wheels
#   bench/gpu_check.sh                  # THERE (carry .cache/gpu-wheels): every step timed out and reported, and a
#                                       # failed step never stops the next one
#
# Environment: GPU_CHECK_BUDGET_S (default 460: the whole run), GPU_CHECK_FRAMES (bench frames per size, default 20).
set -u
cd "$(dirname "$0")/.."
REPO=$PWD
WHEELS=$REPO/.cache/gpu-wheels
# what that machine's image lacks (device README / KINDS.md package list), for CPython 3.12 on x86-64
MISSING_PKGS=("pydantic==2.14.4" "pydantic-core==2.50.5" "annotated-types==0.8.0" "typing-inspection==0.4.5"
              "watchdog==7.1.0" "pyzmq==27.3.0" "typing-extensions==4.16.0")

if [[ "${1:-}" == "--fetch-wheels" ]]; then
  mkdir -p "$WHEELS"
  for pkg in "${MISSING_PKGS[@]}"; do
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform any -d "$WHEELS" "$pkg" || echo "could not fetch $pkg" >&2
  done
  ls -la "$WHEELS"
  exit 0
fi

BUDGET=${GPU_CHECK_BUDGET_S:-460}
FRAMES=${GPU_CHECK_FRAMES:-20}
RES=$REPO/bench/results/gpu-check
STATE=$(mktemp -d /tmp/copilot-gpu-state.XXXX)
mkdir -p "$RES"
LOG=$RES/log.txt
STEPS=$RES/steps.tsv
: >"$LOG"
printf 'step\tstatus\trc\tseconds\tnote\n' >"$STEPS"
START=$(date +%s)
PY=python3
export PYTHONUNBUFFERED=1

left() { echo $((BUDGET - ($(date +%s) - START))); }

# step NAME LIMIT_S COMMAND...: run with a timeout (never past the budget), log, record the outcome, go on
step() {
  local name=$1 limit=$2; shift 2
  local remain; remain=$(left)
  if ((remain < 15)); then
    printf '%s\tskipped\t-\t0\tout of time budget\n' "$name" >>"$STEPS"; return 0
  fi
  ((limit > remain - 5)) && limit=$((remain - 5))
  echo "=== $name (limit ${limit}s) $(date -u +%H:%M:%S) ===" >>"$LOG"
  local t0 rc status note="" out; t0=$(date +%s); out=$(mktemp)
  timeout --kill-after=10 "$limit" "$@" >"$out" 2>&1; rc=$?
  cat "$out" >>"$LOG"
  case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  [[ $status != ok ]] && note=$(grep -v '^\s*$' "$out" | tail -1 | tr '\t|' '  ' | cut -c1-160)
  rm -f "$out"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" $(($(date +%s) - t0)) "$note" >>"$STEPS"
  echo "--- $name: $status (rc $rc)" >>"$LOG"
  return 0
}
skip() { printf '%s\tskipped\t-\t0\t%s\n' "$1" "$2" >>"$STEPS"; }
has() { $PY -c "import $1" >/dev/null 2>&1; }

# 1. the machine
{
  nvidia-smi -L 2>&1 | head -1; date -u; uname -a; nvidia-smi 2>&1 | head -15
  $PY -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda,
          "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
  $PY -m pip list 2>/dev/null | grep -i -E '^(numpy|scipy|scikit-image|onnx|onnxruntime|onnxruntime-gpu|tensorrt|cuda-|torch |safetensors|pydantic|pyzmq|watchdog|pytest)' 
} >"$RES/env.txt" 2>&1

# 2. what the image lacks, from carried wheels (into a private folder: the image's packages stay as they are)
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  step install-wheels 90 $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/copilot-site "$WHEELS"/*.whl
  export PYTHONPATH=$REPO:/tmp/copilot-site
else
  skip install-wheels "no $WHEELS (run bench/gpu_check.sh --fetch-wheels here first)"
  export PYTHONPATH=$REPO
fi
step import 30 $PY -c "import copilot.daemon, copilot.inference.select, copilot.inference.trt_backend; print('ok')"

CLI=($PY -m copilot.cli)
step engines-list 60 "${CLI[@]}" engines list --model particles-stem --state-dir "$STATE"

# 3. build and verify what can be built here (each verified against ONNX Runtime on the CPU, every shape class)
step torch-weights 60 "${CLI[@]}" engines build --backend torch --model particles-stem --state-dir "$STATE"
for prec in fp16 fp32; do
  step "verify-torch-cuda-$prec" 90 "${CLI[@]}" engines verify --backend torch-cuda --precision $prec --tiles 4 \
    --model particles-stem --state-dir "$STATE"
done
if has tensorrt; then
  for prec in fp16 fp32; do
    step "build-tensorrt-$prec" 150 "${CLI[@]}" engines build --backend tensorrt --precision $prec \
      --model particles-stem --state-dir "$STATE"
  done
else
  skip build-tensorrt "tensorrt is not installed on this machine"
fi
if $PY -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null; then
  step verify-onnxruntime-cuda 90 "${CLI[@]}" engines verify --backend onnxruntime-cuda --tiles 4 \
    --model particles-stem --state-dir "$STATE"
else
  skip verify-onnxruntime-cuda "onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu not installed)"
fi

# 4. the gpu tests
step pytest-gpu 150 $PY -m pytest -q -m gpu -p no:cacheprovider --timeout 120 tests/inference \
  --junitxml="$RES/pytest-gpu.xml"

# 5. the benchmark at 1024² and 2048² with the backend `auto` picks (daemon vs backend alone)
step bench-auto 200 "${CLI[@]}" bench --sizes 1024,2048 --frames "$FRAMES" --backend auto --no-naive \
  --json "$RES/bench-auto.json" --workdir /tmp/copilot-gpu-bench

# 6. summary
$PY - "$RES" "$START" <<'EOF' >"$RES/summary.md" 2>>"$LOG"
import csv, json, sys, time
from pathlib import Path
res, start = Path(sys.argv[1]), float(sys.argv[2])
steps = list(csv.DictReader(open(res / "steps.tsv"), delimiter="\t"))
summary = {"finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "wall_s": round(time.time() - start),
           "steps": steps}
(res / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"# GPU check ({summary['finished_utc']}, {summary['wall_s']} s)\n")
print((res / "env.txt").read_text().split("\n")[0] if (res / "env.txt").exists() else "")
print("\n| step | status | rc | s | note |\n| --- | --- | --- | --- | --- |")
for s in steps:
    print(f"| {s['step']} | {s['status']} | {s['rc']} | {s['seconds']} | {s['note']} |")
bench = res / "bench-auto.md"
if bench.exists():
    print("\n## copilot bench (auto backend)\n\n" + bench.read_text())
EOF
cat "$RES/summary.md"
rm -rf "$STATE"
if [[ -n "${OUT:-}" && -d "${OUT:-}" ]]; then  # at most 8 files come back
  cp "$RES"/{summary.md,summary.json,steps.tsv,env.txt,log.txt} "$OUT"/ 2>/dev/null
  cp "$RES"/bench-auto.json "$RES"/bench-auto.md "$RES"/pytest-gpu.xml "$OUT"/ 2>/dev/null
fi
exit 0
