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
SEEDS = 3  # re-initialisations the floor is taken over: its spread is the band the pages draw


def groups(handle: ModelHandle) -> list[tuple[str, list[str]]]:
    """The cascade, top first: ``(step name, qualified names of the modules it re-initialises)`` for the head (what
    runs after the deepest catalog layer), then each catalog layer from the deepest with the modules that run
    between it and the layer below (so a catalog of parameter-free ReLU or pooling outputs, as VGG's, still gets
    one step per layer), then what runs before the shallowest (``all``). Steps with nothing to re-initialise are
    left out; only modules with a ``reset_parameters`` count."""
    resettable = [name for name, m in handle.net.named_modules() if hasattr(m, "reset_parameters")]
    events = _forward_events(handle, resettable)
    layers = list(handle.layers)
    owner: dict[str, str] = {}
    for i, (kind, name) in enumerate(events):
        if kind == "module" and name not in owner:
            after = next((n for k, n in events[i:] if k == "layer"), HEAD)
            owner[name] = after
    steps = [(HEAD, [n for n in resettable if owner.get(n) == HEAD])]
    steps += [(layer, [n for n in resettable if owner.get(n) == layer]) for layer in reversed(layers)]
    steps += [(ALL, [n for n in resettable if n not in owner])]  # never ran: left for the last step
    return [(name, members) for name, members in steps if members]


def _forward_events(handle: ModelHandle, names: Sequence[str]) -> list[tuple[str, str]]:
    """The order in which one forward pass finishes the modules ``names`` and the catalog layers:
    ``("module", name)`` / ``("layer", name)``, first finish of each (a forward hook fires when its module is done,
    so a layer's own parameters come before the layer itself)."""
    events: list[tuple[str, str]] = []
    with handle.lock:  # hooks on a model other sessions may be running
        hooks = [m.register_forward_hook(lambda *_, n=n: events.append(("layer", n))) for n, m in handle.layers.items()]
        for name in names:
            module = handle.net.get_submodule(name)
            hooks.append(module.register_forward_hook(lambda *_, n=name: events.append(("module", n))))
        try:
            with torch.no_grad():
                h, w = handle.input_size
                handle.net(torch.zeros(1, 3, h, w, device=handle.device))
        finally:
            for hook in hooks:
                hook.remove()
    return list(dict.fromkeys(events))


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
    # digest "": computed from the new weights, so the copy never shares the trained model's cache cells
    return replace(
        handle, net=net.eval(), layers=layers, name=f"{handle.name} (randomised)", lock=threading.RLock(), digest=""
    )


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


def _trained(
    handle: ModelHandle, samples: Samples, names: Sequence[str], method: str, params: dict, batch_size: int
) -> tuple[list[torch.Tensor], list[dict[str, np.ndarray]], list[list[int]]]:
    """Inputs, the trained model's maps at the input size, and the classes they explain, batch by batch."""
    xs, maps, targets = [], [], []
    for start in range(0, len(samples), batch_size):
        x = handle.preprocess(samples.images[start : start + batch_size])
        result = cams.explain(handle, x, list(names), method, **params)
        xs.append(x)
        targets.append(result.targets.tolist())
        maps.append({n: cams.upsample(result.maps[n], tuple(x.shape[-2:])) for n in names})
    return xs, maps, targets


def _against(model: ModelHandle, xs, trained, targets, names, method: str, params: dict, step: str, label: str):
    other = [cams.compute(model, x, list(names), method, t, **params) for x, t in zip(xs, targets)]
    return _rows(label, step, _stack(trained), _stack(other))


def cascade(
    handle: ModelHandle,
    samples: Samples,
    layers: str | Sequence[str] | None = "all",
    method: str = "gradcam",
    seed: int = 0,
    batch_size: int = 32,
    params: dict | None = None,
) -> pd.DataFrame:
    """``SANITY_COLUMNS`` rows: for every cascade step and every layer, the mean NISSIM between the trained
    model's clean map and the randomised model's map of the same image and class (the trained top-1), under
    ``method`` with ``params``. Pairs with an all-zero map are left out and counted in ``zero_rate``."""
    names = handle.resolve_layers(layers)
    params = params or {}
    xs, trained, targets = _trained(handle, samples, names, method, params, batch_size)
    rows, done = [], []
    for step, members in groups(handle):
        done += members
        model = randomised(handle, done, seed)
        rows += _against(model, xs, trained, targets, names, method, params, step, handle.name)
    return pd.DataFrame(rows, columns=SANITY_COLUMNS)


def floor(
    handle: ModelHandle,
    samples: Samples,
    layers: Sequence[str],
    method: str = "gradcam",
    batch_size: int = 32,
    params: dict | None = None,
    seeds: int = SEEDS,
) -> pd.DataFrame:
    """The last cascade step only (every weight re-initialised): the NISSIM of unrelated maps per layer, over
    ``seeds`` re-initialisations (seeds 0, 1, …): ``nissim`` the mean of the seeds' MODs (each over the images),
    ``floor_low`` / ``floor_high`` the lowest and highest of them (the band Compare and Layers draw), ``seeds``.
    Cost: one CAM pass per image for the trained model and one per seed."""
    if seeds < 1:
        raise ValueError(f"seeds must be ≥ 1, got {seeds}")
    params = params or {}
    steps = groups(handle)
    modules = [n for _, members in steps for n in members]
    xs, trained, targets = _trained(handle, samples, layers, method, params, batch_size)
    runs = [
        pd.DataFrame(_against(randomised(handle, modules, seed), xs, trained, targets, layers, method, params,
                              steps[-1][0], handle.name), columns=SANITY_COLUMNS)
        for seed in range(seeds)
    ]  # fmt: skip
    table = runs[0].copy()
    levels = np.stack([run["nissim"].to_numpy(np.float64) for run in runs])
    table["nissim"] = levels.mean(axis=0)
    table["floor_low"], table["floor_high"] = levels.min(axis=0), levels.max(axis=0)
    table["seeds"] = seeds
    return table


def _stack(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
