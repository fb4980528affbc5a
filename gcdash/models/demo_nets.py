"""Four small CNNs for the demo shapes, one per family the paper compares: plain deep (VGG), residual (ResNet),
multi-branch wide (Inception) and depthwise-separable with residuals (Xception).

Every net is ``features`` (an ``nn.Sequential`` of named blocks, run in order) then ``head`` (global average pool
and a linear layer). Hook-safe by construction: each ReLU is its own module, nothing is in place, no module runs
twice in a forward pass, and every block returns one 4-D tensor. :meth:`DemoNet.catalog` lists the blocks shallow
→ deep; a :class:`Stage` (a run of residual blocks) is listed block by block as ``<stage>.<i>``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import partial

import torch
from timm.layers import HybridEmbed
from timm.models.vision_transformer import VisionTransformer
from torch import nn


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    """``ReLU(BN(conv_k×k(x)))`` with 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=False),
    )


class Stage(nn.Sequential):
    """A run of residual blocks; the layer catalog lists each block of it."""


class DemoNet(nn.Module):
    """``head(features(x))``; ``features`` holds the catalogued blocks in forward order."""

    def __init__(self, blocks: Sequence[tuple[str, nn.Module]], width: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(OrderedDict(blocks))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def catalog(self) -> dict[str, nn.Module]:
        """Every block, shallow → deep, in the order the forward pass reaches them."""
        layers: dict[str, nn.Module] = {}
        for name, block in self.features.named_children():
            children = list(block.named_children()) if isinstance(block, Stage) else [("", block)]
            layers.update({f"{name}.{i}" if i else name: b for i, b in children})
        return layers


# ----------------------------------------------------------------------------------------------------------- VGG
def vgg_block(cin: int, cout: int, pool: bool) -> nn.Sequential:
    """[max-pool 2×2 →] two 3×3 conv-BN-ReLU."""
    layers = [nn.MaxPool2d(2)] if pool else []
    return nn.Sequential(*layers, conv_bn_relu(cin, cout), conv_bn_relu(cout, cout))


def demo_vgg(num_classes: int, widths: Sequence[int] = (16, 32, 64, 96, 128)) -> DemoNet:
    """VGG-style plain stack: block1 at full resolution, pooling before blocks 2-4, block5 at 1/8 resolution."""
    pools = (False, True, True, True, False)
    cins = (3, *widths[:-1])
    blocks = [(f"block{i + 1}", vgg_block(ci, co, p)) for i, (ci, co, p) in enumerate(zip(cins, widths, pools))]
    return DemoNet(blocks, widths[-1], num_classes)


# -------------------------------------------------------------------------------------------------------- ResNet
class BasicBlock(nn.Module):
    """``ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))``; 1×1 strided shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(cin, cout, stride=stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


def demo_resnet(num_classes: int, widths: Sequence[int] = (32, 64, 128), depth: int = 2) -> DemoNet:
    """ResNet-style: stride-2 stem, then stages of ``depth`` basic blocks at 1/2, 1/4, 1/8 resolution."""
    blocks: list[tuple[str, nn.Module]] = [("stem", conv_bn_relu(3, widths[0], stride=2))]
    cin = widths[0]
    for s, width in enumerate(widths):
        stage = [BasicBlock(cin if i == 0 else width, width, 2 if (i == 0 and s > 0) else 1) for i in range(depth)]
        blocks.append((f"layer{s + 1}", Stage(*stage)))
        cin = width
    return DemoNet(blocks, widths[-1], num_classes)


# ----------------------------------------------------------------------------------------------------- Inception
class InceptionBlock(nn.Module):
    """Four parallel branches, concatenated: 1×1; 1×1→3×3; 1×1→3×3→3×3 (a factored 5×5); 3×3 max-pool→1×1.
    With ``pool`` a 2×2 max-pool first halves the resolution."""

    def __init__(self, cin: int, b1: int, b3: int, b5: int, bp: int, pool: bool = False) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.branch1 = conv_bn_relu(cin, b1, k=1)
        self.branch3 = nn.Sequential(conv_bn_relu(cin, b3 // 2, k=1), conv_bn_relu(b3 // 2, b3))
        self.branch5 = nn.Sequential(conv_bn_relu(cin, b5 // 2, k=1), conv_bn_relu(b5 // 2, b5), conv_bn_relu(b5, b5))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv_bn_relu(cin, bp, k=1))
        self.width = b1 + b3 + b5 + bp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], dim=1)


def demo_inception(num_classes: int) -> DemoNet:
    """Inception-style, wide and shallow: stride-2 stem, then five inception blocks at 1/2, 1/4, 1/4, 1/8, 1/8."""
    specs = [(16, 24, 12, 12, False), (24, 32, 16, 16, True), (32, 48, 24, 24, False), (48, 64, 32, 32, True),
             (48, 64, 32, 32, False)]  # fmt: skip
    blocks: list[tuple[str, nn.Module]] = [("stem", conv_bn_relu(3, 32, stride=2))]
    cin = 32
    for i, (b1, b3, b5, bp, pool) in enumerate(specs):
        block = InceptionBlock(cin, b1, b3, b5, bp, pool)
        blocks.append((f"mixed{i + 1}", block))
        cin = block.width
    return DemoNet(blocks, cin, num_classes)


# ------------------------------------------------------------------------------------------------------ Xception
def separable(cin: int, cout: int) -> nn.Sequential:
    """Depthwise 3×3 then pointwise 1×1, then BN."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
    )


class XceptionBlock(nn.Module):
    """``[pool](sep(ReLU(sep(ReLU(x))))) + shortcut(x)``, Xception's entry/middle-flow block; the shortcut is a
    strided 1×1 conv when the shape changes, else the identity. With ``last`` a final ReLU closes the block."""

    def __init__(self, cin: int, cout: int, stride: int = 1, last: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(inplace=False), separable(cin, cout), nn.ReLU(inplace=False), separable(cout, cout)
        )
        self.pool = nn.MaxPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        self.out = nn.ReLU(inplace=False) if last else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.pool(self.body(x)) + self.shortcut(x))


def demo_xception(num_classes: int) -> DemoNet:
    """Xception-style: stride-2 stem, entry blocks down to 1/4 and 1/8, two middle blocks, an exit block at 1/8.
    (Kept narrow at 1/2 resolution: depthwise convs are slow on CPUs.)"""
    blocks: list[tuple[str, nn.Module]] = [
        ("stem", nn.Sequential(conv_bn_relu(3, 24, stride=2), conv_bn_relu(24, 32))),
        ("entry1", XceptionBlock(32, 64, stride=2)),
        ("entry2", XceptionBlock(64, 128, stride=2)),
        ("middle1", XceptionBlock(128, 128)),
        ("middle2", XceptionBlock(128, 128)),
        ("exit", XceptionBlock(128, 192, last=True)),
    ]
    return DemoNet(blocks, 192, num_classes)


# ----------------------------------------------------------------------------------------------------------- ViT
class DemoViT(VisionTransformer):
    """A tiny hybrid ViT (Dosovitskiy et al., ICLR 2021, §3.1 "hybrid architecture"), timm's own class: a small
    convolutional stem (three stride-2 stages; early convolutions help a ViT train on little data, Xiao et al.,
    NeurIPS 2021) makes an 8×8 grid of tokens from the 64² image, then a class token and six transformer blocks of
    width 96. Catalogued as any timm ViT is (:func:`gcdash.models.library.catalog`): each block's tokens on the
    grid, the last block by its first norm (only the class token reaches the head from the last block's output)."""

    def catalog(self) -> dict[str, nn.Module]:
        from gcdash.models.library import catalog

        return catalog(self, size=(self.patch_embed.img_size[0], self.patch_embed.img_size[1]))


def vit_stem(widths: Sequence[int] = (32, 64, 96)) -> nn.Sequential:
    """Three stages of two 3×3 conv-BN-ReLU, the first of each at stride 2: 64² → 8²."""
    stages, cin = [], 3
    for width in widths:
        stages += [nn.Sequential(
            nn.Conv2d(cin, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            conv_bn_relu(width, width),
        )]  # fmt: skip
        cin = width
    return nn.Sequential(*stages)


def demo_vit(num_classes: int) -> DemoViT:
    """The hybrid ViT on the demo shapes: conv stem to 8×8 tokens, width 96, depth 6, 3 heads, MLP ratio 2."""
    embed = partial(HybridEmbed, backbone=vit_stem())
    return DemoViT(
        img_size=64, patch_size=1, embed_dim=96, depth=6, num_heads=3, mlp_ratio=2.0, num_classes=num_classes,
        embed_layer=embed, global_pool="avg", class_token=False,
    )  # fmt: skip
