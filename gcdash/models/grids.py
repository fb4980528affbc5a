"""A layer's output as the feature map a CAM reads: (N, C, h, w), whatever layout the layer writes.

CNNs write (N, C, h, w) and are left as they are (the same tensor, not a copy). Vision transformers write tokens:

- ViT, DeiT, models with register tokens (timm's ``VisionTransformer``, torchvision's ``vit_*``): (N, P + h·w, C),
  where the first ``P`` tokens are the class token, DeiT's distillation token and any register tokens. They are
  dropped and the rest is laid out on the patch grid: ``x[:, P:].reshape(N, h, w, C).permute(0, 3, 1, 2)``, which is
  pytorch-grad-cam's ``reshape_transform`` for ViT (its tutorial's, with ``P`` from the model instead of 1).
- Swin (timm ≥ 0.9, torchvision): (N, h, w, C), channels last: permuted to (N, C, h, w), the same as
  pytorch-grad-cam's Swin ``reshape_transform`` gives for these layers.

The view is a selection and a permutation, so the gradient of the view is the view of the gradient: the engine
records the layer's own output, takes ``∂S_c/∂output`` and applies :func:`feature_map` to both (what
pytorch-grad-cam does with ``reshape_transform``).

``P`` comes from the model (timm's ``num_prefix_tokens``; 1 for torchvision's ViT, its class token); ``h·w`` is the
rest, laid out square (or at the input's aspect ratio for a non-square input). A channels-last 4-D output is told
from a channels-first one by which pair of dimensions is the spatial grid: with a square input, the equal pair; if
all three are equal, the model's ``output_fmt`` (timm) decides.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gcdash.errors import GcdashError


def backbone_of(net: nn.Module) -> nn.Module:
    """The library's own module inside a pixel-space wrapper (or ``net`` itself)."""
    return getattr(net, "backbone", net)


def prefix_tokens(net: nn.Module) -> int:
    """Tokens before the patch tokens: timm's ``num_prefix_tokens`` (class, distillation and register tokens),
    torchvision ViT's class token, else 0."""
    model = backbone_of(net)
    count = getattr(model, "num_prefix_tokens", None)
    if count is not None:
        return int(count)
    return 1 if isinstance(getattr(model, "class_token", None), torch.Tensor) else 0


def channels_last(net: nn.Module) -> bool:
    """Whether the model says its feature maps are (N, h, w, C) (timm's ``output_fmt``, torchvision's Swin)."""
    model = backbone_of(net)
    fmt = str(getattr(model, "output_fmt", ""))
    return fmt.endswith("NHWC") or (type(model).__name__ == "SwinTransformer" and not hasattr(model, "output_fmt"))


def feature_map(name: str, output: torch.Tensor, net: nn.Module, input_hw: tuple[int, int]) -> torch.Tensor:
    """``output`` of layer ``name`` as (N, C, h, w) (see the module docstring); anything else is refused in one
    line naming the layer."""
    if output.ndim == 4:
        if not _is_grid(output, net, input_hw):
            raise GcdashError(
                f"layer {name!r} outputs {tuple(output.shape)}, which is not a feature map on the image's grid "
                "(attention heads or weights?); choose a block's output"
            )
        return output.permute(0, 3, 1, 2) if _is_channels_last(output, net, input_hw) else output
    if output.ndim == 3:
        return token_grid(name, output, prefix_tokens(net), input_hw)
    raise GcdashError(
        f"layer {name!r} outputs a {output.ndim}-D tensor {tuple(output.shape)}; choose a layer that outputs a "
        "feature map (N, C, h, w) or tokens (N, tokens, C)"
    )


def token_grid(name: str, tokens: torch.Tensor, prefix: int, input_hw: tuple[int, int]) -> torch.Tensor:
    """(N, P + h·w, C) → (N, C, h, w): the prefix tokens dropped, the patch tokens on their grid."""
    n, count, channels = tokens.shape
    h, w = _grid(count - prefix, input_hw)
    if h * w != count - prefix:
        raise GcdashError(
            f"layer {name!r} has {count} tokens; with {prefix} prefix token(s) the other {count - prefix} do not "
            f"form a {input_hw[0]}×{input_hw[1]}-shaped grid, so it cannot be drawn as a map"
        )
    return tokens[:, prefix:].reshape(n, h, w, channels).permute(0, 3, 1, 2)


def _grid(patches: int, input_hw: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) with ``h·w = patches`` and ``h/w`` the input's aspect ratio (square for a square input)."""
    if patches <= 0:
        return 0, 0
    h = max(1, round(math.sqrt(patches * input_hw[0] / input_hw[1])))
    return h, max(1, patches // h)


def _is_grid(output: torch.Tensor, net: nn.Module, input_hw: tuple[int, int]) -> bool:
    """With a square input, a feature map has a square grid (in dimensions 2, 3 or 1, 2), and a token model's
    grid side never counts its prefix tokens (attention weights are (N, heads, P + h·w, P + h·w))."""
    _, a, b, c = output.shape
    if input_hw[0] != input_hw[1]:
        return True
    prefix = prefix_tokens(net)
    side = c if b == c else b if a == b else 0
    grid = getattr(getattr(backbone_of(net), "patch_embed", None), "grid_size", None)
    rest = max(side - prefix, 0)
    patches = math.prod(grid) if grid else (rest if math.isqrt(rest) ** 2 == rest else -1)
    return side > 0 and not (prefix and side == prefix + patches)


def _is_channels_last(output: torch.Tensor, net: nn.Module, input_hw: tuple[int, int]) -> bool:
    _, a, b, c = output.shape
    if input_hw[0] != input_hw[1]:  # the grid pair is not told apart by equality: the model's word decides
        return channels_last(net)
    if b == c and a != b:
        return False
    if a == b and b != c:
        return True
    return channels_last(net) if a == b == c else False
