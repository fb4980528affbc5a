"""Per-image random streams: noise that follows an image's content, never its position in a batch.

Smooth Grad-CAM++'s noisy copies, PGD's random start and the random-sign noise control all draw from a CPU
generator seeded by ``(seed, SHA-256 of the image's shape and float32 bytes)``, so a result is reproducible and the
same whether an image is processed alone or in a batch, on any device.
"""

from __future__ import annotations

import hashlib

import torch


def image_generator(image: torch.Tensor, seed: int) -> torch.Generator:
    """A CPU generator seeded by ``seed`` and the content (shape + float32 bytes) of one image."""
    data = image.detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.sha256(f"{int(seed)}|{tuple(data.shape)}|".encode() + data.numpy().tobytes()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def per_image_uniform(x: torch.Tensor, seed: int) -> torch.Tensor:
    """U(−1, 1) noise shaped like ``x`` (N, …), row i drawn from image i's own generator, on ``x``'s device."""
    rows = [torch.rand(xi.shape, generator=image_generator(xi, seed)) * 2 - 1 for xi in x]
    return torch.stack(rows).to(x.device, x.dtype) if rows else torch.zeros_like(x)


def per_image_signs(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Random signs in {−1, +1} shaped like ``x``, row i from image i's own generator, on ``x``'s device."""
    rows = [torch.randint(0, 2, xi.shape, generator=image_generator(xi, seed)) * 2 - 1 for xi in x]
    return torch.stack(rows).to(x.device, x.dtype) if rows else torch.zeros_like(x)
