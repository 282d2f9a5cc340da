#!/usr/bin/env bash
# Quickstart on a CPU (README.md, "Quickstart"): a venv with the requirements, the synthetic people dataset,
# the training of a small PersonLab (config.QUICKSTART; how long it takes on which machine: docs/training.md),
# its keypoint AP on the synthetic validation images, then the demo on a few of them (pictures in
# demo_result/). Running it again reuses the venv and the data, and resumes (or skips) the training.
#   bash quickstart.sh            (PYTHON=python3.11 bash quickstart.sh to pick the interpreter)
#   STEPS=300 bash quickstart.sh  (a slower machine: fewer training steps, the same schedule, a lower AP)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
echo "== installing requirements.txt into .venv"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -r requirements.txt

# The times in docs/training.md were measured on machines of known matmul speed: compare this one's.
echo "== this $(python machine.py)   (docs/training.md gives the quickstart's times beside this figure)"

if [ ! -f synthetic/annotations/person_keypoints_val2017.json ]; then
  echo "== writing the synthetic dataset to synthetic/"
  python synthetic.py
fi

echo "== training (config.QUICKSTART; Ctrl-C saves a checkpoint, running this script again resumes)"
python train.py --preset quickstart ${STEPS:+--steps "$STEPS"}

echo "== keypoint AP on the synthetic validation images (at their own size, 193 px)"
python eval.py --checkpoint model/quickstart --annotations synthetic/annotations/person_keypoints_val2017.json \
  --images synthetic/val2017 --scales 193 --output model/quickstart/synthetic_val2017_results.json --quiet

echo "== demo on synthetic validation images"
python demo.py --preset quickstart

echo "== model/quickstart/ holds $(du -sh model/quickstart | cut -f1): checkpoints with Adam's slots, to resume;"
echo "   to keep or share only the averaged weights (a quarter of one checkpoint): docs/training.md, 'What the quickstart leaves on disk'"
