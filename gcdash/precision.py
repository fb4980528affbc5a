"""Arithmetic precision of model passes, as a registry: ``fp32`` (the default: exact, today's numbers), ``bf16`` and
``fp16`` (``torch.autocast``: convolutions and matrix products in half precision, what PyTorch keeps in float32 kept
there, e.g. softmax and the cross-entropy loss).

A precision changes only the model's passes (forward and backward of the attack and of the CAM): the logits come
back as float32, and the CAM maps and every score are computed in float32 from the half-precision activations and
gradients. Half-precision passes also take their input in ``channels_last`` memory format, which oneDNN's bf16
kernels (and cuDNN's tensor cores) run fastest; fp32 keeps the contiguous format, whose results are bit-identical
to earlier releases (channels_last changes float32 results in the last bits).

A model at a precision (:meth:`gcdash.models.handle.ModelHandle.at_precision`) has its own digest, so every cache
cell it makes (logits, maps, attack directions, rows) has its own key: a bf16 map never serves an fp32 request.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn

from gcdash.errors import GcdashError
from gcdash.registry import Registry

FP32 = "fp32"


@dataclass(frozen=True)
class Precision:
    """A named precision: ``dtype`` the autocast type (None: plain float32, no autocast); ``devices`` the device
    types it runs on; ``channels_last`` whether inputs are passed in channels-last memory format."""

    name: str
    label: str
    dtype: torch.dtype | None
    devices: tuple[str, ...]
    channels_last: bool = False

    def check(self, device: torch.device | str, model: str = "the model") -> None:
        """Refuse, in one line, a precision this device cannot run (fp16 on a CPU; bf16 on a GPU without it)."""
        kind = torch.device(device).type
        if kind not in self.devices:
            raise GcdashError(
                f"precision {self.name} runs on {' or '.join(d.upper() for d in self.devices)} only ({model} is on "
                f"{kind}): use {' or '.join(n for n in names() if n != self.name and kind in get(n).devices)}"
            )
        if kind == "cuda" and self.dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise GcdashError(f"this GPU has no bf16 arithmetic ({model}): use fp16 or fp32")


PRECISIONS: Registry[Precision] = Registry("precision")
PRECISIONS.add(FP32, Precision(FP32, "float32 (exact)", None, ("cpu", "cuda", "mps")))
PRECISIONS.add("bf16", Precision("bf16", "bfloat16 autocast", torch.bfloat16, ("cpu", "cuda"), channels_last=True))
PRECISIONS.add("fp16", Precision("fp16", "float16 autocast (CUDA)", torch.float16, ("cuda",), channels_last=True))


def names() -> list[str]:
    """Registered precision names, fp32 first."""
    return PRECISIONS.names()


def get(name: str) -> Precision:
    """The precision registered as ``name`` (an unknown name raises a GcdashError listing the valid ones)."""
    return PRECISIONS.get(name)


def digest(weights: str, name: str) -> str:
    """The content key of a model at precision ``name``: its weights' digest itself at fp32 (so fp32 keys are those
    of earlier releases), else a digest of both."""
    if name == FP32:
        return weights
    return hashlib.sha256(f"{weights}|precision={name}".encode()).hexdigest()[:32]


class AutocastNet(nn.Module):
    """``net`` run under ``torch.autocast`` at ``precision``: the input in the precision's memory format, the
    logits returned as float32. Backward passes need no context: autograd replays the dtypes the forward chose.
    ``inner`` is the wrapped module itself (shared, not copied: hooks on its layers see these passes)."""

    def __init__(self, net: nn.Module, precision: Precision) -> None:
        super().__init__()
        self.inner, self.precision = net, precision

    @property
    def backbone(self) -> nn.Module:
        """The library's network inside (what layer names, checkpoints and the token-grid readers use)."""
        return getattr(self.inner, "backbone", self.inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.precision.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=self.precision.dtype):
            out = self.inner(x)
        return out.float()


def unwrapped(net: nn.Module) -> nn.Module:
    """The float32 network inside an :class:`AutocastNet` (or ``net`` itself)."""
    return net.inner if isinstance(net, AutocastNet) else net
