"""Builders of tiny random vision transformers (timm's own classes, small configs) for the tests: used through
gcdash's own-code route (``py:tests/models/tiny_transformers.py:vit``), so they also test that route."""

from __future__ import annotations

import torch
from timm.models.deit import VisionTransformerDistilled
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer

from gcdash.models.own import OwnModel

SIZE = (32, 32)
VIT = dict(img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=3, num_classes=10)


def _seeded(make):
    torch.manual_seed(0)
    return OwnModel(make(), input_size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def vit() -> OwnModel:
    """ViT: a class token, a 4×4 patch grid, four blocks."""
    return _seeded(lambda: VisionTransformer(**VIT))


def deit() -> OwnModel:
    """DeiT: a class token and a distillation token (two prefix tokens), two heads."""
    return _seeded(lambda: VisionTransformerDistilled(**VIT))


def vit_registers() -> OwnModel:
    """A ViT with four register tokens beside its class token (five prefix tokens)."""
    return _seeded(lambda: VisionTransformer(**VIT, reg_tokens=4))


def swin() -> OwnModel:
    """Swin: three stages of channels-last (N, h, w, C) maps, 16² → 8² → 4²."""
    return _seeded(lambda: SwinTransformer(
        img_size=32, patch_size=2, window_size=4, embed_dim=24, depths=(1, 1, 1), num_heads=(1, 2, 4), num_classes=10
    ))  # fmt: skip
