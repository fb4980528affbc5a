"""Vision transformers (gcdash.models.grids, the made catalogs): token and channels-last outputs read as feature
maps give the maps pytorch-grad-cam gives with the matching ``reshape_transform`` (written here from its tutorials,
not from gcdash), for every method the library runs with one, at the default layer and two others of a tiny random
ViT, DeiT, ViT with registers and Swin; the catalogs of timm's and torchvision's own ViT/DeiT/Swin; one pass for
every layer; a layer with no gradient refused by name."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from gcdash import cams, models
from gcdash.cams.library import LIBRARY_METHODS
from gcdash.errors import GcdashError
from gcdash.models import own

BUILDERS = Path(__file__).parent / "tiny_transformers.py"
PREFIX = {"vit": 1, "deit": 2, "vit_registers": 5}  # tokens before the 4×4 patch grid


def _tokens_to_grid(prefix: int):
    """pytorch-grad-cam's ViT tutorial ``reshape_transform``, with ``prefix`` tokens dropped instead of one."""

    def reshape(tensor: torch.Tensor) -> torch.Tensor:
        result = tensor[:, prefix:, :].reshape(tensor.size(0), 4, 4, tensor.size(2))
        return result.transpose(2, 3).transpose(1, 2)

    return reshape


def _channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's Swin ``reshape_transform`` for timm ≥ 0.9 stages, which are already (N, h, w, C)."""
    return tensor.permute(0, 3, 1, 2)


def _load(kind: str):
    name = f"py:{BUILDERS}:{kind}"
    own.trust(name)
    return models.load(name)


@pytest.fixture(scope="module")
def handles():
    return {kind: _load(kind) for kind in (*PREFIX, "swin")}


@pytest.fixture(scope="module")
def x():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _reference(method, net, layer, x, reshape):
    cam = method.cam_class(net, [net.backbone.get_submodule(layer)], reshape_transform=reshape)
    with torch.random.fork_rng():
        return cam(x, None)


def assert_equal_to_the_library(ours, method, handle, layer, x, reshape):
    """Equal to pytorch-grad-cam's map to 1e-5; where float32 cannot resolve the map (HiResCAM on a random Swin's
    last stage: the channel sum cancels to ~1e-6 of its terms, and the library's own float32 map is 2.5e-3 from its
    float64 map), no further than the library from the library's float64 map."""
    reference = _reference(method, handle.net, layer, x, reshape)
    if np.abs(ours - reference).max() <= 1e-5:
        return
    net64 = copy.deepcopy(handle.net).double()
    truth = _reference(method, net64, layer, x.double(), reshape)
    library_error = np.abs(reference - truth).max()
    assert library_error > 1e-4, f"{method.name} at {layer}: not equal to the library and not ill-conditioned"
    assert np.abs(ours - truth).max() <= 1.5 * library_error


@pytest.mark.parametrize("method", LIBRARY_METHODS, ids=lambda m: m.name)
@pytest.mark.parametrize("kind", [*PREFIX, "swin"])
def test_every_library_method_equals_pytorch_grad_cam_with_its_reshape_transform(handles, x, kind, method):
    handle = handles[kind]
    layers = list(handle.layers)
    chosen = [layers[0], layers[1], handle.default_layer]
    ours = cams.compute(handle, x, chosen, method.name)
    reshape = _channels_last if kind == "swin" else _tokens_to_grid(PREFIX[kind])
    for layer in chosen:
        assert_equal_to_the_library(ours[layer], method, handle, layer, x, reshape)


@pytest.mark.parametrize("kind", ["vit", "swin"])
@pytest.mark.parametrize("method", ["smoothgradcampp", "intgradcam"])
def test_the_multi_pass_methods_give_maps_on_transformers(handles, x, kind, method):
    handle = handles[kind]
    maps = cams.compute(handle, x, "all", method, **({"samples": 3} if method == "smoothgradcampp" else {"steps": 4}))
    assert list(maps) == list(handle.layers)
    assert all(m.shape == (3, 32, 32) and np.isfinite(m).all() and m.max() > 0 for m in maps.values())


def test_one_pass_taps_every_layer_of_a_transformer(handles, x):
    handle, calls = handles["vit"], []
    hook = handle.net.register_forward_hook(lambda *_: calls.append(1))
    try:
        maps = cams.compute(handle, x, "all", "gradcam")
    finally:
        hook.remove()
    assert list(maps) == ["blocks.0", "blocks.1", "blocks.2", "blocks.3.norm1"] and len(calls) == 1


def test_the_last_block_of_a_class_token_model_is_refused_by_name_not_drawn_blank(handles, x):
    handle = handles["deit"]
    with pytest.raises(GcdashError, match=r"layer 'blocks.3' gets no gradient .* choose an earlier layer"):
        cams.compute(handle, x, "blocks.3", "gradcam")


def test_a_model_whose_head_ignores_its_input_is_said_as_such_not_blamed_on_a_layer(handles, x):
    handle = own.described(f"py:{BUILDERS}:vit")  # a fresh copy: the shared handle stays as it was
    torch.nn.init.zeros_(handle.net.head.weight)  # torchvision's random ViT: a zero-initialised head
    zeroed = models.load(f"py:{BUILDERS}:vit")
    zeroed.net.backbone.head.load_state_dict(handle.net.head.state_dict())
    with pytest.raises(GcdashError, match=r"no gradient at any of the 4 layers .* zero-initialised head"):
        cams.compute(zeroed, x, "all", "gradcam")


def test_a_layer_that_is_no_feature_map_is_refused_in_one_line(handles, x):
    with pytest.raises(GcdashError, match=r"'blocks.0.attn.q_norm' outputs \(3, 3, 17, 16\), which is not a feature"):
        cams.compute(handles["vit"], x, "blocks.0.attn.q_norm", "gradcam")  # (N, heads, tokens, head width)
    with pytest.raises(GcdashError, match=r"unknown layer 'blocks.9' for model py:.* \(or any module by its dotted"):
        cams.compute(handles["vit"], x, "blocks.9", "gradcam")


LIBRARY_CATALOGS = {
    "timm:vit_tiny_patch16_224": [f"blocks.{i}" for i in range(11)] + ["blocks.11.norm1"],
    "timm:deit_tiny_distilled_patch16_224": [f"blocks.{i}" for i in range(11)] + ["blocks.11.norm1"],
    "timm:swin_tiny_patch4_window7_224": ["layers.0", "layers.1", "layers.2", "layers.3"],
    "tv:vit_b_16": [f"encoder.layers.encoder_layer_{i}" for i in range(11)] + ["encoder.layers.encoder_layer_11.ln_1"],
}


@pytest.mark.parametrize("name", list(LIBRARY_CATALOGS))
def test_library_transformers_are_catalogued_shallow_to_deep_with_a_default_that_has_gradients(name):
    handle = models.load(name, weights="random")
    assert list(handle.layers) == LIBRARY_CATALOGS[name] and handle.default_layer == LIBRARY_CATALOGS[name][-1]
    if name.startswith("timm:"):  # torchvision zero-initialises ViT's head: its random model has no gradient at all
        x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        maps = cams.compute(handle, x, [handle.default_layer, LIBRARY_CATALOGS[name][2]], "gradcam")
        assert all(m.shape == (1, 224, 224) and m.max() > 0 for m in maps.values())
