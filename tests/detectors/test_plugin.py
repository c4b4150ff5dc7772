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
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
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


LIST_LIGHT = """
import json, sys
from copybench.cli import main
from copybench.detectors import describe_detectors
row = describe_detectors("edge_*")[0]
code = main(["list", "detectors", "edge_*"])
light = "torch" not in sys.modules
from copybench.detectors import create_detector
det = create_detector("edge_hist_128")
print(json.dumps({"light": light, "code": code, "params": row["params"], "origin": row["origin"],
                  "weights": row["weights"], "built": det.weights.status}))
"""


def test_listing_a_plugin_reads_its_spec_without_importing_its_framework(plugin_site):
    """The entry point names a torch-free spec module; the model module loads only when the detector is built."""
    env = dict(os.environ, PYTHONPATH=str(plugin_site))
    out = subprocess.run(
        [sys.executable, "-c", LIST_LIGHT], capture_output=True, text=True, env=env, check=True
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found == {
        "light": True,
        "code": 0,
        "params": 0,
        "origin": "plugin copybench_plugin_example",
        "weights": "none",
        "built": "none",
    }


FOREIGN = {
    "foreign_plugin/__init__.py": "import pathlib, os\npathlib.Path(os.environ['MARK']).write_text('imported')\n",
    "foreign_plugin-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: foreign-plugin\nVersion: 1.0\n",
    "foreign_plugin-1.0.dist-info/entry_points.txt": "[copybench.detectors]\nforeign = foreign_plugin\n",
}


@pytest.mark.parametrize("isolated", [True, False])
def test_plugins_installed_by_the_user_do_not_load_in_tests(isolated, tmp_path):
    """A distribution other than the suite's own is never imported while COPYBENCH_PLUGINS is set (conftest
    sets it for the whole session); unset, it loads as for any user (so the test can fail)."""
    site = tmp_path / "site"
    for rel, text in FOREIGN.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    env = dict(os.environ, PYTHONPATH=str(site), MARK=str(tmp_path / "mark"))
    assert env["COPYBENCH_PLUGINS"] == "copybench-plugin-example"
    if not isolated:
        del env["COPYBENCH_PLUGINS"]
    code = "from copybench.detectors import list_detectors; list_detectors()"
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert (tmp_path / "mark").exists() is not isolated


def test_a_declared_plugin_is_built_through_its_named_factory(tmp_path, monkeypatch):
    from copybench.detectors import DetectorSpec, declare_detector
    from copybench.detectors.registry import get_entry, unregister_detector

    (tmp_path / "declared_probe_mod.py").write_text("def make(path):\n    return ('built', path)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = DetectorSpec(name="declared_probe_4", dims=4, input_size=8)
    try:
        declare_detector(spec, factory="declared_probe_mod:make")
        declare_detector(spec, factory="declared_probe_mod:make")  # the same again: fine
        assert "declared_probe_mod" not in sys.modules
        assert get_entry("declared_probe_4").factory(None) == ("built", None)
        with pytest.raises(ValueError, match="already registered"):
            declare_detector(spec, factory="declared_probe_mod:other")
        with pytest.raises(ValueError, match="module:function"):
            declare_detector(DetectorSpec(name="declared_bad", dims=4, input_size=8), factory="no_colon")
    finally:
        unregister_detector("declared_probe_4")
        sys.modules.pop("declared_probe_mod", None)
