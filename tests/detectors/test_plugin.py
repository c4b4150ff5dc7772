"""Plugins: the example package in tests/plugin_example, installed offline into a temp folder, is discovered
through the ``copybench.detectors`` entry-point group; ad hoc ``module:factory`` names work too.

The package is installed with pip into a temp ``--target`` (never into the shared venv) and exercised in a child
interpreter whose PYTHONPATH holds it, so importlib.metadata finds its entry point as it would for a real install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).parents[1] / "plugin_example"

CHECK = """
import json
from copybench.detectors import check_detector_contract, describe_detectors, get_spec, list_detectors
names = list_detectors()
report = check_detector_contract("edge_hist_128")
adhoc = get_spec("copybench_plugin_example:edge_hist_128").name
row = [r for r in describe_detectors("edge_*")][0]
print(json.dumps({"listed": "edge_hist_128" in names, "builtin": "sscd_disc_mixup" in names,
                  "shape": report.output_shape, "adhoc": adhoc, "origin": row["origin"], "weights": row["weights"]}))
"""


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src") / "plugin_example"
    shutil.copytree(PLUGIN, src)  # pip builds in the source tree: keep build/ and egg-info out of the repo
    target = tmp_path_factory.mktemp("site")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--target",
        str(target),
        str(src),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"pip could not install the example plugin offline:\n{result.stderr[-2000:]}")
    return target


def test_entry_point_plugin_is_listed_and_runs(plugin_site):
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(plugin_site), os.environ.get("PYTHONPATH")]))
    )
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found == {
        "listed": True,
        "builtin": True,
        "shape": [2, 128],
        "adhoc": "edge_hist_128",
        "origin": "plugin copybench_plugin_example",
        "weights": "none",
    }


def test_plugin_absent_without_install():
    from copybench.detectors import list_detectors

    assert "edge_hist_128" not in list_detectors()


AD_HOC = """
from copybench.detectors import DetectorSpec, register_detector
from . import helper

@register_detector(DetectorSpec(name="cwd_probe_8", dims=8, input_size=16))
def cwd_probe_8(path):
    return helper.VALUE
"""


def test_module_factory_is_found_in_the_working_folder_without_touching_sys_path(tmp_path, monkeypatch):
    from copybench.detectors.registry import get_entry, unregister_detector

    pkg = tmp_path / "cwd_probe_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(AD_HOC)
    (pkg / "helper.py").write_text("VALUE = 'made here'\n")  # a relative import inside the package works
    monkeypatch.chdir(tmp_path)
    path_before = list(sys.path)
    try:
        entry = get_entry("cwd_probe_pkg:cwd_probe_8")
        assert entry.spec.name == "cwd_probe_8" and entry.factory(None) == "made here"
        assert entry.origin == "ad hoc cwd_probe_pkg"
        assert sys.path == path_before
    finally:
        unregister_detector("cwd_probe_8")
        for mod in ("cwd_probe_pkg", "cwd_probe_pkg.helper"):
            sys.modules.pop(mod, None)


def test_module_factory_missing_names_the_working_folder(tmp_path, monkeypatch):
    from copybench.detectors.registry import UnknownDetectorError, get_entry

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownDetectorError) as err:
        get_entry("no_such_pkg_here:factory")
    message = str(err.value)
    assert "No module named 'no_such_pkg_here'" in message
    assert "working folder" in message and str(tmp_path) in message
