#!/usr/bin/env bash
# GPU throughput check for a lent H100/H200: one short script, about 3-4 minutes.
#
#   OUT=/path/to/returned/folder bash tests/benchmarks/gpu_check.sh
#
# Measures SSCD ResNet-50 (sscd_disc_mixup; falls back to resnet50.tv_in1k, then timm resnet50 @288), dino_vitb16
# and clip_vitb16.openai in bf16 on cuda, random weights, channels-last, batch 256, on 4096 synthetic 512x384
# JPEGs: model-only, end-to-end (Extractor path and GPU JPEG decode), retrieval against 100k references, and the
# reference pipeline for the SSCD row. Then runs the GPU-marked tests. Everything lands in $OUT: gpu_check.log,
# nvidia-smi.txt, results/ (result JSON files), table.md, summary.txt, pytest_gpu.log.
#
# CPU dry run of the same logic with tiny sizes (about 2 minutes on 2 cores):
#   DEVICE=cpu OUT=/tmp/gpu_check bash tests/benchmarks/gpu_check.sh
# Every size can be overridden: N_IMAGES, BATCH, N_REFS, REPEATS, MIN_TIME, DTYPE, DETECTORS (comma list).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
REPO="$(pwd)"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT/results"
OUT="$(cd "$OUT" && pwd)"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1

DEVICE="${DEVICE:-cuda}"
if [ "$DEVICE" = "cpu" ]; then
  N_IMAGES="${N_IMAGES:-16}"; BATCH="${BATCH:-8}"; N_REFS="${N_REFS:-5000}"; REPEATS="${REPEATS:-1}"
  MIN_TIME="${MIN_TIME:-0}"; STEP_TIMEOUT="${STEP_TIMEOUT:-240}"
else
  N_IMAGES="${N_IMAGES:-4096}"; BATCH="${BATCH:-256}"; N_REFS="${N_REFS:-100000}"; REPEATS="${REPEATS:-3}"
  MIN_TIME="${MIN_TIME:-2}"; STEP_TIMEOUT="${STEP_TIMEOUT:-150}"
fi
DTYPE="${DTYPE:-bf16}"
PY="${PY:-$REPO/.venv/bin/python}"  # on a lent GPU machine: PY=python3 with the wheels on PYTHONPATH
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
T0=$(date +%s)
stamp() { echo "=== [$(( $(date +%s) - T0 ))s] $*"; }

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
EOF

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

stamp "writing $N_IMAGES synthetic JPEGs"
"$PY" -c "from copybench.throughput import write_synthetic_jpegs as w; w('$WORK/images', $N_IMAGES)" || exit 1

FAILED=0
FIRST=1
IFS=',' read -r -a NAMES <<< "$DETECTORS"
for name in "${NAMES[@]}"; do
  stamp "throughput $name"
  REF=()
  [ "$FIRST" = 1 ] && REF=(--reference)  # the reference pipeline for the first (SSCD) row only: time budget
  FIRST=0
  timeout "$STEP_TIMEOUT" "$PY" -m copybench.cli throughput --detectors "$name" --device "$DEVICE" --dtype "$DTYPE" \
    --batch-size "$BATCH" --channels-last --allow-random --images "$WORK/images" --n-images "$N_IMAGES" \
    --n-references "$N_REFS" --repeats "$REPEATS" --min-time "$MIN_TIME" --results "$OUT/results" "${REF[@]}" \
    || { echo "FAILED: throughput $name (exit $?)"; FAILED=1; }
done

stamp "table and summary"
"$PY" -m copybench.cli table "$OUT/results" --format md --out "$OUT/table.md" && cat "$OUT/table.md"
"$PY" - "$OUT/results" <<'EOF' | tee "$OUT/summary.txt"
import sys
from copybench.results import load_results

results, errors = load_results(sys.argv[1])
for r in results:
    m = r["measurements"][0]
    f = lambda k: "-" if m.get(k) is None else f"{m[k]:,.2f}"
    print(f"{r['detector']['name']} [{r['detector']['weights']['status']}] on {r['environment']['device_name']} "
          f"{m['dtype']} b{m['batch_size']}: model {f('model_ips')} img/s, e2e {f('e2e_ips')} img/s "
          f"(decode {m['e2e_decode']}; workers path {f('e2e_workers_ips')}, device decode {f('e2e_device_ips')}), "
          f"e2e/model {f('e2e_over_model')}, retrieval {f('retrieval_qps')} q/s, "
          f"reference e2e {f('reference_e2e_ips')} img/s, speed-up e2e x{f('e2e_speedup_vs_reference')}, "
          f"retrieval x{f('retrieval_speedup_vs_reference')}, peak device MB {m['peak_device_mb']}, "
          f"peak host MB {m['peak_host_mb']}" + (f", device decode error: {m['e2e_device_error']}" if m.get("e2e_device_error") else ""))
for e in errors:
    print("unreadable:", e)
EOF

stamp "GPU-marked tests"
timeout "$STEP_TIMEOUT" "$PY" -m pytest tests/test_gpu.py tests/test_throughput.py -m gpu -q -p no:cacheprovider -rs 2>&1 | tee "$OUT/pytest_gpu.log"
[ "${PIPESTATUS[0]}" = 0 ] || [ "${PIPESTATUS[0]}" = 5 ] || FAILED=1  # 5: no tests collected

stamp "done (failed=$FAILED); files in $OUT"
exit "$FAILED"
