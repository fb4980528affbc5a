"""The demo models: registered, hook-safe layer catalogs, seeded init, weight files, shipped accuracy offline."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from gcdash import models
from gcdash.data.demo import IMAGE_SIZE, generate
from gcdash.errors import GcdashError
from gcdash.models import demo
from gcdash.models.grids import feature_map
from gcdash.models.handle import weights_digest

NAMES = list(demo.ARCHITECTURES)
MAX_SHIPPED_BYTES = 20 * 2**20


def _input(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))


def test_registered_in_their_families():
    assert all(name in models.names() for name in NAMES)
    assert models.expand("demo-all") == ["demo-vgg", "demo-resnet", "demo-inception", "demo-xception", "demo-vit"]
    assert models.expand("demo-robust-all") == ["demo-resnet-robust"]  # kept out of the four stand-ins
    assert demo.ARCHITECTURES["demo-resnet-robust"].make is demo.ARCHITECTURES["demo-resnet"].make


@pytest.mark.parametrize("name", NAMES)
def test_catalog_blocks_run_in_catalog_order_once_each(name):
    handle = models.load(name, weights=None)
    calls: list[tuple[str, tuple[int, ...]]] = []

    def record(layer: str):
        def hook(_m, _i, out) -> None:  # a feature map as the engine reads it (a ViT's tokens on their grid)
            calls.append((layer, tuple(feature_map(layer, out, handle.net, (IMAGE_SIZE, IMAGE_SIZE)).shape)))

        return hook

    hooks = [module.register_forward_hook(record(layer)) for layer, module in handle.layers.items()]
    try:
        handle.net(_input())
    finally:
        for h in hooks:
            h.remove()
    assert [layer for layer, _ in calls] == list(handle.layers)
    assert all(len(shape) == 4 and shape[0] == 2 for _, shape in calls)
    assert handle.default_layer == list(handle.layers)[-1]
    assert dict(calls)[handle.default_layer][2:] == (IMAGE_SIZE // 8, IMAGE_SIZE // 8)


@pytest.mark.parametrize("name", NAMES)
def test_no_module_runs_twice_and_nothing_is_in_place(name):
    net = models.load(name, weights=None).net
    counts: Counter[int] = Counter()
    hooks = [m.register_forward_hook(lambda m, _i, _o: counts.update([id(m)])) for m in net.modules()]
    try:
        net(_input())
    finally:
        for h in hooks:
            h.remove()
    assert max(counts.values()) == 1
    assert not [m for m in net.modules() if getattr(m, "inplace", False)]
    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    assert len({id(m) for m in relus}) == len(relus)


@pytest.mark.parametrize("name", NAMES)
def test_random_init_is_seeded_and_leaves_the_global_rng_alone(name):
    state = torch.random.get_rng_state()
    a, b = models.load(name, weights=None), models.load(name, weights=None)
    assert torch.equal(state, torch.random.get_rng_state())
    assert a.digest == b.digest
    assert (a.input_size, a.crop, a.family) == ((IMAGE_SIZE, IMAGE_SIZE), False, demo.ARCHITECTURES[name].family)


def test_build_options():
    assert models.load("demo-vgg", weights=None, crop=True).crop is True
    assert models.load("demo-vgg", weights=None, seed=1).digest != models.load("demo-vgg", weights=None).digest
    with pytest.raises(GcdashError, match="fixed classes"):
        models.load("demo-vgg", weights=None, class_names="names.txt")


def test_weight_files_round_trip(tmp_path):
    net = demo.random_net("demo-resnet", seed=5)
    want = weights_digest(net)
    torch.save(net.state_dict(), tmp_path / "full.pt")
    torch.save({"state_dict": net.backbone.state_dict()}, tmp_path / "backbone.pth")
    from safetensors.torch import save_file

    save_file(net.state_dict(), str(tmp_path / "full.safetensors"))
    for file in ("full.pt", "backbone.pth", "full.safetensors"):
        assert models.load("demo-resnet", weights=tmp_path / file).digest == want


def test_bad_weight_files_are_user_errors(tmp_path, monkeypatch):
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(GcdashError, match="not a readable"):
        models.load("demo-vgg", weights=tmp_path / "junk.safetensors")
    with pytest.raises(GcdashError, match="not found"):
        models.load("demo-vgg", weights=tmp_path / "missing.pt")
    torch.save(demo.random_net("demo-vgg").state_dict(), tmp_path / "vgg.pt")
    with pytest.raises(GcdashError, match="does not fit"):
        models.load("demo-xception", weights=tmp_path / "vgg.pt")
    monkeypatch.setattr(demo, "WEIGHTS_DIR", tmp_path / "nowhere")
    with pytest.raises(GcdashError, match="train-demo"):
        models.load("demo-vgg")


def test_shipped_weights_are_small():
    files = [demo.weights_path(name) for name in NAMES]
    assert all(f.is_file() for f in files), "run `python -m gcdash train-demo`"
    assert sum(f.stat().st_size for f in files) <= MAX_SHIPPED_BYTES


@pytest.fixture(scope="module")
def fresh_test_images() -> tuple[torch.Tensor, torch.Tensor]:
    """200 test-split images beyond the first 2000 (which the reported figures used)."""
    samples = generate("test", range(5000, 5200))
    x = torch.from_numpy(np.stack(samples.images)).permute(0, 3, 1, 2).float() / 255
    return x, torch.from_numpy(samples.labels)


@pytest.mark.parametrize("name", NAMES)
def test_shipped_weights_load_offline_and_classify(name, fresh_test_images):
    handle = models.load(name)
    x, y = fresh_test_images
    with torch.no_grad():
        acc = (handle.net(x).argmax(1) == y).float().mean().item()
    floor = 0.85 if demo.ARCHITECTURES[name].adversarial else 0.95  # adversarial training costs clean accuracy
    assert acc >= floor, f"{name}: {acc:.3f} top-1 on 200 fresh test images"


def test_the_robust_model_holds_clearly_more_accuracy_under_pgd(fresh_test_images):
    """``demo-resnet-robust`` against ``demo-resnet`` on the same 200 fresh test images: PGD at 8/255 (the attack
    registry's, 10 steps) takes the standard model to almost nothing and leaves the robust one most of its top-1."""
    from gcdash import attacks

    x, y = fresh_test_images
    held = {}
    for name in ("demo-resnet", "demo-resnet-robust"):
        net = models.load(name).net
        adv = attacks.attack("pgd", net, x, y, 8 / 255)
        with torch.no_grad():
            held[name] = (net(adv).argmax(1) == y).float().mean().item()
    assert held["demo-resnet-robust"] >= held["demo-resnet"] + 0.3, held
