"""Pretrained weights from the libraries' own caches, failing fast and clearly when offline.

torchvision and timm download ImageNet weights once, into torch hub's cache (``$TORCH_HOME/hub/checkpoints``,
default ``~/.cache/torch/hub/checkpoints``) or, for timm weights hosted on the Hugging Face hub, into the HF cache.
Without a network their downloaders may hang on a stalled connection or fail with a long traceback, so before any
download we check the cache, then probe the host with a short timeout; when neither works the user gets one line
naming the file that is missing and where to put it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import torch

from gcdash.errors import GcdashError

PROBE_TIMEOUT_S = 3.0
OFFLINE_ENV = "GCDASH_OFFLINE"  # set to 1 to never try a download (checked before any network access)


def hub_checkpoint_path(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` keeps the file for ``url`` (torchvision's and timm's cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Does an HTTP ``HEAD`` of ``url`` succeed within about ``timeout`` seconds?

    A real request, not a bare TCP connect: intercepting proxies accept any connection and fail later. It runs in
    a daemon thread joined with a deadline, because name resolution ignores socket timeouts and can stall far
    longer on a machine with a broken resolver. ``$GCDASH_OFFLINE=1`` answers ``False`` without any network.
    """
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as reply:
                result.append(reply.status < 400)
        except (OSError, ValueError):  # URLError, HTTPError, SSL and socket errors are all OSErrors
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(2 * timeout + 1.0)
    return bool(result and result[0])


def offline_message(model: str, url: str, cached: Path, hint: str = "") -> str:
    """The one-line error for ImageNet weights that are neither cached nor downloadable."""
    extra = f" ({hint})" if hint else ""
    return (
        f"ImageNet weights for {model} are not cached and {urlparse(url).hostname} cannot be reached: "
        f"download {url} and save it as {cached}{extra}, or use --weights random (random weights; 'random' in the "
        "sidebar's checkpoint box) or a checkpoint path"
    )


def require_cached(model: str, url: str, cached: Path, hint: str = "") -> None:
    """Return if ``cached`` exists or ``url`` can be downloaded now; else raise :class:`GcdashError` at once."""
    if cached.is_file() or reachable(url):
        return
    raise GcdashError(offline_message(model, url, cached, hint))


@contextlib.contextmanager
def download_errors(model: str, url: str, cached: Path, hint: str = "") -> Iterator[None]:
    """Turn a download that fails half-way (network drop, HTTP or TLS error) into the same one-line error, and a
    cached file that cannot be read (truncated, wrong hash) into one that says to delete it."""
    try:
        yield
    except (RuntimeError, EOFError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise GcdashError(
            f"cached ImageNet weights for {model} at {cached} could not be read ({type(err).__name__}: {first}); "
            "delete the file and load again to download it anew"
        ) from err
    except OSError as err:  # URLError, HTTPError, SSL and socket errors, requests' ConnectionError
        raise GcdashError(f"{offline_message(model, url, cached, hint)} [{type(err).__name__}: {err}]") from err


HF_FILENAMES = ("model.safetensors", "pytorch_model.bin")


def hf_cached_file(repo_id: str, filenames: tuple[str, ...] = HF_FILENAMES) -> Path | None:
    """The first of ``filenames`` of ``repo_id`` already in the Hugging Face cache, or ``None`` (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in filenames:
        found = try_to_load_from_cache(repo_id, name)
        if isinstance(found, str):
            return Path(found)
    return None


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or ``~/.cache/huggingface/hub``)."""
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:
        return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


__all__ = [
    "OFFLINE_ENV",
    "download_errors",
    "hf_cache_dir",
    "hf_cached_file",
    "hub_checkpoint_path",
    "offline_message",
    "reachable",
    "require_cached",
]
