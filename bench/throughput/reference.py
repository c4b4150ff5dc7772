"""The reference pipeline: what a paper's script would write, timed beside the harness on the same images.

Pillow decode and torchvision ``Resize/CenterCrop/ToTensor/Normalize`` per image, a plain DataLoader with default
collate (float32 batches, same worker count), and retrieval by a full similarity matrix and ``argsort``.
"""

from __future__ import annotations


def reference_transform(spec):
    """The per-image torchvision transform a paper's script would write for this detector's spec."""
    from torchvision import transforms as T

    interp = T.InterpolationMode(spec.interpolation)
    size = spec.input_size
    if spec.resize == "square":
        steps = [T.Resize((size, size), interpolation=interp)]
    else:
        steps = [T.Resize(spec.resize_size, interpolation=interp)]
        steps += [T.CenterCrop(size)] if spec.resize == "short_crop" else []
    return T.Compose([*steps, T.ToTensor(), T.Normalize(spec.mean, spec.std)])


class _ReferenceImages:
    def __init__(self, paths: list[str], transform) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.open(self.paths[i]).convert("RGB"))


def reference_extract(
    detector,
    paths: list[str],
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    batch_size: int = 32,
    num_workers: int = 0,
):
    """Descriptors the straightforward way: per-image transforms, default collate, float32 batches to the device."""
    import torch

    from ..extract import DTYPES

    loader = torch.utils.data.DataLoader(
        _ReferenceImages(paths, reference_transform(detector.spec)),
        batch_size=batch_size,
        num_workers=num_workers,
    )
    device_type = torch.device(device).type
    out = []
    with torch.no_grad():
        for x in loader:
            with torch.autocast(device_type, dtype=DTYPES[dtype], enabled=dtype != "fp32"):
                f = detector(x.to(device)).float()
            f = f[:, 0] if f.ndim == 3 else f
            out.append(torch.nn.functional.normalize(f, dim=-1).cpu())
    return torch.cat(out).numpy()


def reference_search(queries, references, k: int, *, device: str = "cpu"):
    """Top-k by a full (Q, N) similarity matrix and a full argsort per row."""
    import torch

    q, r = torch.from_numpy(queries).to(device), torch.from_numpy(references).to(device)
    sims = q @ r.T
    order = torch.argsort(sims, dim=1, descending=True)[:, :k]
    return sims.gather(1, order).cpu().numpy(), order.cpu().numpy()
