"""Train and sample the study's small unconditional DDPMs with diffusers (UNet2DModel, DDPMScheduler, EMAModel).

One model per training subset. Training is resumable and replayable: every random draw of step ``s`` (which
images, flips, noise, timesteps) comes from a generator seeded by (seed, subset size, s), and a checkpoint holds
the model, the EMA weights, the optimiser state and the loss history after a step. So a study killed at any
moment resumes from its last checkpoint and ends with the weights an uninterrupted run reaches, and raising
``steps`` later continues training instead of starting again (the learning rate is constant after warm-up, so
the trajectory does not depend on the total). A checkpoint written under other settings or for another subset
is refused, never used.

Checkpoints load with ``torch.load(weights_only=True)``: no pickled code runs. On CUDA the forward pass runs
under bf16 autocast (mixed precision; the loss, optimiser and EMA stay fp32). Heavy imports (torch, diffusers)
live inside functions so that ``import copybench`` stays fast.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from copybench.options import PREDICTIONS, SAMPLERS

log = logging.getLogger(__name__)

# UNet2DModel presets: (block_out_channels, layers_per_block, index of the attention block or None, norm groups)
MODEL_PRESETS: dict[str, tuple[tuple[int, ...], int, int | None, int]] = {
    "tiny": ((16, 32), 1, None, 8),  # tests: 8-16 px, a fraction of a second per step on a CPU
    "small": ((32, 64, 64), 1, None, 8),  # the CPU demo: 16-32 px, memorises a handful of images
    "base": ((64, 128, 256, 256), 2, 2, 32),  # the GPU recipe: 32-64 px, DDPM-like with attention at 1/4 size
}
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_META = "checkpoint.json"
MODEL_DIR = "model"
CHECKPOINT_SECONDS = 120.0  # also checkpoint on the clock, so a slow CPU run never loses more than this


@dataclass(frozen=True)
class TrainSettings:
    """Everything that shapes a training trajectory (``steps`` and the checkpoint cadence only say where to stop)."""

    resolution: int = 32
    model: str = "small"
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 100
    ema_max_decay: float = 0.9999
    flip: bool = True
    timesteps: int = 1000
    prediction: str = "epsilon"  # what the UNet predicts: the noise (DDPM) or the clean image ("sample")
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODEL_PRESETS:
            raise ValueError(f"unknown --model {self.model!r}; choose one of {', '.join(MODEL_PRESETS)}")
        levels = len(MODEL_PRESETS[self.model][0])
        if self.resolution < 8 or self.resolution % (2 ** (levels - 1)):
            raise ValueError(
                f"--resolution {self.resolution} does not suit model {self.model!r}: it must be at least 8 "
                f"and divisible by {2 ** (levels - 1)}"
            )
        if self.prediction not in PREDICTIONS:
            raise ValueError(
                f"unknown --prediction {self.prediction!r}; choose one of {', '.join(PREDICTIONS)}"
            )
        if self.batch_size < 1 or self.lr <= 0 or self.warmup < 0 or self.timesteps < 2:
            raise ValueError(
                f"bad training settings: batch size {self.batch_size}, lr {self.lr}, warm-up {self.warmup}, "
                f"timesteps {self.timesteps}"
            )

    def key(self, subset: str) -> dict:
        """The checkpoint key: these settings plus the subset's fingerprint."""
        return {**asdict(self), "subset": subset, "scheduler": "DDPMScheduler(linear)"}


@dataclass(frozen=True)
class TrainOutcome:
    """What one subset's training did: steps reached, losses, where it resumed, time spent here."""

    size: int
    steps: int
    resumed_from: int
    final_loss: float
    seconds: float
    device: str
    amp: str
    parameters: int
    losses: tuple[float, ...] = field(repr=False)


def key_hash(key: dict) -> str:
    """Short, stable hash of a JSON-able key."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- model
def build_unet(settings: TrainSettings):
    """A fresh UNet2DModel of the preset's size, seeded so its initial weights are reproducible."""
    import torch

    from copybench.extras import require

    require("diffusers")
    from diffusers import UNet2DModel

    channels, layers, attn, groups = MODEL_PRESETS[settings.model]
    levels = len(channels)
    down = tuple("AttnDownBlock2D" if i == attn else "DownBlock2D" for i in range(levels))
    # up block i mirrors down block levels-1-i
    up = tuple(
        "AttnUpBlock2D" if attn is not None and i == levels - 1 - attn else "UpBlock2D" for i in range(levels)
    )
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
        torch.manual_seed(settings.seed)
        return UNet2DModel(
            sample_size=settings.resolution,
            in_channels=3,
            out_channels=3,
            layers_per_block=layers,
            block_out_channels=channels,
            down_block_types=down,
            up_block_types=up,
            norm_num_groups=groups,
        )


def _scheduler(settings: TrainSettings):
    from copybench.extras import require

    require("diffusers")
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=settings.timesteps, beta_schedule="linear", prediction_type=settings.prediction
    )


def _ema(model, settings: TrainSettings):
    from copybench.extras import require

    require("diffusers")
    from diffusers.training_utils import EMAModel

    # diffusers' train_unconditional defaults: warm-up (inv_gamma 1, power 3/4) so short runs still average
    return EMAModel(
        model.parameters(), decay=settings.ema_max_decay, use_ema_warmup=True, inv_gamma=1.0, power=0.75
    )


def _autocast(device: str):
    import contextlib

    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16), "bf16"
    return contextlib.nullcontext(), "none"


# ---------------------------------------------------------------------------------------------- checkpoints
def _step_seed(settings: TrainSettings, size: int, step: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{settings.seed}|{size}|{step}".encode()).digest()[:8], "little")


def save_checkpoint(folder: Path, state: dict, key: dict) -> None:
    """Write the checkpoint and its record (step, key, the file's sha256), each atomically.

    The record of the new file is staged (``checkpoint.json.new``) before the file replaces the old one and
    committed after, so a kill at any moment leaves a checkpoint whose sha256 one of the two records holds.
    """
    import os

    import torch

    from copybench.io import atomic_write_text

    tmp = folder / f".{CHECKPOINT}.tmp"
    torch.save(state, tmp)
    meta = {"step": state["step"], "key": key, "key_hash": key_hash(key), "sha256": _sha256(tmp)}
    staged = folder / f"{CHECKPOINT_META}.new"
    atomic_write_text(staged, json.dumps(meta, sort_keys=True, indent=1) + "\n")
    os.replace(tmp, folder / CHECKPOINT)
    os.replace(staged, folder / CHECKPOINT_META)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_checkpoint(folder: Path) -> None:
    """ValueError naming the file unless a record holds its sha256: flipped bytes are never resumed from."""
    path, digest = folder / CHECKPOINT, _sha256(folder / CHECKPOINT)
    for record in (folder / CHECKPOINT_META, folder / f"{CHECKPOINT_META}.new"):
        try:
            if json.loads(record.read_text()).get("sha256") == digest:
                return
        except (OSError, ValueError):
            continue
    raise ValueError(
        f"{path}: its sha256 {digest[:16]} is not the one recorded when it was written (damaged, or written "
        "by another tool); delete it to train this size from scratch"
    )


def load_checkpoint(folder: Path, key: dict) -> dict | None:
    """The checkpoint in ``folder`` if one exists, verified against its recorded sha256; ValueError naming the
    file when it is damaged or was written for another key."""
    import torch

    path = folder / CHECKPOINT
    if not path.exists():
        return None
    _verify_checkpoint(folder)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: unreadable checkpoint ({exc}); delete it to train from scratch") from exc
    if state.get("key_hash") != key_hash(key):
        raise ValueError(
            f"{path} was written for other training settings or another subset "
            f"(key {state.get('key_hash')} != {key_hash(key)}); delete it or choose another --out"
        )
    return state


# ---------------------------------------------------------------------------------------------- training
def _batch(pixels, settings: TrainSettings, step: int, device: str):
    """Step ``step``'s images (drawn with replacement, optionally flipped), noise and timesteps; replayable."""
    import torch

    g = torch.Generator().manual_seed(_step_seed(settings, len(pixels), step))
    b, r = settings.batch_size, settings.resolution
    idx = torch.randint(len(pixels), (b,), generator=g)
    x = pixels[idx].permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    if settings.flip:
        flip = torch.rand(b, generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    noise = torch.randn(b, 3, r, r, generator=g)
    t = torch.randint(settings.timesteps, (b,), generator=g)
    return x.to(device), noise.to(device), t.to(device)


def _lr(settings: TrainSettings, step: int) -> float:
    # linear warm-up then constant: the trajectory up to a step does not depend on the total number of steps
    return settings.lr * min(1.0, step / settings.warmup) if settings.warmup else settings.lr


def _restore(model, ema, opt, state: dict | None) -> tuple[int, list[float]]:
    if state is None:
        return 0, []
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["opt"])
    return int(state["step"]), [float(v) for v in state["losses"].tolist()]


def _state(model, ema, opt, step: int, losses: list[float], key: dict) -> dict:
    import torch

    return {
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "opt": opt.state_dict(),
        "step": step,
        "losses": torch.tensor(losses, dtype=torch.float64),
        "key_hash": key_hash(key),
    }


def train_subset(
    pixels: np.ndarray,
    settings: TrainSettings,
    steps: int,
    folder: Path,
    *,
    subset: str,
    device: str = "cpu",
    checkpoint_every: int = 200,
    progress: bool = True,
) -> TrainOutcome:
    """Train (or resume training) one DDPM on ``pixels`` (N, R, R, 3) uint8 up to ``steps``; saves the EMA model."""
    import torch

    from copybench.progress import progress_bar

    folder.mkdir(parents=True, exist_ok=True)
    key = settings.key(subset)
    model = build_unet(settings).to(device)
    ema, sched = _ema(model, settings), _scheduler(settings)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
    start, losses = _restore(model, ema, opt, load_checkpoint(folder, key))
    if start > steps:
        raise ValueError(
            f"{folder / CHECKPOINT} is at step {start}, beyond --steps {steps}; raise --steps or delete it"
        )
    if start:
        log.info("size %d: resuming from the checkpoint at step %d", len(pixels), start)
    ema.to(device)
    data = torch.from_numpy(np.ascontiguousarray(pixels))
    autocast, amp = _autocast(device)
    t0 = last_save = time.perf_counter()
    with progress_bar(f"training on {len(pixels)} images", steps, progress) as bar:
        bar.advance(start)
        for step in range(start + 1, steps + 1):
            losses.append(_train_step(model, opt, sched, autocast, data, settings, step, device))
            ema.step(model.parameters())
            bar.advance()
            due = step % checkpoint_every == 0 or time.perf_counter() - last_save > CHECKPOINT_SECONDS
            if due or step == steps:
                save_checkpoint(folder, _state(model, ema, opt, step, losses, key), key)
                last_save = time.perf_counter()
    seconds = time.perf_counter() - t0
    _save_model(model, ema, folder / MODEL_DIR)
    params = sum(p.numel() for p in model.parameters())
    final = float(np.mean(losses[-50:])) if losses else float("nan")
    return TrainOutcome(len(pixels), steps, start, final, seconds, device, amp, params, tuple(losses))


def _train_step(model, opt, sched, autocast, data, settings: TrainSettings, step: int, device: str) -> float:
    import torch.nn.functional as F

    x, noise, t = _batch(data, settings, step, device)
    noisy = sched.add_noise(x, noise, t)
    for group in opt.param_groups:
        group["lr"] = _lr(settings, step)
    with autocast:
        pred = model(noisy, t).sample
    loss = F.mse_loss(pred.float(), noise if settings.prediction == "epsilon" else x)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def _save_model(model, ema, folder: Path) -> None:
    """The EMA weights as a diffusers model folder (safetensors + config.json); the live weights stay untouched."""
    import copy

    ema_model = copy.deepcopy(model)
    ema.copy_to(ema_model.parameters())
    ema_model.save_pretrained(folder, safe_serialization=True)


def load_trained(folder: Path, device: str = "cpu"):
    """The EMA UNet saved by :func:`train_subset`."""
    from copybench.extras import require

    require("diffusers")
    from diffusers import UNet2DModel

    return UNet2DModel.from_pretrained(folder / MODEL_DIR, use_safetensors=True).to(device).eval()


# ---------------------------------------------------------------------------------------------- sampling
def sampler_scheduler(settings: TrainSettings, sampler: str, sampling_steps: int):
    """DPM-Solver++ (2nd order, multistep) or DDIM (eta 0) on the training schedule; both deterministic."""
    from copybench.extras import require

    require("diffusers")
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if sampler not in SAMPLERS:
        raise ValueError(f"unknown --sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if sampling_steps < 1:
        raise ValueError(f"--sampling-steps must be at least 1, got {sampling_steps}")
    config = _scheduler(settings).config
    cls = DPMSolverMultistepScheduler if sampler == "dpm" else DDIMScheduler
    sched = cls.from_config(config)
    sched.set_timesteps(sampling_steps)
    return sched


def generate(
    unet,
    settings: TrainSettings,
    n: int,
    *,
    sampler: str = "dpm",
    sampling_steps: int = 25,
    seed: int = 0,
    batch_size: int = 64,
    device: str = "cpu",
) -> np.ndarray:
    """``n`` samples as uint8 (n, R, R, 3); batch ``i`` starts from noise seeded by (seed, i)."""
    import torch

    out = []
    autocast, _ = _autocast(device)
    for i, start in enumerate(range(0, n, batch_size)):
        b = min(batch_size, n - start)
        sched = sampler_scheduler(settings, sampler, sampling_steps)  # fresh: multistep solvers keep state
        g = torch.Generator().manual_seed(seed * 1_000_003 + i)
        x = torch.randn(b, 3, settings.resolution, settings.resolution, generator=g).to(device)
        x = x * sched.init_noise_sigma
        with torch.no_grad():
            for t in sched.timesteps:
                with autocast:
                    eps = unet(sched.scale_model_input(x, t), t).sample
                x = sched.step(eps.float(), t, x).prev_sample
        img = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        out.append(img.permute(0, 2, 3, 1).cpu().numpy())
    return (
        np.concatenate(out) if out else np.zeros((0, settings.resolution, settings.resolution, 3), np.uint8)
    )
