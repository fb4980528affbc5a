"""Arithmetic precision of model passes, as a registry: ``fp32`` (the default: exact, today's numbers), ``bf16`` and
``fp16`` (``torch.autocast``: convolutions and matrix products in half precision, what PyTorch keeps in float32 kept
there, e.g. softmax and the cross-entropy loss).

A precision changes only the model's passes (forward and backward of the attack and of the CAM): the logits come
back as float32, and the CAM maps and every score are computed in float32 from the half-precision activations and
gradients. Half-precision passes also take their input in ``channels_last`` memory format, which oneDNN's bf16
kernels (and cuDNN's tensor cores) run fastest; fp32 keeps the contiguous format, whose results are bit-identical
to earlier releases (channels_last changes float32 results in the last bits).

The ``-cam`` entries run the CAM passes at half precision and the attack's passes at fp32, so the attacked images
are exactly fp32's (an FGSM sign is a discontinuous function of the gradient: at bf16 it flips on the pixels whose
gradient is near zero, enough to move the top-1 of 2–3% of attacked demo images, see the README), and FGSM's cached
directions are shared with fp32 sweeps; they are slower where the attack's passes weigh (PGD).

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
    types it runs on; ``channels_last`` whether inputs are passed in channels-last memory format; ``attack`` the
    precision the attack's passes run at, where not this one."""

    name: str
    label: str
    dtype: torch.dtype | None
    devices: tuple[str, ...]
    channels_last: bool = False
    attack: str | None = None  # the precision of the attack's passes (None: this one)

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
_BF16, _FP16 = (torch.bfloat16, ("cpu", "cuda")), (torch.float16, ("cuda",))
PRECISIONS.add("bf16", Precision("bf16", "bfloat16 (attack and CAM)", *_BF16, channels_last=True))
PRECISIONS.add("bf16-cam", Precision("bf16-cam", "bfloat16 CAM, float32 attack", *_BF16, True, attack=FP32))
PRECISIONS.add("fp16", Precision("fp16", "float16 (attack and CAM, CUDA)", *_FP16, channels_last=True))
PRECISIONS.add("fp16-cam", Precision("fp16-cam", "float16 CAM, float32 attack (CUDA)", *_FP16, True, attack=FP32))


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
