"""Each loader reads a file fabricated in its official format, through the real code path, from a local file.

The files hold random weights in the official layout (TorchScript for SSCD, DINO's state-dict key names, MoCo v3's
training checkpoint, OpenAI's / open_clip's CLIP checkpoints, torchvision's and timm's state dicts); each test
checks the detector reproduces the module that wrote the file.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from copybench.detectors import WeightsMissingError, create_detector, find_weights, get_spec, weights_status
from copybench.detectors.load import read_state_dict


def _same(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> None:
    assert a.shape == b.shape
    assert (a - b).abs().max().item() < atol, (a - b).abs().max().item()


def _batch(size: int, n: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --- SSCD: TorchScript -------------------------------------------------------------------------------------------


def _scripted_sscd(tmp_path: Path, trunk: str, dims: int, file_name: str) -> tuple[torch.nn.Module, Path]:
    from copybench.detectors.sscd import SSCDNet

    torch.manual_seed(0)
    source = SSCDNet(trunk, dims).eval()
    path = tmp_path / file_name
    torch.jit.save(torch.jit.script(source), str(path))
    return source, path


def test_sscd_torchscript_from_weights_file(tmp_path):
    source, path = _scripted_sscd(tmp_path, "resnet50", 512, "sscd_disc_mixup.torchscript.pt")
    det = create_detector("sscd_disc_mixup", weights_file=path)
    assert det.weights.status == "real" and det.weights.source == str(path) and len(det.weights.sha256) == 64
    assert isinstance(det.model, torch.jit.ScriptModule)
    x = _batch(96, 2)
    with torch.no_grad():
        out = det(x)
        _same(out, source(x))
    assert out.shape == (2, get_spec("sscd_disc_mixup").dims)
    _same(out.norm(dim=1), torch.ones(2))  # SSCD's L2 norm is part of the model


def test_sscd_torchscript_from_weights_dir(tmp_path, monkeypatch):
    """The official file name in $COPYBENCH_WEIGHTS_DIR is found without any flag; provenance says real."""
    source, _ = _scripted_sscd(tmp_path, "resnet50", 512, "sscd_imagenet_mixup.torchscript.pt")
    monkeypatch.setenv("COPYBENCH_WEIGHTS_DIR", str(tmp_path))
    assert weights_status("sscd_imagenet_mixup") == "real"
    det = create_detector("sscd_imagenet_mixup")
    x = _batch(64)
    with torch.no_grad():
        _same(det(x), source(x))


@pytest.mark.slow
def test_sscd_large_torchscript(tmp_path):
    source, path = _scripted_sscd(tmp_path, "resnext101_32x4d", 1024, "sscd_disc_large.torchscript.pt")
    det = create_detector("sscd_disc_large", weights_file=path)
    x = _batch(96)
    with torch.no_grad():
        _same(det(x), source(x))


def test_sscd_rejects_a_non_torchscript_file(tmp_path):
    bad = tmp_path / "sscd_disc_mixup.torchscript.pt"
    torch.save({"w": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a TorchScript file"):
        create_detector("sscd_disc_mixup", weights_file=bad)


# --- weights resolution and safety --------------------------------------------------------------------------------


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # a plain pickle.load would create the marker file
        return (open, (str(self.marker), "w"))


def test_state_dict_loading_runs_no_pickled_code(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    torch.save({"weight": _Payload(marker)}, path)
    with pytest.raises(ValueError, match="not a loadable weights file"):
        read_state_dict(path)
    with pytest.raises(ValueError, match="not a loadable weights file"):
        create_detector("resnet50.tv_in1k", weights_file=path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps({"weight": _Payload(marker)}))  # legacy, non-zip pickle
    with pytest.raises(ValueError, match="not a loadable weights file"):
        read_state_dict(path)
    assert not marker.exists()


def test_missing_weights_message_and_random_provenance(tmp_path, monkeypatch):
    monkeypatch.delenv("COPYBENCH_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    assert weights_status("dino_vits16") == "missing"
    with pytest.raises(WeightsMissingError) as err:
        create_detector("dino_vits16")
    msg = str(err.value)
    assert "dino_vits16" in msg and "dino_deitsmall16_pretrain.pth" in msg and "--allow-random" in msg
    det = create_detector("dino_vits16", allow_random=True)
    assert det.weights.status == "random" and det.weights.sha256 is None
    with pytest.raises(WeightsMissingError, match="not found"):
        create_detector("dino_vits16", weights_file=tmp_path / "nope.pth")


def test_weights_dir_ignores_files_of_longer_names(tmp_path, monkeypatch):
    """``sscd_disc_mixup.onnx_int8.onnx`` belongs to ``sscd_disc_mixup.onnx_int8``, not to ``sscd_disc_mixup``."""
    (tmp_path / "sscd_disc_mixup.onnx_int8.onnx").write_bytes(b"x")
    monkeypatch.setenv("COPYBENCH_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    assert find_weights(get_spec("sscd_disc_mixup")) is None
    assert find_weights(get_spec("sscd_disc_mixup.onnx_int8")) == tmp_path / "sscd_disc_mixup.onnx_int8.onnx"


def test_hub_cache_is_found(tmp_path, monkeypatch):
    monkeypatch.delenv("COPYBENCH_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert find_weights(get_spec("resnet50.tv_in1k")) == cached


# --- DINO: an independent ViT with DINO's published key names ------------------------------------------------------


class RefBlock(torch.nn.Module):
    """Pre-norm transformer block written from the DINO paper's description (timm-style names)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = torch.nn.LayerNorm(dim, eps=1e-6)
        self.attn = torch.nn.Module()
        self.attn.qkv = torch.nn.Linear(dim, 3 * dim)
        self.attn.proj = torch.nn.Linear(dim, dim)
        self.norm2 = torch.nn.LayerNorm(dim, eps=1e-6)
        self.mlp = torch.nn.Module()
        self.mlp.fc1 = torch.nn.Linear(dim, 4 * dim)
        self.mlp.fc2 = torch.nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (
            self.attn.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        )
        weights = (q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)).softmax(dim=-1)
        x = x + self.attn.proj((weights @ v).transpose(1, 2).reshape(b, n, d))
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class RefViT(torch.nn.Module):
    """A plain ViT whose state dict has exactly the keys of DINO's ``*_pretrain.pth`` files."""

    def __init__(self, patch: int, dim: int, depth: int, heads: int, img: int = 224):
        super().__init__()
        self.patch = patch
        self.patch_embed = torch.nn.Module()
        self.patch_embed.proj = torch.nn.Conv2d(3, dim, patch, patch)
        self.cls_token = torch.nn.Parameter(0.02 * torch.randn(1, 1, dim))
        self.pos_embed = torch.nn.Parameter(0.02 * torch.randn(1, 1 + (img // patch) ** 2, dim))
        self.blocks = torch.nn.ModuleList(RefBlock(dim, heads) for _ in range(depth))
        self.norm = torch.nn.LayerNorm(dim, eps=1e-6)

    def pos(self, h: int, w: int) -> torch.Tensor:
        """DINO's interpolate_pos_encoding, restated: bicubic with scale (grid + 0.1) / old grid."""
        n = self.pos_embed.shape[1] - 1
        old = int(math.sqrt(n))
        if (h, w) == (old, old):
            return self.pos_embed
        grid = self.pos_embed[:, 1:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=((h + 0.1) / old, (w + 0.1) / old), mode="bicubic")
        return torch.cat([self.pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos(h, w)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


DINO_KEYS_VITS = {
    "cls_token",
    "pos_embed",
    "patch_embed.proj.weight",
    "patch_embed.proj.bias",
    "norm.weight",
    "norm.bias",
    "blocks.11.attn.qkv.weight",
    "blocks.0.mlp.fc2.bias",
    "blocks.3.norm1.weight",
}


@pytest.fixture(scope="module")
def dino_vits16_file(tmp_path_factory) -> tuple[RefViT, Path]:
    torch.manual_seed(1)
    ref = RefViT(patch=16, dim=384, depth=12, heads=6).eval()
    path = tmp_path_factory.mktemp("dino") / "dino_deitsmall16_pretrain.pth"
    torch.save(ref.state_dict(), path)
    return ref, path


def test_dino_vit_tokens_from_official_keys(dino_vits16_file):
    ref, path = dino_vits16_file
    state = torch.load(path, weights_only=True)
    assert DINO_KEYS_VITS <= set(state) and len(state) == 4 + 12 * 12 + 2
    det = create_detector("dino_vits16", weights_file=path)
    x = _batch(224)
    with torch.no_grad():
        tokens = det(x)
        _same(tokens, ref(x), atol=1e-4)
    assert tokens.shape == (1, 197, 384)  # CLS first, after the final norm: the split product uses them all


def test_dino_cls_gem_at_320(dino_vits16_file):
    """DINO's copy-detection descriptor: CLS + GeM(p=4) of patch tokens, pos_embed resampled as DINO does."""
    ref, path = dino_vits16_file
    det = create_detector("dino_vits16.cls_gem", weights_file=path)
    x = _batch(320)
    with torch.no_grad():
        tokens = ref(x)
        gem = tokens[:, 1:].clamp(min=1e-6).pow(4).mean(dim=1).pow(0.25)
        _same(det(x), torch.cat([tokens[:, 0], gem], dim=1), atol=1e-4)


def test_dino_resnet50_from_official_layout(tmp_path):
    from torchvision.models import resnet50

    torch.manual_seed(2)
    source = resnet50().eval()
    source.fc = torch.nn.Identity()
    path = tmp_path / "dino_resnet50_pretrain.pth"
    torch.save(source.state_dict(), path)  # DINO publishes the trunk without fc
    det = create_detector("dino_resnet50", weights_file=path)
    x = _batch(128)
    with torch.no_grad():
        _same(det(x), source(x))


def test_dinov2_from_official_layout(tmp_path):
    """DINOv2's file: 518 px pos_embed (37x37), ls1/ls2.gamma, an unused mask_token; resampled with its formula."""
    import timm

    torch.manual_seed(3)
    source = timm.create_model("vit_base_patch14_dinov2", pretrained=False, num_classes=0, img_size=518)
    state = dict(source.state_dict(), mask_token=torch.zeros(1, 768))
    assert state["pos_embed"].shape == (1, 1 + 37 * 37, 768) and "blocks.0.ls1.gamma" in state
    path = tmp_path / "dinov2_vitb14_pretrain.pth"
    torch.save(state, path)
    det = create_detector("dinov2_vitb14", weights_file=path)
    vit = det.model.vit
    grid = state["pos_embed"][:, 1:].reshape(1, 37, 37, 768).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=(16.1 / 37, 16.1 / 37), mode="bicubic")
    expect = torch.cat([state["pos_embed"][:, :1], grid.permute(0, 2, 3, 1).reshape(1, 256, 768)], dim=1)
    _same(vit.pos_embed.detach(), expect)
    for key, value in vit.state_dict().items():
        if key != "pos_embed":
            assert torch.equal(value, state[key]), key
    with torch.no_grad():
        assert det(_batch(224)).shape == (1, 257, 768)


def test_mocov3_from_training_checkpoint(tmp_path):
    import timm

    torch.manual_seed(4)
    source = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0).eval()
    state = {f"module.base_encoder.{k}": v for k, v in source.state_dict().items()}
    state["module.base_encoder.head.0.weight"] = torch.zeros(4096, 768)  # the projector, not the backbone
    state["module.momentum_encoder.cls_token"] = torch.zeros(1, 1, 768)
    state["module.predictor.0.weight"] = torch.zeros(4096, 256)
    ckpt = {
        "epoch": 300,
        "arch": "vit_base",
        "state_dict": state,
        "optimizer": {"state": {}, "param_groups": []},
    }
    path = tmp_path / "vit-b-300ep.pth.tar"
    torch.save(ckpt, path)
    det = create_detector("mocov3_vitb16", weights_file=path)
    x = _batch(224)
    with torch.no_grad():
        _same(det(x), source.forward_features(x))


# --- CLIP: open_clip and OpenAI checkpoints ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_b16():
    import open_clip

    torch.manual_seed(5)
    model = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True).eval()
    return model


def test_clip_from_open_clip_state_dict(clip_b16, tmp_path):
    from open_clip.transformer import QuickGELU

    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(clip_b16.state_dict(), path)  # the full model: text tower keys are ignored
    det = create_detector("clip_vitb16.openai", weights_file=path)
    assert isinstance(det.model.transformer.resblocks[0].mlp.gelu, QuickGELU)  # as OpenAI trained it
    x = _batch(224, 2)
    with torch.no_grad():
        _same(det(x), clip_b16.encode_image(x), atol=1e-4)


def test_clip_from_safetensors_and_openai_torchscript(clip_b16, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in clip_b16.state_dict().items()}, str(path))
    x = _batch(224)
    with torch.no_grad():
        want = clip_b16.encode_image(x)
        _same(create_detector("clip_vitb16.openai", weights_file=path)(x), want, atol=1e-4)

    class Holder(torch.nn.Module):  # OpenAI's ViT-B-16.pt is a TorchScript archive of the whole CLIP model
        def __init__(self, visual):
            super().__init__()
            self.visual = visual

        def forward(self, image):
            return self.visual(image)

    jit_path = tmp_path / "ViT-B-16.pt"
    torch.jit.save(torch.jit.trace(Holder(clip_b16.visual), x, check_trace=False), str(jit_path))
    with torch.no_grad():
        _same(create_detector("clip_vitb16.openai", weights_file=jit_path)(x), want, atol=1e-4)


@pytest.mark.slow
def test_clip_vitl14_from_open_clip_state_dict(tmp_path):
    import open_clip

    model = open_clip.create_model("ViT-L-14", pretrained=None, force_quick_gelu=True).eval()
    path = tmp_path / "ViT-L-14.bin"
    torch.save(model.state_dict(), path)
    x = _batch(224)
    with torch.no_grad():
        _same(create_detector("clip_vitl14.openai", weights_file=path)(x), model.encode_image(x), atol=1e-4)


# --- supervised: torchvision and timm state dicts ------------------------------------------------------------------


def test_resnet50_from_torchvision_state_dict(tmp_path):
    from torchvision.models import resnet50

    torch.manual_seed(6)
    source = resnet50().eval()
    path = tmp_path / "resnet50-0676ba61.pth"
    torch.save(source.state_dict(), path)  # torchvision's layout, fc included
    det = create_detector("resnet50.tv_in1k", weights_file=path)
    x = _batch(128)
    source.fc = torch.nn.Identity()
    with torch.no_grad():
        _same(det(x), source(x))


def _swin_source():
    import timm

    torch.manual_seed(7)
    return timm.create_model("swin_base_patch4_window7_224", pretrained=False, num_classes=1000).eval()


@pytest.mark.slow
def test_swin_from_timm_state_dict(tmp_path):
    source = _swin_source()
    path = tmp_path / "swin_b.in1k.pth"
    torch.save(source.state_dict(), path)
    det = create_detector("swin_b.in1k", weights_file=path)
    x = _batch(224)
    with torch.no_grad():
        out = det(x)
        _same(out, source.forward_head(source.forward_features(x), pre_logits=True), atol=1e-4)
    assert out.shape == (1, 1024)


@pytest.mark.slow
def test_swin_from_microsoft_layout(tmp_path):
    """Microsoft's release: {"model": ...}, downsample at the end of each stage, ``head.weight``, index buffers."""
    import re

    source = _swin_source()
    state = {}
    for key, value in source.state_dict().items():
        key = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", key)
        state[key.replace("head.fc.", "head.")] = value
    state["layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    path = tmp_path / "swin_base_patch4_window7_224.pth"
    torch.save({"model": state}, path)
    det = create_detector("swin_b.in1k", weights_file=path)
    x = _batch(224)
    with torch.no_grad():
        _same(det(x), source.forward_head(source.forward_features(x), pre_logits=True), atol=1e-4)
