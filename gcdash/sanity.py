"""The sanity floor: how far apart are two maps that share nothing? (Adebayo et al., "Sanity checks for saliency
maps", NeurIPS 2018.)

A trained model's clean map at a layer is compared (NISSIM, as MOD is) with the map of the same image and class
from the same architecture whose weights are re-initialised in cascade from the top: first the head (everything
after the deepest catalog layer), then each catalog layer from the deepest down, then whatever is left (the stem):
step ``randomised = L`` has every module from the top down to and including layer ``L`` re-initialised. The last
step (the shallowest catalog layer, or ``all`` where modules sit below it) is a model that learned nothing: its
NISSIM to the trained map is the level of unrelated maps, the floor a MOD is read against (a MOD near it means the
attack left nothing of the explanation).

Re-initialisation is each module's own ``reset_parameters()`` (PyTorch's default init; batch norm back to
weight 1, bias 0, running mean 0, var 1) under a fixed seed. Cost: one CAM pass per image for the trained model
and one per cascade step (``python -m gcdash sanity``); :func:`floor` makes two.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from torch import nn

from gcdash import cams, metrics
from gcdash.data import Samples
from gcdash.models.handle import ModelHandle

HEAD, ALL = "head", "all"
SANITY_COLUMNS = ["model", "layer", "randomised", "n", "nissim", "nissim_std", "zero_rate"]


def groups(handle: ModelHandle) -> list[tuple[str, list[str]]]:
    """The cascade, top first: ``(step name, qualified names of the modules it re-initialises)`` for the head, each
    catalog layer from the deepest, and the rest (``all``); steps with nothing to re-initialise are left out. Only
    modules with a ``reset_parameters`` count."""
    qualname = {id(m): name for name, m in handle.net.named_modules()}
    owned: dict[str, str] = {}
    for layer, module in handle.layers.items():  # shallow → deep: a deeper layer claims what it contains
        for sub in module.modules():
            owned[qualname[id(sub)]] = layer
    resettable = [name for name, m in handle.net.named_modules() if hasattr(m, "reset_parameters")]
    deepest_end = _forward_order(handle, resettable)
    by_layer = {layer: [n for n in resettable if owned.get(n) == layer] for layer in handle.layers}
    free = [n for n in resettable if n not in owned]
    head = [n for n in free if deepest_end[n]]
    stem = [n for n in free if not deepest_end[n]]
    steps = [(HEAD, head)] + [(layer, by_layer[layer]) for layer in reversed(handle.layers)] + [(ALL, stem)]
    return [(name, members) for name, members in steps if members]


def _forward_order(handle: ModelHandle, names: Sequence[str]) -> dict[str, bool]:
    """For each module name: does the forward pass run it after the deepest catalog layer (is it in the head)?"""
    seen: list[str] = []
    deepest = handle.layers[next(reversed(handle.layers))]
    with handle.lock:  # hooks on a model other sessions may be running
        hooks = [deepest.register_forward_hook(lambda *_: seen.append("<deepest>"))]
        for name in names:
            module = handle.net.get_submodule(name)
            hooks.append(module.register_forward_hook(lambda *_, n=name: seen.append(n)))
        try:
            with torch.no_grad():
                h, w = handle.input_size
                handle.net(torch.zeros(1, 3, h, w, device=handle.device))
        finally:
            for hook in hooks:
                hook.remove()
    cut = seen.index("<deepest>") if "<deepest>" in seen else len(seen)
    after = set(seen[cut + 1 :]) - set(seen[:cut])
    return {name: name in after for name in names}


def randomised(handle: ModelHandle, modules: Sequence[str], seed: int = 0) -> ModelHandle:
    """A copy of ``handle`` with ``modules`` (qualified names) re-initialised under ``seed``; the original is
    untouched."""
    with handle.lock:  # not mid-pass of another session (its hooks would be copied along)
        net = copy.deepcopy(handle.net)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for name in modules:
            module = net.get_submodule(name)
            module.reset_parameters()
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
    qualname = {id(m): name for name, m in handle.net.named_modules()}
    layers = {layer: net.get_submodule(qualname[id(m)]) for layer, m in handle.layers.items()}
    return replace(handle, net=net.eval(), layers=layers, name=f"{handle.name} (randomised)", lock=threading.RLock())


def _maps(handle: ModelHandle, x: torch.Tensor, layers: Sequence[str], method: str, targets) -> dict[str, np.ndarray]:
    return cams.compute(handle, x, list(layers), method, targets)


def _rows(model: str, step: str, trained: dict, other: dict) -> list[dict]:
    rows = []
    for layer, a in trained.items():
        b = other[layer]
        empty = (a.reshape(len(a), -1).max(axis=1) <= 0) | (b.reshape(len(b), -1).max(axis=1) <= 0)
        scores = metrics.dissimilarity("nissim", a[~empty], b[~empty]) if (~empty).any() else np.array([])
        rows.append({
            "model": model, "layer": layer, "randomised": step, "n": int((~empty).sum()),
            "nissim": float(scores.mean()) if scores.size else np.nan,
            "nissim_std": float(scores.std(ddof=0)) if scores.size else np.nan, "zero_rate": float(empty.mean()),
        })  # fmt: skip
    return rows


def cascade(
    handle: ModelHandle,
    samples: Samples,
    layers: str | Sequence[str] | None = "all",
    method: str = "gradcam",
    seed: int = 0,
    batch_size: int = 32,
) -> pd.DataFrame:
    """``SANITY_COLUMNS`` rows: for every cascade step and every layer, the mean NISSIM between the trained
    model's clean map and the randomised model's map of the same image and class (the trained top-1). Pairs with
    an all-zero map are left out and counted in ``zero_rate``."""
    names = handle.resolve_layers(layers)
    steps, done, rows = groups(handle), [], []
    parts = [range(i, min(i + batch_size, len(samples))) for i in range(0, len(samples), batch_size)]
    x_parts = [handle.preprocess([samples.images[i] for i in part]) for part in parts]
    trained, targets = [], []
    for x in x_parts:
        result = cams.explain(handle, x, names, method)
        targets.append(result.targets.tolist())
        trained.append({n: cams.upsample(result.maps[n], tuple(x.shape[-2:])) for n in names})
    for step, members in steps:
        done += members
        model = randomised(handle, done, seed)
        other = [_maps(model, x, names, method, t) for x, t in zip(x_parts, targets)]
        rows += _rows(handle.name, step, _stack(trained), _stack(other))
    return pd.DataFrame(rows, columns=SANITY_COLUMNS)


def floor(handle: ModelHandle, samples: Samples, layers: Sequence[str], method: str = "gradcam") -> pd.DataFrame:
    """The last cascade step only (every weight re-initialised): the NISSIM of unrelated maps per layer."""
    steps = groups(handle)
    model = randomised(handle, [n for _, members in steps for n in members])
    x = handle.preprocess(samples.images)
    result = cams.explain(handle, x, list(layers), method)
    trained = {n: cams.upsample(result.maps[n], tuple(x.shape[-2:])) for n in layers}
    other = _maps(model, x, layers, method, result.targets.tolist())
    return pd.DataFrame(_rows(handle.name, steps[-1][0], trained, other), columns=SANITY_COLUMNS)


def _stack(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
