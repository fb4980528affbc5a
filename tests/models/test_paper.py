"""The paper's five architectures, built offline with random weights: forward, layer catalogs, CAM gradients,
FGSM; ImageNet weights from a (fake) cache and the one-line error when they are missing offline."""

from __future__ import annotations

import time
import urllib.error

import pytest
import torch
from torch import nn

from gcdash import models
from gcdash.attacks import fgsm
from gcdash.errors import GcdashError
from gcdash.models import pretrained
from gcdash.models.paper import GROUPS, PAPER_MODELS

# name: (input side, catalog size, default layer = the last conv stage = the catalog's last entry)
EXPECTED = {
    "vgg16": (224, 18, "block5.pool"),
    "resnet50": (224, 17, "layer4.2"),
    "resnet101": (224, 34, "layer4.2"),
    "inception_v3": (299, 16, "Mixed_7c"),
    "xception": (299, 15, "exit.conv4"),
}
CLASSES = 10


pytestmark = pytest.mark.usefixtures("flush_denormals")


@pytest.fixture(scope="module", params=list(EXPECTED))
def handle(request):
    """Each model built once (random weights, 10 classes) for all the tests that use it."""
    return models.load(request.param, weights=None, num_classes=CLASSES)


@pytest.fixture(scope="module")
def batch(handle) -> torch.Tensor:
    return torch.rand(1, 3, *handle.input_size, generator=torch.Generator().manual_seed(0))


def test_registered_as_paper_models():
    assert set(EXPECTED) <= set(models.names())
    assert GROUPS == {"deep": ["vgg16", "resnet50", "resnet101"], "wide": ["inception_v3", "xception"]}
    for name, spec in PAPER_MODELS.items():
        entry = models.entry(name)
        assert entry.family == "paper"
        assert f"paper group: {spec.group}" in entry.description


def test_handle_shape_and_catalog(handle):
    side, count, default = EXPECTED[handle.name]
    assert handle.input_size == (side, side)
    assert len(handle.layers) == count
    assert handle.default_layer == default == list(handle.layers)[-1]
    assert handle.class_names == [f"class {i}" for i in range(CLASSES)]  # a 10-way head: not ImageNet's, unnamed
    assert handle.family == "paper" and handle.crop
    assert not any(getattr(m, "inplace", False) for m in handle.net.modules()), "in-place modules remain"


@pytest.fixture(scope="module")
def logits(handle, batch) -> torch.Tensor:
    with torch.no_grad():
        return handle.net(batch)


def test_forward_returns_plain_logits(logits):
    assert type(logits) is torch.Tensor and logits.shape == (1, CLASSES)
    assert torch.isfinite(logits).all()


def test_every_layer_runs_once_in_order_and_has_a_gradient(handle, batch):
    """One forward + one backward over the whole catalog: hooks fire once each, in catalog order; no output is
    edited in place after its hook saw it; ∂S_c/∂A exists and is finite for every layer."""
    calls: list[str] = []
    outputs: dict[str, tuple[torch.Tensor, int]] = {}

    def recorder(name):
        def hook(module, inputs, output):
            calls.append(name)
            outputs[name] = (output, output._version)

        return hook

    hooks = [m.register_forward_hook(recorder(n)) for n, m in handle.layers.items()]
    try:
        logits = handle.net(batch.clone().requires_grad_(True))
    finally:
        for h in hooks:
            h.remove()
    assert calls == list(handle.layers)
    assert all(out.ndim == 4 for out, _ in outputs.values())
    assert [n for n, (out, version) in outputs.items() if out._version != version] == []
    score = logits[0, logits[0].argmax()]
    grads = torch.autograd.grad(score, [out for out, _ in outputs.values()])
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(bool(g.abs().sum() > 0) for g in grads) >= len(grads) - 1


def test_pytorch_grad_cam_on_a_shallow_and_the_default_layer(handle, batch):
    from pytorch_grad_cam import GradCAM

    names = [list(handle.layers)[len(handle.layers) // 2], handle.default_layer]
    try:
        with GradCAM(model=handle.net, target_layers=[handle.layers[n] for n in names]) as cam:
            maps = cam(input_tensor=batch.clone(), targets=None)
            assert len(cam.activations_and_grads.gradients) == 2
    finally:
        handle.net.zero_grad(set_to_none=True)
    assert maps.shape == (1, *handle.input_size)
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6


def test_fgsm_runs(handle, batch, logits):
    """Towards the least likely class: random nets can saturate (softmax exactly one-hot), which makes the
    loss gradient of their own top-1 class exactly zero."""
    eps = 8 / 255
    adv = fgsm(handle.net, batch, logits.argmin(dim=1), eps=[0.0, eps])
    assert adv.shape == (2, *batch.shape)
    assert torch.equal(adv[0], batch)
    assert (adv[1] - batch).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert not torch.equal(adv[1], batch)


def test_random_init_is_seeded():
    a = models.load("xception", weights=None, num_classes=3, seed=1)
    b = models.load("xception", weights=None, num_classes=3, seed=1)
    c = models.load("xception", weights=None, num_classes=3, seed=2)
    assert a.digest == b.digest != c.digest


def test_imagenet_needs_1000_classes():
    with pytest.raises(GcdashError, match="1000 classes"):
        models.load("resnet50", weights="imagenet", num_classes=7)


# --- ImageNet weights: from the cache, and the error offline -------------------------------------------------


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Torch hub and HF caches in an empty folder, and no network: nothing cached can be found or fetched."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv(pretrained.OFFLINE_ENV, "1")
    return tmp_path


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(EXPECTED))
def test_offline_without_cache_is_one_clear_line(empty_caches, name, monkeypatch):
    import socket

    def no_network(*args, **kwargs):  # offline means no connection is even tried (no clock: CI may be busy)
        raise AssertionError("a network connection was attempted while offline")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(GcdashError) as err:
        models.load(name)  # "default" = ImageNet for the paper models
    message = str(err.value)
    assert "\n" not in message
    assert f"ImageNet weights for {name} are not cached" in message
    assert str(empty_caches / "torch" / "hub" / "checkpoints") in message
    assert "--weights random" in message  # an option the CLI and the sidebar accept


@pytest.mark.timeout(60)
def test_failed_download_is_one_clear_line(empty_caches, monkeypatch):
    import torchvision.models._api as api

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(pretrained, "reachable", lambda url, timeout=0: True)
    monkeypatch.setattr(api, "load_state_dict_from_url", no_network)
    with pytest.raises(GcdashError, match=r"resnet50-0676ba61\.pth.*URLError"):
        models.load("resnet50", weights="imagenet")


@pytest.mark.timeout(30)
def test_probe_is_bounded(monkeypatch):
    """A refused port and a server that accepts but never answers both give False quickly (loopback only)."""
    import socket

    monkeypatch.delenv(pretrained.OFFLINE_ENV, raising=False)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts the TCP handshake, never replies
        start = time.monotonic()
        assert not pretrained.reachable("http://127.0.0.1:9/weights.pth", timeout=0.5)  # discard port: refused
        assert not pretrained.reachable(f"http://127.0.0.1:{silent.getsockname()[1]}/weights.pth", timeout=0.5)
        # Two probes of 0.5 s each join within 2 s apiece: a generous bound that only an unbounded probe (the bug)
        # can break, however busy the machine (the timeout mark stops a hang).
        assert time.monotonic() - start < 20


def _save_cached(module: nn.Module, url: str) -> dict[str, torch.Tensor]:
    path = pretrained.hub_checkpoint_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = module.state_dict()
    torch.save(state, path)
    return state


def _assert_loaded(handle, state, ignore=()):
    loaded = handle.net.backbone.state_dict()
    expected = {k: v for k, v in state.items() if not k.startswith(ignore)}
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())
    assert handle.class_names[:3] == ["tench", "goldfish", "great white shark"]
    assert len(handle.class_names) == 1000


@pytest.mark.timeout(120)
def test_imagenet_inception_from_torch_hub_cache(empty_caches):
    """torchvision's file (with its auxiliary head) is read from the cache; the eval net drops the aux head."""
    import torchvision

    weights = torchvision.models.Inception_V3_Weights.IMAGENET1K_V1
    reference = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    state = _save_cached(reference, weights.url)
    handle = models.load("inception_v3")
    _assert_loaded(handle, state, ignore=("AuxLogits.",))
    assert handle.net.backbone.transform_input and handle.net.backbone.AuxLogits is None


@pytest.mark.timeout(120)
def test_imagenet_xception_from_timm_cache(empty_caches):
    import timm

    reference = timm.create_model("legacy_xception")
    state = _save_cached(reference, reference.pretrained_cfg["url"])
    handle = models.load("xception", weights="imagenet")
    _assert_loaded(handle, state)
    assert tuple(handle.net.mean.flatten().tolist()) == (0.5, 0.5, 0.5)  # timm's pretrained cfg, not ImageNet's


def test_corrupt_cached_file_says_delete_it(empty_caches):
    import torchvision

    path = pretrained.hub_checkpoint_path(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half a download")
    with pytest.raises(GcdashError, match=r"could not be read .*delete the file"):
        models.load("resnet50")


def test_weights_that_are_neither_a_name_nor_a_file():
    with pytest.raises(GcdashError, match="weights for vgg16: file not found: imagenet21k") as err:
        models.load("vgg16", weights="imagenet21k")
    assert "None" not in str(err.value)  # no Python words in what a user reads


def test_offline_message_for_weights_on_the_hugging_face_hub(empty_caches, monkeypatch):
    """timm configs that name an HF hub repo (newer timm versions) point at the HF cache instead."""
    from types import SimpleNamespace

    from gcdash.models.paper import TimmSource

    monkeypatch.setattr(TimmSource, "_cfg", lambda self: SimpleNamespace(hf_hub_id="timm/legacy_xception.tf_in1k"))
    with pytest.raises(GcdashError, match=r"huggingface\.co cannot be reached: .*models--timm--legacy_xception"):
        models.load("xception")


def test_weights_random_is_a_seeded_random_init(flush_denormals):
    from gcdash import models

    a, b = models.load("resnet50", weights="random"), models.load("resnet50", weights=None)
    assert a.digest == b.digest  # the same seeded init as weights=None
    assert a.class_names[:2] == ["tench", "goldfish"]  # a random ImageNet head is read in ImageNet's order
