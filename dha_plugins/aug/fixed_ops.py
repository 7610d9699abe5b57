"""Fixed, batched pre- and post-ops: random crop with padding, horizontal flip and cutout.

These run on the training device around every policy (``standard`` is nothing else). Their
random parameters are drawn on CPU from the caller's :class:`torch.Generator`, so a seeded
generator reproduces them; that is why Kornia's ``RandomCrop``/``RandomHorizontalFlip``
modules, which draw from the global RNG, are not used here.

Normalisation is *not* among the post-ops: the orchestrator normalises after augmentation.

Example:
    >>> ops = FixedOps(FixedOpsConfig(cutout=8), image_size=32, mean=(0.5, 0.5, 0.5))
    >>> x = torch.rand(4, 3, 32, 32)
    >>> ops.post(ops.pre(x, torch.Generator().manual_seed(0)), torch.Generator().manual_seed(1)).shape
    torch.Size([4, 3, 32, 32])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from dha_core.config_base import ComponentConfig
from dha_core.types import DataSpec

__all__ = [
    "FixedOpsConfig",
    "FixedOps",
    "check_generator",
    "random_crop_flip",
    "random_cutout",
]


class FixedOpsConfig(ComponentConfig):
    """Fixed pre-ops (crop, flip) and post-ops (cutout) shared by every augmentation plugin.

    Attributes:
        crop: Random crop of the original size after padding.
        crop_padding: Padding per side in pixels; ``None`` uses ``image_size // 8`` (4 for 32x32).
        pad_mode: ``constant`` (zeros) or ``reflect``.
        flip: Random horizontal flip with probability 1/2.
        cutout: Side of the square cutout in pixels; 0 disables it.
        cutout_fill: ``mean`` fills with the dataset mean (0 after normalisation, as when
            cutout runs after ``Normalize`` in the usual CIFAR pipelines); ``zero`` fills black.
    """

    crop: bool = True
    crop_padding: int | None = Field(None, ge=0)
    pad_mode: Literal["constant", "reflect"] = "constant"
    flip: bool = True
    cutout: int = Field(0, ge=0)
    cutout_fill: Literal["mean", "zero"] = "mean"


def check_generator(generator: torch.Generator | None) -> None:
    """Raises ``ValueError`` unless ``generator`` is ``None`` or a CPU generator.

    Sampling always happens on CPU (it is tiny, and a CPU generator makes it reproducible
    across devices), so a CUDA generator cannot be used.
    """
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(f"augmentation sampling needs a CPU torch.Generator, got one on {generator.device}")


def random_crop_flip(
    images: torch.Tensor,
    padding: int,
    flip: bool,
    generator: torch.Generator | None = None,
    pad_mode: str = "constant",
) -> torch.Tensor:
    """Random crop after padding, then random horizontal flip, as one gather.

    Each sample is padded by ``padding`` per side and cropped back to its size at a random
    offset, then flipped left-right with probability 1/2. Both are index maps, so they are
    composed into a single ``gather`` (exact, no interpolation, no per-sample loop).

    Args:
        images: ``(B, C, H, W)`` batch.
        padding: Pixels added per side (0: no crop).
        flip: Whether to draw flips.
        generator: CPU generator; draws offsets ``(B, 2)`` then flips ``(B,)``.
        pad_mode: ``constant`` (zeros) or ``reflect``.

    Returns:
        The transformed batch, same shape as ``images``.
    """
    if padding == 0 and not flip:
        return images
    b, c, h, w = images.shape
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator)
    flipped = torch.rand(b, generator=generator) < 0.5 if flip else torch.zeros(b, dtype=torch.bool)
    padded = F.pad(images, (padding,) * 4, mode=pad_mode) if padding else images
    width = w + 2 * padding
    # Indices are built on CPU next to the draws, then moved once.
    cols = torch.arange(w)
    cols = torch.where(flipped[:, None], cols.flip(0), cols) + offsets[:, 1, None]  # (B, W)
    rows = torch.arange(h) + offsets[:, 0, None]  # (B, H)
    index = (rows[:, :, None] * width + cols[:, None, :]).view(b, 1, h * w)
    index = index.to(images.device, non_blocking=True).expand(b, c, h * w)
    return padded.flatten(2).gather(2, index).view(b, c, h, w)


def random_cutout(
    images: torch.Tensor,
    size: int,
    generator: torch.Generator | None = None,
    fill: Sequence[float] | float = 0.0,
) -> torch.Tensor:
    """Fills one ``size x size`` square per sample, centred anywhere in the image (DeVries & Taylor).

    The square is clipped at the border, so it may cover less than ``size**2`` pixels.

    Args:
        images: ``(B, C, H, W)`` batch.
        size: Side of the square in pixels; 0 returns ``images``.
        generator: CPU generator for the centres.
        fill: One value, or one per channel.

    Returns:
        The batch with the squares filled.
    """
    if size == 0:
        return images
    b, c, h, w = images.shape
    centres = torch.stack(
        [torch.randint(0, h, (b,), generator=generator), torch.randint(0, w, (b,), generator=generator)], dim=1
    ).to(images.device, non_blocking=True)
    low = centres - size // 2
    high = low + size
    ys = torch.arange(h, device=images.device)
    xs = torch.arange(w, device=images.device)
    inside_y = (ys >= low[:, 0, None]) & (ys < high[:, 0, None])  # (B, H)
    inside_x = (xs >= low[:, 1, None]) & (xs < high[:, 1, None])  # (B, W)
    mask = (inside_y[:, :, None] & inside_x[:, None, :])[:, None]  # (B, 1, H, W)
    value = torch.as_tensor(fill, dtype=images.dtype, device=images.device).reshape(-1, 1, 1)
    if value.shape[0] not in (1, c):
        raise ValueError(f"cutout fill has {value.shape[0]} values for {c} channels")
    return torch.where(mask, value, images)


class FixedOps(nn.Module):
    """The configured pre-ops (crop, flip) and post-ops (cutout) of a policy.

    Args:
        config: Which ops run.
        image_size: Side of the (square) training images; sets the default crop padding.
        mean: Per-channel dataset mean in ``[0, 1]`` (the ``mean`` cutout fill).
    """

    @classmethod
    def for_data(cls, config: FixedOpsConfig, data_spec: DataSpec | None) -> FixedOps:
        """Sized and filled for the data (without a spec: 32 pixels, the zero fill)."""
        if data_spec is None:
            return cls(config)
        return cls(config, image_size=data_spec.image_size, mean=data_spec.mean)

    def __init__(self, config: FixedOpsConfig, image_size: int = 32, mean: Sequence[float] | None = None) -> None:
        super().__init__()
        self.crop = config.crop
        self.padding = config.crop_padding if config.crop_padding is not None else max(int(image_size) // 8, 0)
        self.pad_mode = config.pad_mode
        self.flip = config.flip
        self.cutout = config.cutout
        self.cutout_fill: tuple[float, ...] = (
            tuple(float(m) for m in mean) if config.cutout_fill == "mean" and mean is not None else (0.0,)
        )

    def pre(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random crop with padding, then horizontal flip (each if enabled).

        Args:
            images: ``(B, C, H, W)`` batch in ``[0, 1]``.
            generator: CPU generator.

        Returns:
            The transformed batch.
        """
        return random_crop_flip(images, self.padding if self.crop else 0, self.flip, generator, self.pad_mode)

    def post(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Cutout (if enabled).

        Args:
            images: ``(B, C, H, W)`` batch in ``[0, 1]``.
            generator: CPU generator.

        Returns:
            The transformed batch.
        """
        if self.cutout:
            images = random_cutout(images, self.cutout, generator, self.cutout_fill)
        return images

    def extra_repr(self) -> str:
        return (
            f"crop={self.crop}, padding={self.padding}, pad_mode={self.pad_mode!r}, flip={self.flip}, "
            f"cutout={self.cutout}"
        )
