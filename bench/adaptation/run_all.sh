#!/bin/sh
# The whole adaptation bench, one job for the training lock, most important groups first (each part writes its
# JSON + markdown as it goes, so a run stopped early keeps what it measured):
#   (flock /work/runs/train.lock nice -n 2 sh bench/adaptation/run_all.sh > bench/adaptation/run_all.log 2>&1 &)
set -e
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD"
PY="${PYTHON:-.venv/bin/python}"
B="bench/adaptation"
N="${FRAMES:-8}"
S="--steps-selftrain 80 --steps-appearance 100 --render-pairs 64"
date -u
"$PY" -m bench.adaptation.run --task particles --frames "$N" $S --groups dose,defocus,magnification --json $B/particles.json
date -u
"$PY" -m bench.adaptation.timing --json $B/timing.json
date -u
"$PY" -m bench.adaptation.run --task phases --frames "$N" $S --groups detector,dose --json $B/phases.json
date -u
"$PY" -m bench.adaptation.run --task particles --frames "$N" $S --groups othersim,in-domain --json $B/particles-more.json
date -u
"$PY" -m bench.adaptation.run --task phases --frames "$N" $S --groups etching,defocus,magnification --json $B/phases-more.json
date -u
