"""User checkpoints: state dicts of fine-tuned models (e.g. a 500-identity VGGFace2 head), read safely.

A checkpoint is a ``.safetensors`` file or a ``torch.save`` file read with ``torch.load(weights_only=True)``:
tensors and plain containers only, so a file that tries to run code while unpickling (a ``__reduce__`` payload)
is refused before anything runs. Common wrappers (``{"state_dict": ...}``, ``{"model": ...}``) and prefixes
(``module.`` from DataParallel, ``_orig_mod.`` from ``torch.compile``, ``backbone.`` from :class:`PixelSpaceNet`)
are unwrapped, and so is the Madry lab's ``robustness`` layout (its robust ImageNet ResNets load as checkpoints of
the torchvision architecture: ``--models tv:resnet50 --weights imagenet_linf_4.pt``). Class names come from the
checkpoint itself (written by :func:`save_checkpoint`), a ``.txt`` (one per line) or ``.json`` (list, or
``{index: name}``) file, or an image folder's sub-folder names.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gcdash.errors import GcdashError
from gcdash.models.handle import IMAGENET_MEAN, IMAGENET_STD, ModelHandle, PixelSpaceNet

StateDict = dict[str, torch.Tensor]
ClassNames = Sequence[str] | str | Path | None

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
PREFIXES = ("module.", "_orig_mod.", "backbone.", "model.")
NORM_BUFFERS = ("mean", "std")  # PixelSpaceNet's own buffers: the architecture does not have them
SHOWN = 3  # how many offending keys an error message lists
GIST_WIDTH = 200  # characters of a library's error text quoted in a refusal, cut at a word boundary


@dataclass
class Checkpoint:
    """A state dict with what the file says about itself (class names, architecture), if anything."""

    state_dict: StateDict
    class_names: list[str] | None = None
    arch: str | None = None


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read ``path`` (``.safetensors`` or a torch file) without running any code from it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise GcdashError(f"checkpoint file not found: {path} (give a .pt, .pth or .safetensors file)")
    reader = _read_safetensors if path.suffix.lower() == ".safetensors" else _read_torch
    return reader(path)


def _read_torch(path: Path) -> Checkpoint:
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing: the refusal says it all
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise GcdashError(_refusal(path.name, str(err))) from None
    except Exception as err:  # garbage makes the weights-only unpickler raise almost anything (struct.error, ...)
        raise GcdashError(_unreadable(path.name, err)) from None
    return _unwrap(obj, path.name)


def _unreadable(name: str, err: Exception) -> str:
    """Why torch could not read a file, in its own first sentence (legacy .tar files get their remedy)."""
    text = str(err)
    if "legacy .tar format" in text:
        return (
            f"checkpoint {name} is in torch's legacy .tar format, which cannot be read without running code from it; "
            "re-save it with a current torch (torch.save(model.state_dict(), path)) or as .safetensors"
        )
    return f"checkpoint {name} is not a readable torch file ({type(err).__name__}: {_gist(text) or 'no detail'})"


def _gist(detail: str, width: int = GIST_WIDTH) -> str:
    """The informative part of a library's error text, on one line and cut at a word boundary: what follows torch's
    ``WeightsUnpickler error:`` (its preamble says only that loading failed), else the first sentence."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", detail)  # torch bolds part of its message with terminal codes
    found = re.search(r"WeightsUnpickler error:(.*?)(?:Check the documentation|$)", text, re.S)
    text = found.group(1) if found else text.strip().split("\n")[0].split(". ")[0]
    text = " ".join(text.split())
    return textwrap.shorten(text, width, placeholder=" …") if len(text) > width else text


def _refusal(name: str, detail: str) -> str:
    """The weights-only unpickler stopped: at an import it does not allow (code), or at bytes it cannot read."""
    found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) (\S+)", detail)
    if found is None:
        return f"checkpoint {name} is not a readable torch file (the weights-only unpickler stopped: {_gist(detail)})"
    blocked = " (a blocked module: calling it could run commands)" if "is blocked" in detail else ""
    return (
        f"checkpoint {name} was refused: it asks to call {found.group(1)}{blocked}, and a weights file may hold only "
        "tensors; nothing in it was run. Re-save it as a plain state dict (torch.save(model.state_dict(), path)) "
        "or as .safetensors"
    )


def _read_safetensors(path: Path) -> Checkpoint:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a Mapping)
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise GcdashError(f"checkpoint {path.name} is not a readable .safetensors file ({_gist(str(err))})") from None
    names = _json_names(meta["class_names"], path.name) if "class_names" in meta else None
    return Checkpoint(strip_prefixes(state), names, meta.get("arch"))


def _json_names(text: str, label: str) -> list[str] | None:
    """Class names from a .safetensors file's metadata, which must be a JSON list of strings."""
    try:
        names = json.loads(text)
    except ValueError:
        raise GcdashError(
            f"checkpoint {label}: its class_names metadata is not JSON ({textwrap.shorten(text, 60)!r}); give the "
            "names with --class-names, or re-save it with save_checkpoint"
        ) from None
    return _checked_names(names, label)


def _checked_names(names: object, label: str) -> list[str] | None:
    """A checkpoint's own class names: a list (or tuple) of strings or whole numbers, or nothing (empty or absent);
    anything else (a number, a tensor, nested lists) is refused with one line."""
    if names is None or (isinstance(names, list | tuple) and not names):
        return None
    plain = isinstance(names, list | tuple) and all(isinstance(n, str | int) and not isinstance(n, bool) for n in names)
    if not plain:
        raise GcdashError(
            f"checkpoint {label}: its class_names must be a list of names, got {textwrap.shorten(repr(names), 60)}; "
            "give the names with --class-names, or re-save it with save_checkpoint"
        )
    return [str(n) for n in names]


def _unwrap(obj: object, label: str) -> Checkpoint:
    """Find the state dict in a loaded object: the object itself or under one of :data:`WRAPPER_KEYS`."""
    if not isinstance(obj, Mapping):
        raise GcdashError(f"checkpoint {label} holds a {type(obj).__name__}, not a state dict")
    inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), obj)
    state = {k: v for k, v in inner.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise GcdashError(f"checkpoint {label} has no tensors (top-level keys: {', '.join(map(str, list(obj)[:6]))})")
    names = _checked_names(obj.get("class_names"), label) if inner is not obj else None
    arch = obj.get("arch") if inner is not obj else None
    return Checkpoint(strip_prefixes(state), names, arch)


ROBUSTNESS_PARTS = ("model.", "attacker.", "normalizer.")  # the Madry lab's AttackerModel, in its checkpoints


def robustness_layout(state: StateDict) -> StateDict:
    """A checkpoint of the Madry lab's ``robustness`` library (``{"model": AttackerModel state}``: ``[module.]model.*``
    the classifier, ``[module.]attacker.model.*`` a copy of it, ``[module.]normalizer.new_mean/new_std``) → the
    classifier's own state dict. Its normaliser must be ImageNet's, the one the torchvision architecture's handle
    applies; another is refused rather than explained under the wrong preprocessing."""
    lead = "module." if all(k.startswith("module.") for k in state) else ""
    parts = {k[len(lead) :].split(".", 1)[0] + "." for k in state}
    if not {"attacker.", "model."} <= parts or not parts <= set(ROBUSTNESS_PARTS):
        return state
    mean = state.get(f"{lead}normalizer.new_mean")
    std = state.get(f"{lead}normalizer.new_std")
    if (
        mean is not None
        and std is not None
        and not (
            torch.allclose(mean.flatten().float(), torch.tensor(IMAGENET_MEAN), atol=1e-3)
            and torch.allclose(std.flatten().float(), torch.tensor(IMAGENET_STD), atol=1e-3)
        )
    ):
        raise GcdashError(
            f"robustness checkpoint normalises with mean {mean.flatten().tolist()} and std {std.flatten().tolist()}, "
            "not ImageNet's; gcdash would explain it under the wrong preprocessing"
        )
    inner = f"{lead}model."
    return {k[len(inner) :]: v for k, v in state.items() if k.startswith(inner)}


def strip_prefixes(state: StateDict) -> StateDict:
    """Drop PixelSpaceNet's normalisation buffers and any prefix of :data:`PREFIXES` shared by every key (after
    unpacking a ``robustness`` library checkpoint, :func:`robustness_layout`)."""
    state = robustness_layout(state)
    if any(k.startswith("backbone.") for k in state):
        state = {k: v for k, v in state.items() if k not in NORM_BUFFERS}
    stripped = True
    while stripped and state:
        stripped = False
        for prefix in PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                stripped = True
    return state


def num_classes_in(state: StateDict, head_weight: str) -> int:
    """Number of classes of a checkpoint: the first dimension of its classifier's weight ``head_weight``."""
    if head_weight not in state:
        raise GcdashError(f"checkpoint has no classifier weight {head_weight!r}; is it for another architecture?")
    return int(state[head_weight].shape[0])


def load_into(model: nn.Module, state: StateDict, ignore: Sequence[str] = (), label: str = "checkpoint") -> None:
    """Load ``state`` into ``model`` strictly; keys starting with an ``ignore`` prefix are skipped on both sides.

    Missing, unexpected and wrongly shaped keys are reported together, a few of each, in one line. A model built
    on the meta device (no memory, no init cost) receives the checkpoint's tensors, cast to its dtypes.
    """
    kept = {k: v for k, v in state.items() if not k.startswith(tuple(ignore))}
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(tuple(ignore))}
    for key in expected.keys() - kept.keys():  # absent from checkpoints older than PyTorch 0.4; unused in eval
        if key.endswith(".num_batches_tracked"):
            kept[key] = torch.zeros((), dtype=torch.long)
    common = [k for k in expected if k in kept]
    problems = {
        "missing": [k for k in expected if k not in kept],
        "unexpected": [k for k in kept if k not in expected],
        "wrong shape": [
            f"{k} {tuple(kept[k].shape)}≠{tuple(expected[k].shape)}"
            for k in common
            if kept[k].shape != expected[k].shape
        ],
    }
    found = {kind: keys for kind, keys in problems.items() if keys}
    if found:
        detail = "; ".join(f"{kind} ({len(keys)}): {', '.join(keys[:SHOWN])}" for kind, keys in found.items())
        raise GcdashError(f"{label} does not fit {type(model).__name__}: {detail}")
    on_meta = any(t.is_meta for t in model.state_dict().values())
    kept = {k: v.to(expected[k].dtype) for k, v in kept.items()} if on_meta else kept
    model.load_state_dict(kept, strict=False, assign=on_meta)
    left = [k for k, t in model.state_dict().items() if t.is_meta]
    if left:
        raise GcdashError(f"{label} left {len(left)} tensors uninitialised: {', '.join(left[:SHOWN])}")


def apply_weights(name: str, net: nn.Module, weights: str | Path | None, seed: int | None = 0) -> list[str] | None:
    """Give a built network the weights a handle asks for: ``"default"``/``"imagenet"`` keep what it was built with,
    ``None`` re-initialises every module's parameters (``reset_parameters``) under ``seed`` (``None``: from the
    random state as the caller left it, e.g. after a builder that seeds itself), a path is loaded strictly. Returns
    the checkpoint's class names, if it has any."""
    if weights in ("default", "imagenet"):
        return None
    if weights is None:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            for module in net.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        return None
    ckpt = read_checkpoint(weights)
    load_into(net, ckpt.state_dict, label=f"checkpoint {weights} for {name}")
    return ckpt.class_names


def resolve_class_names(spec: ClassNames, n: int, fallback: Sequence[str] | None = None) -> list[str]:
    """Class names from a list, a ``.txt``/``.json`` file or an image folder; else ``fallback``; else
    ``class 0 … class n-1``. The count must be ``n``."""
    if spec is None:
        names = list(fallback) if fallback else [f"class {i}" for i in range(n)]
    elif isinstance(spec, str | Path):
        names = read_class_names(spec)
    else:
        names = [str(s) for s in spec]
    if len(names) != n:
        raise GcdashError(f"got {len(names)} class names for a model with {n} classes")
    return names


def read_class_names(path: str | Path) -> list[str]:
    """Names from ``path``: a folder (sorted sub-folder names, like torchvision's ImageFolder) or a file."""
    path = Path(path).expanduser()
    if path.is_dir():
        from gcdash.data.folder import class_folders

        return class_folders(path)
    reader = _NAME_READERS.get(path.suffix.lower())
    if reader is None or not path.is_file():
        raise GcdashError(f"class names file {path} not found; give a .txt (one per line), .json or image folder")
    try:
        return reader(path.read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError) as err:
        raise GcdashError(f"class names file {path.name} could not be read: {err}") from None


def _names_txt(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _names_json(text: str) -> list[str]:
    """A list of names, or ``{index: name}`` (a name may be ``[wnid, name]`` as in ImageNet's class index)."""
    data = json.loads(text)
    if isinstance(data, dict):
        index = {int(k): v for k, v in data.items()}
        if sorted(index) != list(range(len(index))):
            raise ValueError("the indices must run 0..N-1")
        data = [index[i] for i in range(len(index))]
    return [str(v[-1]) if isinstance(v, list) else str(v) for v in data]


_NAME_READERS = {".txt": _names_txt, ".json": _names_json}


def architecture(model: ModelHandle | nn.Module) -> nn.Module:
    """The bare architecture inside a handle or a :class:`PixelSpaceNet` (whose keys a checkpoint holds)."""
    net = model.net if isinstance(model, ModelHandle) else model
    return net.backbone if isinstance(net, PixelSpaceNet) else net


def save_checkpoint(
    model: ModelHandle | nn.Module, path: str | Path, class_names: Sequence[str] | None = None, arch: str | None = None
) -> Path:
    """Write the architecture's state dict (no normalisation buffers) with class names, atomically.

    ``.safetensors`` keeps names and architecture in its metadata; any other suffix writes
    ``{"state_dict", "class_names", "arch"}`` with ``torch.save`` (loadable with ``weights_only=True``).
    """
    if isinstance(model, ModelHandle):
        class_names = model.class_names if class_names is None else class_names
        arch = arch or model.name
    state = {k: v.detach().cpu().contiguous() for k, v in architecture(model).state_dict().items()}
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        _write(state, Path(tmp), path.suffix, list(class_names or []), arch or "")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _write(state: StateDict, tmp: Path, suffix: str, names: list[str], arch: str) -> None:
    if suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(tmp), metadata={"class_names": json.dumps(names), "arch": arch})
    else:
        torch.save({"state_dict": state, "class_names": names, "arch": arch}, tmp)


__all__ = [
    "Checkpoint",
    "architecture",
    "load_into",
    "num_classes_in",
    "read_checkpoint",
    "read_class_names",
    "resolve_class_names",
    "save_checkpoint",
    "strip_prefixes",
]
