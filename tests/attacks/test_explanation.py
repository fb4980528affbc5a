"""The explanation attacks (expl-topk, expl-mass): they keep the clean top-1, move the real model's Grad-CAM map
more than FGSM on the images FGSM did not flip, the β-softplus surrogate tends to the ReLU network, the layer is
bound to the model's, and the passes declared are the passes run."""

import pytest
import torch

from gcdash import attacks, cams, metrics, models
from gcdash.attacks.explanation import centre, deepest_feature_layer, grad_cam, smooth_relu
from gcdash.errors import GcdashError

EXPL = ["expl-topk", "expl-mass"]


@pytest.fixture(scope="module")
def demo():
    """demo-resnet with 32 demo images and its clean predictions."""
    from gcdash import data

    handle = models.load("demo-resnet")
    x = handle.preprocess(data.load("demo", n=32).images)
    with torch.no_grad():
        return handle, x, handle.net(x).argmax(dim=1)


def maps_and_pred(handle, x, classes):
    """The engine's Grad-CAM maps at the default layer (at the input size) and the top-1 at ``x``."""
    out = cams.explain(handle, x, None, "gradcam", classes)
    raw = torch.from_numpy(out.maps[handle.default_layer])
    return cams.upsample_tensor(raw, tuple(x.shape[-2:])), out.logits.argmax(dim=1)


@pytest.mark.parametrize("name", EXPL)
def test_keeps_the_prediction_and_moves_the_map_more_than_fgsm_where_fgsm_kept_it(demo, name):
    handle, x, pred = demo
    layer = attacks.get(name).bind(handle, attacks.get(name).params())["layer"]
    clean, _ = maps_and_pred(handle, x, pred)
    moved, kept = {}, {}
    for attack, params in [(name, {"layer": layer}), ("fgsm", {})]:
        adv = attacks.attack(attack, handle.net, x, pred, 8 / 255, **params)
        maps, top1 = maps_and_pred(handle, adv, pred)
        moved[attack] = torch.from_numpy(metrics.dissimilarity("nissim", clean, maps))
        kept[attack] = top1 == pred
    assert kept[name].float().mean() >= 0.95
    both = kept["fgsm"] & kept[name]
    assert both.sum() >= 2, "FGSM should keep a few demo predictions at 8/255"
    assert moved[name][both].mean() > moved["fgsm"][both].mean()
    assert moved[name][kept[name]].mean() > moved["fgsm"][kept["fgsm"]].mean()


@pytest.mark.parametrize("name", EXPL)
def test_stays_in_the_ball_and_the_range_and_eps_zero_is_the_image(tiny_handle, batch, name):
    x, y = batch
    adv = attacks.attack(name, tiny_handle.net, x, y, 4 / 255, steps=3, layer="block3")
    assert (adv - x).abs().max() <= 4 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert torch.equal(attacks.attack(name, tiny_handle.net, x, y, 0.0, layer="block3"), x)


def test_beta_to_infinity_recovers_the_relu_networks_gradients(tiny_handle, batch):
    x, _ = batch
    net = tiny_handle.net

    def gradient(beta):
        xg = x.clone().requires_grad_(True)
        with smooth_relu(beta):
            score = net(xg).max(dim=1).values.sum()
        return torch.autograd.grad(score, xg)[0]

    relu = gradient(None)
    error = [float((gradient(beta) - relu).norm() / relu.norm()) for beta in (10.0, 1e3, 1e5, 1e7)]
    assert error == sorted(error, reverse=True) and error[0] > 0.05 and error[-1] < 1e-3, error


def test_the_surrogate_has_a_second_order_gradient_the_relu_network_lacks(tiny_handle, batch):
    """Grad-CAM's weights are first derivatives: through ReLUs (piecewise linear) their own gradient is zero; with
    softplus it is not, which is what lets the attack steer them."""
    x, _ = batch
    net, module = tiny_handle.net, tiny_handle.layers["block2"]  # block3's ReLU lies between it and the head

    def weight_gradient(beta):
        xg = x[:4].clone().requires_grad_(True)
        found = {}
        handle = module.register_forward_hook(lambda _m, _i, out: found.setdefault("a", out))
        with smooth_relu(beta):
            logits = net(xg)
            (g,) = torch.autograd.grad(logits[:, 0].sum(), found["a"], create_graph=True)
            out = torch.autograd.grad(g.mean(dim=(2, 3)).sum(), xg, allow_unused=True)[0]
        handle.remove()
        return torch.zeros_like(xg) if out is None else out

    assert weight_gradient(None).abs().max() < 1e-6 < weight_gradient(10.0).abs().max()


def test_grad_cam_here_is_the_engines_grad_cam(tiny_handle, batch):
    x, _ = batch
    ours, logits = grad_cam(tiny_handle.net, x.clone().requires_grad_(True), "block3",
                            tiny_handle.layers["block3"], None, create_graph=False)  # fmt: skip
    engine = cams.explain(tiny_handle, x, "block3", "gradcam")
    torch.testing.assert_close(ours.detach(), torch.from_numpy(engine.maps["block3"]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits.detach(), engine.logits)


def test_centre_of_mass_is_its_formula():
    dist = torch.zeros(1, 4, 5, dtype=torch.float64)
    dist[0, 1, 3], dist[0, 3, 0] = 0.75, 0.25
    torch.testing.assert_close(centre(dist), torch.tensor([[1.5, 2.25]], dtype=torch.float64))


@pytest.mark.parametrize("name", EXPL)
def test_passes_counted_are_passes_declared(tiny_handle, batch, name):
    x, y = batch
    calls = []
    hook = tiny_handle.net.register_forward_hook(lambda _m, inputs, _o: calls.append(len(inputs[0])))
    try:
        attacks.attack(name, tiny_handle.net, x, y, [4 / 255, 8 / 255], steps=3, layer="block3")
    finally:
        hook.remove()
    method = attacks.get(name)
    assert sum(calls) == method.passes(2, method.params(steps=3)) * len(x) == (2 * 3 + 1) * 2 * len(x)


def test_the_layer_is_bound_to_the_models_and_a_wrong_one_is_one_line(tiny_handle):
    method = attacks.get("expl-topk")
    assert method.bind(tiny_handle, method.params())["layer"] == tiny_handle.default_layer
    assert method.bind(tiny_handle, method.params(layer="block2"))["layer"] == "block2"
    with pytest.raises(GcdashError, match="unknown layer 'nope'"):
        method.bind(tiny_handle, method.params(layer="nope"))
    assert deepest_feature_layer(tiny_handle.net, torch.rand(1, 3, 32, 32)) == "block3"


@pytest.mark.parametrize(
    "params, message",
    [({"steps": 0}, "steps must be ≥ 1"), ({"beta": 0}, "beta must be a positive"),
     ({"share": 0}, "share must be in"), ({"layer": " "}, "at one layer"), ({"layer": "all"}, "at one layer"),
     ({"layer": "a,b"}, "at one layer")],
)  # fmt: skip
def test_bad_parameters_are_one_line(params, message):
    with pytest.raises(GcdashError, match=message):
        attacks.get("expl-topk").params(**params)


def test_a_non_finite_surrogate_gradient_is_refused_not_walked_on(tiny_handle, batch, monkeypatch):
    from gcdash.attacks import explanation

    x, y = batch
    nan = lambda self, net, x, *args: torch.full_like(x, float("nan"))  # noqa: E731
    monkeypatch.setattr(explanation.ExplanationAttack, "_smoothed_gradient", nan)
    with pytest.raises(GcdashError, match="not finite for 16 image"):
        attacks.attack("expl-topk", tiny_handle.net, x, y, 4 / 255, steps=2, layer="block3")


def test_the_maps_own_relu_is_not_smoothed(tiny_handle, batch):
    from gcdash.attacks import explanation

    x, _ = batch
    module = tiny_handle.layers["block3"]
    counted = []

    class Counting(explanation.SoftplusReLU):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            counted.append(func in explanation._RELUS)
            return super().__torch_function__(func, types, args, kwargs)

    with Counting(10.0), torch.no_grad():
        tiny_handle.net(x)
    network, counted[:] = sum(counted), []
    with Counting(10.0):
        grad_cam(tiny_handle.net, x.clone().requires_grad_(True), "block3", module, None, create_graph=True)
    assert sum(counted) == network == 3  # the network's three ReLUs, not the map's
