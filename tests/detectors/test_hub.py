"""Hub names offline: tiny random-weight models saved in a locally built Hugging Face cache
(``models--ORG--NAME/refs/main`` + ``snapshots/REV/``), loaded through ``timm:``, ``open_clip:``, ``hf-hub:`` and
``hf:`` names with HF_HUB_OFFLINE=1 and every socket connection refused; each adapter's descriptors equal the
library's own model + transform called directly (1e-5 abs and cosine), extracted by copybench's Extractor from
real photo files (JPEG and PNG, landscape, portrait, a large JPEG and an upscaled crop: no resize is the identity),
both on the harness's batch path and on the library route (what the batch path cannot reproduce runs the
library's transform). Also: release month and licence from the library's config or the model card, never guessed.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from copybench.detectors import (
    DetectorSpec,
    UnknownDetectorError,
    WeightsMissingError,
    create_detector,
    get_spec,
)
from copybench.detectors.fetch import WeightsHashError, fetch_weights

REV = "0123456789abcdef0123456789abcdef01234567"
TIMM = "test_vit.r160_in1k"
ATOL = 1e-5


def snapshot_dir(cache: Path, repo: str) -> Path:
    """An empty snapshot folder in the hub cache layout, with refs/main naming it."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(REV)
    snap = root / "snapshots" / REV
    snap.mkdir(parents=True, exist_ok=True)
    return snap


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Real photos of several sizes and aspects, as JPEG and PNG files (made here, never committed): downscales
    (landscape, portrait, a large square JPEG) and an upscale (a small crop), so no resize is the identity."""
    import skimage.data

    folder = tmp_path_factory.mktemp("photos")
    coffee = skimage.data.coffee()  # 600 x 400
    arrays = {
        "chelsea.jpg": skimage.data.chelsea(),  # 451 x 300
        "rocket.jpg": skimage.data.rocket(),  # 427 x 640, portrait
        "coffee_crop.png": coffee[120:161, 200:253],  # 53 x 41: upscaled by every model
        "astronaut_big.jpg": np.asarray(
            Image.fromarray(skimage.data.astronaut()).resize((1100, 1024), Image.Resampling.BICUBIC)
        ),
    }
    paths = []
    for name, arr in arrays.items():
        paths.append(folder / name)
        Image.fromarray(arr).save(paths[-1], quality=92)
    return paths


def harness(name: str, paths: list[Path]) -> torch.Tensor:
    """Raw global descriptors as ``copybench run`` computes them: the Extractor decodes the files, preprocesses
    them from the spec and runs the detector (raw: before the harness's L2 normalisation)."""
    from copybench.extract import Extractor

    det = create_detector(name)
    out = Extractor(det, num_workers=0, progress=False, raw=True, decode="workers").run(
        [str(p) for p in paths]
    )
    assert not out.failed, out.failed
    return torch.from_numpy(np.asarray(out.vectors))


def direct(model, transform, paths: list[Path]) -> torch.Tensor:
    """The library's own transform on the file as the library's docs open it (Pillow, RGB)."""
    with torch.no_grad():
        outs = [model(transform(Image.open(p).convert("RGB")).unsqueeze(0)) for p in paths]
    return torch.cat([o[:, 0] if o.ndim == 3 else o for o in outs])  # tokens: CLS, the global descriptor


def assert_same(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal within 1e-5 absolute, and their cosine within 1e-5 of 1."""
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    cos = torch.nn.functional.cosine_similarity(got, expected, dim=-1)
    assert float((1 - cos).abs().max()) <= ATOL, cos


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A private HF cache, offline mode, and no internet socket may connect anywhere."""
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))  # for the libraries' direct calls
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("COPYBENCH_WEIGHTS_LOCK", str(tmp_path / "weights.lock.json"))

    connect = socket.socket.connect

    def refuse(sock, address):  # internet sockets only: local worker pipes still work
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"network access to {address} in an offline test")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return cache


# ------------------------------------------------------------------------------------------------ timm
@pytest.fixture
def timm_repo(hub_cache):
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model(TIMM, pretrained=False)
    snap = snapshot_dir(hub_cache, f"timm/{TIMM}")
    save_for_hf(model, snap, safe_serialization=True)
    return snap


def timm_direct(snap: Path, paths: list[Path]) -> torch.Tensor:
    import timm
    from timm.data import create_transform, resolve_data_config

    overlay = {"file": str(snap / "model.safetensors")}
    model = timm.create_model(TIMM, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=0).eval()
    return direct(model, create_transform(**resolve_data_config(model=model)), paths)


def test_timm_name_matches_timm_with_its_own_transform(timm_repo, photos):
    from timm.data import resolve_data_config

    det = create_detector(f"timm:{TIMM}")
    assert det.weights.status == "real" and det.weights.source.endswith("model.safetensors")
    data = resolve_data_config(model=det.model)  # the spec carries timm's own eval config
    spec = det.spec
    assert (spec.input_size, spec.crop_pct, spec.interpolation) == (
        data["input_size"][1],
        data["crop_pct"],
        data["interpolation"],
    )
    assert spec.mean == tuple(data["mean"]) and spec.std == tuple(data["std"]) and spec.resize == "short_crop"
    assert_same(harness(f"timm:{TIMM}", photos), timm_direct(timm_repo, photos))


def test_hf_hub_name_through_timm(timm_repo, photos):
    name = f"hf-hub:timm/{TIMM}"
    det = create_detector(name)
    assert det.weights.status == "real" and det.weights.source == f"{name}@{REV}"
    assert_same(harness(name, photos), timm_direct(timm_repo, photos))


def test_hub_names_are_not_plugins_and_missing_ones_name_the_fetch_command(hub_cache):
    with pytest.raises(WeightsMissingError, match="copybench weights fetch hf-hub:nobody/absent"):
        get_spec("hf-hub:nobody/absent")
    with pytest.raises(WeightsMissingError, match=f"copybench weights fetch timm:{TIMM}"):
        create_detector(f"timm:{TIMM}")  # timm knows the model, but its weights are not cached
    assert create_detector(f"timm:{TIMM}", allow_random=True).weights.status == "random"
    with pytest.raises(UnknownDetectorError, match="timm has no model"):
        get_spec("timm:no_such_net")
    outcome = fetch_weights([f"timm:{TIMM}"], progress=False)[0]  # offline: fails, names what is missing
    assert outcome.status == "failed" and "No module named" not in outcome.message


def test_hub_weights_are_pinned_and_a_tampered_file_is_refused(timm_repo):
    from copybench.detectors.fetch import list_weights, read_lock

    (outcome,) = fetch_weights([f"hf-hub:timm/{TIMM}"], progress=False)
    assert outcome.status == "present" and len(outcome.sha256) == 64, outcome.message
    pinned = read_lock()[f"hf-hub:timm/{TIMM}/model.safetensors"]  # pip-style: the lock pins the hub's file
    assert (pinned["sha256"], pinned["revision"]) == (outcome.sha256, REV)
    assert list_weights(f"hf-hub:timm/{TIMM}")[0].check.startswith("pinned")
    create_detector(f"hf-hub:timm/{TIMM}")  # the pinned file passes
    weights = timm_repo / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsHashError, match="refusing"):
        create_detector(f"hf-hub:timm/{TIMM}")


# ------------------------------------------------------------------------------------------------ open_clip
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}
PREPROCESS = {
    "mean": [0.4, 0.5, 0.6],
    "std": [0.2, 0.25, 0.3],
    "interpolation": "bilinear",
    "resize_mode": "shortest",
}


@pytest.fixture
def clip_repo(hub_cache, tmp_path, monkeypatch):
    import open_clip
    from open_clip import pretrained
    from safetensors.torch import save_file

    configs = tmp_path / "open_clip_configs"
    configs.mkdir()
    (configs / "copybench-tiny-vit.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(configs)
    torch.manual_seed(0)
    model = open_clip.create_model("copybench-tiny-vit")
    snap = snapshot_dir(hub_cache, "copybench-test/tiny-clip")
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, snap / "open_clip_model.safetensors"
    )
    cfg = {"model_cfg": TINY_CLIP, "preprocess_cfg": PREPROCESS}
    (snap / "open_clip_config.json").write_text(json.dumps(cfg))
    tag = {"hf_hub": "copybench-test/tiny-clip/", "quick_gelu": False, **PREPROCESS}
    monkeypatch.setitem(pretrained._PRETRAINED, "copybench-tiny-vit", {"tiny": tag})  # a published tag
    return snap


def clip_direct(paths: list[Path], *args, **kwargs) -> torch.Tensor:
    import open_clip

    model, _, transform = open_clip.create_model_and_transforms(*args, **kwargs)
    return direct(model.eval().encode_image, transform, paths)


def test_hf_hub_name_through_open_clip(clip_repo, photos):
    name = "hf-hub:copybench-test/tiny-clip"
    spec = get_spec(name)
    assert spec.dims == 32 and spec.input_size == 64 and spec.interpolation == "bilinear"
    assert spec.mean == tuple(PREPROCESS["mean"]) and spec.std == tuple(PREPROCESS["std"])
    assert_same(harness(name, photos), clip_direct(photos, f"local-dir:{clip_repo}"))


def test_open_clip_name_matches_open_clip_with_its_own_transform(clip_repo, photos):
    name = "open_clip:copybench-tiny-vit/tiny"
    assert create_detector(name).weights.status == "real"
    assert_same(harness(name, photos), clip_direct(photos, "copybench-tiny-vit", pretrained="tiny"))
    with pytest.raises(UnknownDetectorError, match="tags: tiny"):
        get_spec("open_clip:copybench-tiny-vit/absent")


# ------------------------------------------------------------------------------------------------ transformers
@pytest.fixture
def dinov2_repo(hub_cache):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=56,
        patch_size=14,
    )
    snap = snapshot_dir(hub_cache, "copybench-test/tiny-dinov2")
    Dinov2Model(cfg).save_pretrained(snap)
    BitImageProcessor(
        size={"shortest_edge": 64},
        crop_size={"height": 56, "width": 56},
        resample=3,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(snap)
    return snap


def test_hf_transformers_tokens_match_the_processor_and_model(dinov2_repo, photos):
    from transformers import AutoImageProcessor, AutoModel

    from copybench.extract import Extractor

    name = "hf:copybench-test/tiny-dinov2"
    spec = get_spec(name)
    assert (spec.output, spec.dims, spec.input_size, spec.resize_size) == ("tokens", 32, 56, 64)
    det = create_detector(name)
    assert det.weights.status == "real" and det.weights.source == f"{name}@{REV}"
    model = AutoModel.from_pretrained(dinov2_repo).eval()
    proc = AutoImageProcessor.from_pretrained(dinov2_repo)
    with torch.no_grad():
        expected = torch.cat(
            [
                model(**proc(images=Image.open(p).convert("RGB"), return_tensors="pt")).last_hidden_state
                for p in photos
            ]
        )
    assert_same(harness(name, photos), expected[:, 0])  # CLS: the global descriptor
    out = Extractor(det, num_workers=0, progress=False, decode="workers").run(
        [str(p) for p in photos], tokens=True
    )
    assert out.tokens.shape == (4, 1 + 16, 32)  # CLS first, then the 4x4 patch tokens (stored as float16)
    torch.testing.assert_close(
        torch.from_numpy(np.asarray(out.tokens, dtype=np.float32)), expected, atol=2e-3, rtol=2e-3
    )
    # a random-init twin needs no weights file, and says so
    (dinov2_repo / "model.safetensors").unlink()
    with pytest.raises(WeightsMissingError):
        create_detector(name)
    assert create_detector(name, allow_random=True).weights.status == "random"


def test_cli_run_with_an_uncached_hub_name_says_how_to_fetch_it(hub_cache, tiny_dataset, tmp_path, capsys):
    from copybench.cli import main

    name = "hf-hub:timm/not_cached_here"
    argv = ["--quiet", "run", "--dataset", str(tiny_dataset), "--detectors", f"pixel_gray_8,{name}"]
    assert main([*argv, "--results", str(tmp_path / "r"), "--no-cache", "--n-boot", "10"]) == 2
    err = capsys.readouterr().err
    assert "No module named" not in err and f"copybench weights fetch {name}" in err
    assert err.count("copybench weights fetch") == 1, err  # the hint once, not per line and again below
    assert "WeightsMissingError" not in err  # a user-facing message, not an exception class
    assert any((tmp_path / "r").rglob("pixel_gray_8*.json")), err  # the other detector's result is kept


def test_cli_run_with_several_uncached_names_gives_one_fetch_command(
    hub_cache, tiny_dataset, tmp_path, capsys
):
    from copybench.cli import main

    names = "hf-hub:timm/not_cached_a,hf:org/not_cached_b"
    argv = ["--quiet", "run", "--dataset", str(tiny_dataset), "--detectors", names, "--no-cache"]
    assert main([*argv, "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "WeightsMissingError" not in err
    assert "copybench weights fetch hf-hub:timm/not_cached_a hf:org/not_cached_b" in err
    assert err.count("copybench weights fetch") == 1, err


def test_weights_list_shows_a_cached_hub_model(timm_repo, capsys):
    from copybench.cli import main
    from copybench.io import file_sha256

    assert main(["weights", "list", f"hf-hub:timm/{TIMM}"]) == 0
    out = capsys.readouterr().out
    digest = file_sha256(timm_repo / "model.safetensors")
    assert "model.safetensors" in out and digest[:16] in out
    assert main(["list", "detectors", f"hf-hub:timm/{TIMM}"]) == 0  # a hub name lists that one model
    out = capsys.readouterr().out
    assert f"hf-hub:timm/{TIMM}" in out and "real" in out and "revision" in out and "unknown" in out
    create_detector(f"hf-hub:timm/{TIMM}")  # loading pins the file: the listed hash is then its sha256
    assert main(["list", "detectors", f"hf-hub:timm/{TIMM}"]) == 0
    assert digest[:12] in capsys.readouterr().out


def test_the_batch_path_refuses_what_it_cannot_reproduce():
    from transformers import ViTImageProcessor

    from copybench.detectors.hub import spec_fields
    from copybench.detectors.hub_transformers import processor_fields

    fields = processor_fields(ViTImageProcessor())  # 224 x 224 squash, bilinear, mean = std = 0.5
    assert (fields["resize"], fields["input_size"], fields["interpolation"]) == ("square", 224, "bilinear")
    assert fields["mean"] == (0.5, 0.5, 0.5) and fields["crop_offset"] == "floor"
    with pytest.raises(ValueError, match="1/255"):
        processor_fields(ViTImageProcessor(do_rescale=False))
    with pytest.raises(ValueError, match="resample"):
        processor_fields(ViTImageProcessor(resample=1))  # Lanczos
    base = {"crop_pct": 0.9, "interpolation": "bicubic", "mean": (0, 0, 0), "std": (1, 1, 1)}
    with pytest.raises(ValueError, match="border"):
        spec_fields({**base, "size": 224, "mode": "border"})  # timm's letterbox crop mode
    with pytest.raises(ValueError, match="squash"):
        spec_fields({**base, "size": 224, "mode": "squash"})  # squash with crop_pct < 1
    with pytest.raises(ValueError, match="non-square"):
        spec_fields({**base, "size": (224, 192), "mode": "center"})


# ------------------------------------------------------------------------------------------------ release dates
def test_release_month_from_timm_paper_ids_else_unknown(hub_cache):
    spec = get_spec("timm:resnet50.a1_in1k")  # timm cites arXiv:2110.00476 for these weights
    assert (spec.release_date, spec.release_source) == ("2021-10", "https://arxiv.org/abs/2110.00476")
    assert get_spec(f"timm:{TIMM}").release_date == ""  # no paper id and no cached card: unknown, not guessed
    assert get_spec("open_clip:ViT-B-32/openai").release_date == ""  # open_clip publishes no dates


def test_release_month_from_the_cached_model_card(timm_repo, dinov2_repo):
    from copybench.detectors.meta import detector_meta

    (timm_repo / "README.md").write_text(
        "---\nlicense: apache-2.0\n---\nPaper: https://arxiv.org/abs/2304.07193\n"
    )
    assert get_spec(f"hf-hub:timm/{TIMM}").release_date == "2023-04"
    card = "---\nlicense: cc-by-nc-4.0\nrelease_date: 2023-08-31\n---\nSee arXiv:2010.11929.\n"
    (dinov2_repo / "README.md").write_text(card)
    meta = detector_meta("hf:copybench-test/tiny-dinov2")
    assert meta.release_date == "2023-08" and meta.license == "cc-by-nc-4.0"  # the card's own fields win
    (dinov2_repo / "README.md").write_text("Cites arXiv:2010.11929 and https://arxiv.org/abs/2304.07193.\n")
    assert get_spec("hf:copybench-test/tiny-dinov2").release_date == ""  # two papers: which one is not said


# ------------------------------------------------------------------------------------------------ library route
def timm_border(hub_cache: Path) -> tuple[str, Path]:
    """A cached timm repository whose eval transform letterboxes: no batch policy reproduces it."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(0)
    overlay = {"crop_mode": "border", "crop_pct": 0.9}
    model = timm.create_model(TIMM, pretrained=False, pretrained_cfg_overlay=overlay)
    snap = snapshot_dir(hub_cache, "copybench-test/timm-border")
    save_for_hf(model, snap, safe_serialization=True)
    return "hf-hub:copybench-test/timm-border", snap


def clip_longest(monkeypatch) -> str:
    """The tiny open_clip tag with resize_mode longest (resize + pad): open_clip's transform only."""
    from open_clip import pretrained

    tag = {"hf_hub": "copybench-test/tiny-clip/", **PREPROCESS, "resize_mode": "longest"}
    monkeypatch.setitem(pretrained._PRETRAINED, "copybench-tiny-vit", {"tiny": tag})
    return "open_clip:copybench-tiny-vit/tiny"


def dinov2_to_unit_range(dinov2_repo: Path) -> str:
    """The tiny DINOv2 repository with a processor mapping pixels to [-1, 1]: the processor only."""
    from transformers import BitImageProcessor

    BitImageProcessor(  # rescaled by 1/127.5, offset by the mean
        size={"shortest_edge": 64},
        crop_size={"height": 56, "width": 56},
        rescale_factor=1 / 127.5,
        image_mean=[1.0, 1.0, 1.0],
        image_std=[1.0, 1.0, 1.0],
    ).save_pretrained(dinov2_repo)
    return "hf:copybench-test/tiny-dinov2"


def test_timm_border_crop_runs_through_timms_own_transform(hub_cache, photos):
    import timm
    from timm.data import create_transform, resolve_data_config

    name, snap = timm_border(hub_cache)
    assert get_spec(name).family == "timm-transform"
    direct_model = timm.create_model(f"local-dir:{snap}", pretrained=True, num_classes=0).eval()
    assert resolve_data_config(model=direct_model)["crop_mode"] == "border"
    transform = create_transform(**resolve_data_config(model=direct_model))
    assert_same(harness(name, photos), direct(direct_model, transform, photos))


def test_open_clip_longest_resize_runs_through_open_clips_own_transform(clip_repo, photos, monkeypatch):
    name = clip_longest(monkeypatch)
    assert get_spec(name).family == "open_clip-transform"
    assert_same(harness(name, photos), clip_direct(photos, "copybench-tiny-vit", pretrained="tiny"))


def test_hf_processor_the_batch_path_cannot_reproduce_runs_the_processor(dinov2_repo, photos):
    from transformers import AutoImageProcessor, AutoModel

    name = dinov2_to_unit_range(dinov2_repo)
    assert get_spec(name).family == "transformers-transform"
    model = AutoModel.from_pretrained(dinov2_repo).eval()
    proc = AutoImageProcessor.from_pretrained(dinov2_repo)
    with torch.no_grad():
        expected = [
            model(**proc(images=Image.open(p).convert("RGB"), return_tensors="pt")).last_hidden_state[:, 0]
            for p in photos
        ]
    assert_same(harness(name, photos), torch.cat(expected))


def test_a_processor_the_field_mapping_gets_wrong_is_caught_by_the_probe(photos):
    """LeViT resizes the short side to 256/224 of ``shortest_edge``: read as fields, its preprocessing would
    have been a plain resize + crop, 2.3 off after normalisation; the probe sends it through the processor."""
    from transformers import LevitImageProcessor

    from copybench.detectors.hub import reproduces
    from copybench.detectors.hub_transformers import (
        ProcessorCall,
        processor_fields,
        transformers_preprocessing,
    )
    from copybench.preprocess import Preprocess, pil_to_tensor

    proc = LevitImageProcessor()
    assert "differs" in reproduces(processor_fields(proc), ProcessorCall(proc))  # what the old mapping gave
    spec = DetectorSpec(name="levit-probe", dims=8, **transformers_preprocessing("levit-probe", proc))
    assert spec.family == "transformers-transform"
    img = Image.open(photos[0]).convert("RGB")
    got = Preprocess(spec)(pil_to_tensor(img))
    torch.testing.assert_close(got, ProcessorCall(proc)(img), atol=0, rtol=0)


def key_with_library(name: str, monkeypatch, version: str | None = None) -> tuple[str, str]:
    """(spec.library, descriptor cache key) of a hub detector, its library's version replaced when given."""
    from copybench.cache import cache_key
    from copybench.detectors import hub_prep  # where preprocessing() looks library_version up

    real = hub_prep.library_version
    fake = (lambda library: f"{library} {version}") if version else real
    monkeypatch.setattr(hub_prep, "library_version", fake)
    det = create_detector(name)
    monkeypatch.setattr(hub_prep, "library_version", real)
    return det.spec.library, cache_key(det, [], dtype="float32", tokens=False)


@pytest.mark.parametrize("library", ["timm", "open_clip", "transformers"])
def test_a_hub_models_cache_key_holds_its_librarys_version(library, request, hub_cache, monkeypatch):
    """On the library route the library's transform makes the pixels (and, on either path, its code builds the
    model): another installed version is another cache key, never the old descriptors; built-ins keep theirs."""
    import importlib

    if library == "timm":
        name = timm_border(hub_cache)[0]
    elif library == "open_clip":
        request.getfixturevalue("clip_repo")
        name = clip_longest(monkeypatch)
    else:
        name = dinov2_to_unit_range(request.getfixturevalue("dinov2_repo"))
    assert get_spec(name).family == f"{library}-transform"
    installed = f"{library} {importlib.import_module(library).__version__}"
    spec_library, key = key_with_library(name, monkeypatch)
    assert spec_library == installed
    assert key_with_library(name, monkeypatch) == (installed, key)  # same version: same key
    other = key_with_library(name, monkeypatch, "0.0.1")
    assert other[0] == f"{library} 0.0.1" and other[1] != key


def test_the_batch_path_keys_the_library_that_builds_the_model_and_builtins_name_none(timm_repo, monkeypatch):
    name = f"timm:{TIMM}"
    assert get_spec(name).family == "timm"  # the batch path: the harness makes the pixels, timm the model
    assert key_with_library(name, monkeypatch)[1] == key_with_library(name, monkeypatch)[1]
    assert key_with_library(name, monkeypatch, "0.0.1")[1] != key_with_library(name, monkeypatch)[1]
    builtin = create_detector("pixel_gray_8")
    assert builtin.spec.library == "" and "library" not in builtin.spec.to_dict()  # built-in keys unchanged


def test_hub_models_decode_with_pillow_even_where_auto_would_pick_the_gpu(timm_repo, monkeypatch):
    """On CUDA, ``--decode auto`` means the GPU's JPEG decoder; a hub model stays on Pillow (its library's)."""
    from copybench import extract

    monkeypatch.setattr(extract, "resolve_decode", lambda decode, device: "device")  # as on a GPU machine
    hub_model = extract.Extractor(create_detector(f"timm:{TIMM}"), num_workers=0, progress=False)
    assert hub_model.decode == "workers" and hub_model.preprocess.min_decode_side is None
    builtin = extract.Extractor(create_detector("pixel_gray_8"), num_workers=0, progress=False)
    assert builtin.decode == "device"
    explicit = extract.Extractor(
        create_detector(f"timm:{TIMM}"), num_workers=0, progress=False, decode="device"
    )
    assert explicit.decode == "device"  # asked for by name: obeyed


def test_sharded_hub_weights_pin_every_shard(dinov2_repo):
    from transformers import AutoModel

    from copybench.detectors.fetch import read_lock

    AutoModel.from_pretrained(dinov2_repo).save_pretrained(dinov2_repo, max_shard_size="60KB")
    (dinov2_repo / "model.safetensors").unlink(missing_ok=True)
    shards = sorted(p.name for p in dinov2_repo.glob("model-*.safetensors"))
    assert len(shards) > 1 and (dinov2_repo / "model.safetensors.index.json").is_file()
    name = "hf:copybench-test/tiny-dinov2"
    assert create_detector(name).weights.status == "real"
    pinned = {key.rsplit("/", 1)[1] for key in read_lock() if key.startswith(name)}
    assert pinned == {*shards, "model.safetensors.index.json"}
    with open(dinov2_repo / shards[-1], "r+b") as f:  # one byte of the last shard's tensor data
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(WeightsHashError, match=shards[-1]):
        create_detector(name)
