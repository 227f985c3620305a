#!/bin/sh
# The whole adaptation bench, one job for the training lock (logs beside the results):
#   (flock /work/runs/train.lock nice -n 2 sh bench/adaptation/run_all.sh > bench/adaptation/run_all.log 2>&1 &)
set -e
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD"
PY="${PYTHON:-.venv/bin/python}"
FRAMES="${FRAMES:-12}"
date -u
"$PY" -m bench.adaptation.run --task particles --frames "$FRAMES" ${PARTICLE_GROUPS:+--groups "$PARTICLE_GROUPS"}
date -u
"$PY" -m bench.adaptation.run --task phases --frames "$FRAMES" ${PHASE_GROUPS:+--groups "$PHASE_GROUPS"}
date -u
"$PY" -m bench.adaptation.timing
date -u
