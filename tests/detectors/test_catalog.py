"""The built-in catalog (detectors/builtin.py): specs and metadata without torch, factories imported on first build,
stored parameter counts equal to the architectures', and every release date sourced."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from copybench.detectors import describe_detectors, detector_meta, get_spec, list_detectors
from copybench.detectors.builtin import BUILTINS
from copybench.detectors.meta import count_parameters
from copybench.detectors.registry import DetectorSpec, _Entry, get_entry, register_detector


def _run(code: str, env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_builtin_is_in_the_catalog_and_registered_from_it():
    builtins = {n for n in list_detectors() if get_entry(n).origin == "builtin"}
    assert builtins == set(BUILTINS)
    for name, item in BUILTINS.items():
        entry = get_entry(name)
        assert entry.spec is item.spec and entry.params == item.params, name
        # the module the catalog names registered a factory for exactly this spec
        assert entry.factory.copybench_spec == item.spec and entry.factory.__module__ == item.module, name


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_stored_parameter_count_is_the_architectures(name):
    # the stored number is what list detectors, tables and result files show: it must be the model's real count
    entry = get_entry(name)
    assert count_parameters(entry.factory) == entry.params, f"{name}: update params in detectors/builtin.py"
    assert detector_meta(name).params == entry.params


def test_factory_modules_load_only_when_a_detector_is_built():
    code = (
        "import sys, json\n"
        "import copybench.detectors as d\n"
        "mods = lambda: sorted(m for m in sys.modules if m.startswith('copybench.detectors.'))\n"
        "d.describe_detectors(); before = mods()\n"
        "d.create_detector('pixel_gray_8'); after = mods()\n"
        "print(json.dumps({'before': before, 'after': after, 'torch': 'torch' in sys.modules}))"
    )
    out = _run(code)
    factories = {f"copybench.detectors.{m}" for m in ("pixel", "sscd", "dino", "clip", "timm_models")}
    assert not factories & set(out["before"])
    assert factories & set(out["after"]) == {"copybench.detectors.pixel"} and out["torch"]


def test_a_catalog_entry_whose_module_registers_nothing_is_an_error():
    entry = _Entry(DetectorSpec(name="catalog_orphan", dims=4, input_size=8), None, "builtin", "json", 0)
    with pytest.raises(LookupError, match="catalog_orphan.*json registers no factory"):
        _ = entry.factory


def test_a_factory_with_another_spec_under_a_builtin_name_is_refused():
    other = DetectorSpec(name="pixel_gray_8", dims=64, input_size=32)
    with pytest.raises(ValueError, match="'pixel_gray_8' is already registered"):

        @register_detector(other)
        def factory(path):
            return None


def test_release_dates_are_sourced_and_listed():
    rows = {r["name"]: r for r in describe_detectors()}
    for name, item in BUILTINS.items():
        spec = item.spec
        assert bool(spec.release_date) == bool(spec.release_source), (
            name
        )  # a date always says where it is from
        if spec.release_date:
            assert re.fullmatch(r"(19|20)\d{2}-(0[1-9]|1[0-2])", spec.release_date), name
            assert spec.release_source.startswith("https://"), name
        meta = detector_meta(name)
        assert (meta.release_date, meta.release_source) == (spec.release_date, spec.release_source)
        assert (rows[name]["release_date"], rows[name]["release_source"]) == (
            spec.release_date,
            spec.release_source,
        )
        assert "release_source" not in spec.to_dict()  # metadata never enters the descriptor cache key
    assert get_spec("sscd_disc_mixup").release_source == "https://arxiv.org/abs/2202.10261"
    assert (
        get_spec("sscd_distilled.onnx").release_date == ""
    )  # its publisher gives no date: unknown, not guessed


@pytest.mark.parametrize("var", ["TORCH_HOME", "XDG_CACHE_HOME"])
def test_checkpoints_folder_found_without_torch_is_torch_hubs(tmp_path, var):
    code = (
        "import sys, json\n"
        "from copybench.detectors.fetch import checkpoints_dir\n"
        "before = str(checkpoints_dir()); assert 'torch' not in sys.modules\n"
        "import torch\n"
        "print(json.dumps({'before': before, 'torch': str(checkpoints_dir()), 'hub': torch.hub.get_dir()}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_HOME", "XDG_CACHE_HOME")}
    out = _run(code, {**env, var: str(tmp_path / var)})
    assert out["before"] == out["torch"] == os.path.join(out["hub"], "checkpoints")
    assert out["before"].startswith(str(tmp_path / var))


def test_docs_document_every_release_date_with_its_source():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "detectors.md").read_text(encoding="utf-8")
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    for name, item in BUILTINS.items():
        spec = item.spec
        if spec.release_date:  # the row giving this date names the very page the catalog reads it from
            assert any(f"| {spec.release_date} |" in r and f"({spec.release_source})" in r for r in rows), (
                name
            )


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("sscd_disc_mixp", "sscd_disc_mixup"),
        ("dino_vitb61", "dino_vitb16"),
        ("pixel_grey_16", "pixel_gray_16"),
    ],
)
def test_a_typo_suggests_the_obvious_match_first(typo, meant):
    from copybench.detectors import UnknownDetectorError, get_spec

    with pytest.raises(UnknownDetectorError) as err:
        get_spec(typo)
    close = str(err.value).split("close names: ")[1].split(" (")[0].split(", ")
    assert close[0] == meant and len(close) <= 5
