"""User checkpoints: round trips through .pt and .safetensors, wrappers and prefixes, class names from files and
folders, clear errors for keys that do not fit, and files that would run code on load (refused, code not run)."""

from __future__ import annotations

import json
import pickle
import warnings

import pytest
import torch
from torch import nn

from gcdash import models
from gcdash.errors import GcdashError
from gcdash.models.checkpoint import (
    load_into,
    read_checkpoint,
    read_class_names,
    resolve_class_names,
    save_checkpoint,
    strip_prefixes,
)
from gcdash.models.handle import weights_digest

FACES = ["ada", "bea", "cyd", "dot", "eve", "fay", "gil"]  # a 7-identity "fine-tuned" head


pytestmark = pytest.mark.usefixtures("flush_denormals")


@pytest.fixture(scope="module")
def tuned():
    """A ResNet50 with a 7-class head; BN statistics perturbed so its outputs depend on the input."""
    handle = models.load("resnet50", weights=None, num_classes=len(FACES), class_names=FACES, seed=3)
    gen = torch.Generator().manual_seed(0)
    for module in handle.net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) * 4 + 1)
    return handle


@pytest.fixture(scope="module")
def x():
    return torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_round_trip(tuned, x, tmp_path, suffix):
    path = save_checkpoint(tuned, tmp_path / f"faces{suffix}")
    loaded = models.load("resnet50", weights=path, crop=False)
    assert loaded.class_names == FACES and not loaded.crop
    assert loaded.digest == weights_digest(tuned.net)
    with torch.no_grad():
        assert torch.equal(loaded.net(x), tuned.net(x))
    assert not list(tmp_path.glob(".*.tmp")), "the temporary file was left behind"


def test_wrappers_prefixes_and_class_name_file(tuned, tmp_path):
    state = {f"module.{k}": v for k, v in tuned.net.backbone.state_dict().items()}
    torch.save({"model": state, "epoch": 9, "best_acc": 0.5}, tmp_path / "ddp.pth")
    (tmp_path / "names.txt").write_text("\n".join(FACES) + "\n")
    loaded = models.load("resnet50", weights=tmp_path / "ddp.pth", class_names=tmp_path / "names.txt")
    assert loaded.digest == weights_digest(tuned.net) and loaded.class_names == FACES


def test_class_count_from_head_and_default_names(tuned, tmp_path):
    """A whole PixelSpaceNet's state dict (backbone.*, mean, std), without BN's num_batches_tracked (as written
    before PyTorch 0.4): loads, with 7 classes named by index."""
    state = {k: v for k, v in tuned.net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "whole-net.pt")
    loaded = models.load("resnet50", weights=str(tmp_path / "whole-net.pt"))
    assert loaded.class_names == [f"class {i}" for i in range(7)]
    with pytest.raises(GcdashError, match="num_classes=500 but the checkpoint's classifier has 7"):
        models.load("resnet50", weights=tmp_path / "whole-net.pt", num_classes=500)


def test_checkpoint_for_another_architecture(tuned, tmp_path):
    path = save_checkpoint(tuned, tmp_path / "faces.pt")
    with pytest.raises(GcdashError) as err:
        models.load("resnet101", weights=path)
    message = str(err.value)
    assert "saved for resnet50" in message and "missing (" in message and "layer3.6.conv1.weight" in message
    assert "\n" not in message


def test_load_into_lists_the_first_few_problems():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.Linear(4, 2))
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("1.")}
    state["0.weight"] = torch.zeros(5, 3, 3, 3)
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(GcdashError) as err:
        load_into(net, state)
    message = str(err.value)
    assert "missing (2): 1.weight, 1.bias" in message
    assert "unexpected (1): extra.weight" in message
    assert "wrong shape (1): 0.weight (5, 3, 3, 3)≠(4, 3, 3, 3)" in message


def test_strip_prefixes():
    t = torch.zeros(1)
    assert strip_prefixes({"module._orig_mod.fc.weight": t}) == {"fc.weight": t}
    assert strip_prefixes({"backbone.fc.weight": t, "mean": t, "std": t}) == {"fc.weight": t}
    assert strip_prefixes({"model.a": t, "b": t}) == {"model.a": t, "b": t}


def test_class_names_sources(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps(["a", "b"]))
    (tmp_path / "index.json").write_text(json.dumps({"1": ["n02", "b"], "0": ["n01", "a"]}))
    (tmp_path / "gap.json").write_text(json.dumps({"0": "a", "2": "c"}))
    for name in ("zed", "amy", ".hidden"):
        (tmp_path / "faces" / name).mkdir(parents=True)
    assert read_class_names(tmp_path / "list.json") == ["a", "b"]
    assert read_class_names(tmp_path / "index.json") == ["a", "b"]
    assert read_class_names(tmp_path / "faces") == ["amy", "zed"]
    with pytest.raises(GcdashError, match=r"gap\.json could not be read"):
        read_class_names(tmp_path / "gap.json")
    with pytest.raises(GcdashError, match="not found"):
        read_class_names(tmp_path / "nope.txt")
    with pytest.raises(GcdashError, match="got 2 class names for a model with 3 classes"):
        resolve_class_names(["a", "b"], 3)


class Payload:
    """Unpickling this creates ``marker``: the kind of file ``weights_only=True`` must refuse."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_files(tmp_path, marker):
    """The payload in a torch zip file, a legacy torch file, and raw pickles (protocols 2 and 5)."""
    content = {"state_dict": {"fc.weight": torch.zeros(2, 2)}, "hook": Payload(marker)}
    files = {name: tmp_path / name for name in ("zip.pt", "legacy.pt", "raw2.pkl", "raw5.pkl")}
    torch.save(content, files["zip.pt"])
    torch.save(content, files["legacy.pt"], _use_new_zipfile_serialization=False)
    plain = {"fc.weight": [[0.0, 0.0]], "hook": Payload(marker)}  # a plain pickle of a tensor is refused anyway
    files["raw2.pkl"].write_bytes(pickle.dumps(plain, protocol=2))
    files["raw5.pkl"].write_bytes(pickle.dumps(plain, protocol=5))
    return files


class SystemPayload:
    """Unpickling this runs a shell command: os.system, the classic payload."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def test_payload_is_live(tmp_path):
    """The payload really runs under a plain unpickler (so the next test proves something)."""
    live = tmp_path / "live-marker"
    pickle.loads(pickle.dumps(Payload(live))).close()
    assert live.exists()


def test_code_in_a_checkpoint_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    files = _evil_files(tmp_path, marker)
    for name in ("zip.pt", "legacy.pt", "raw2.pkl"):
        with pytest.raises(GcdashError, match=r"refused: it asks to call io\.open.*nothing in it was run"):
            read_checkpoint(files[name])
    with pytest.raises(GcdashError, match="was refused"):
        models.load("resnet50", weights=files["zip.pt"])
    with pytest.raises(GcdashError, match="not a readable torch file"):  # refused earlier, at protocol-5 opcodes
        read_checkpoint(files["raw5.pkl"])
    assert not marker.exists()


def test_a_command_payload_is_named_as_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"w": torch.ones(2), "x": SystemPayload(f"touch {marker}")}, tmp_path / "system.pt")
    with pytest.raises(GcdashError, match=r"refused: it asks to call \S*system \(a blocked module: calling it could"):
        read_checkpoint(tmp_path / "system.pt")
    assert not marker.exists()


def test_a_legacy_tar_checkpoint_says_why_and_what_to_do(tmp_path):
    import io
    import tarfile

    with tarfile.open(tmp_path / "old.tar", "w") as tar:
        info = tarfile.TarInfo("storages")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    with pytest.raises(GcdashError, match=r"legacy \.tar format.*re-save it"):
        read_checkpoint(tmp_path / "old.tar")


def test_unreadable_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    (tmp_path / "four.pt").write_bytes(b"junk")  # the unpickler fails with struct.error on these
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    torch.save({"epoch": 3}, tmp_path / "no-tensors.pt")
    cases = {
        "missing.pt": "not found",
        "junk.pt": "not a readable torch file",
        "four.pt": "not a readable torch file",
        "junk.safetensors": "not a readable .safetensors file",
        "list.pt": "holds a list, not a state dict",
        "no-tensors.pt": "has no tensors",
    }
    for name, expected in cases.items():
        with pytest.raises(GcdashError, match=expected):
            read_checkpoint(tmp_path / name)


def _cli_refusal(capsys, tmp_path, weights) -> str:
    """Run a sweep of demo-resnet with ``weights`` through the CLI entry; the one line it printed (exit 2)."""
    from gcdash.cli import main

    code = main(["sweep", "--models", "demo-resnet", "--weights", str(weights), "--n", "2", "--eps", "0",
                 "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("gcdash: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("names", [7, torch.arange(3), "not json"])
def test_class_names_that_are_not_a_list_of_names_are_refused_in_one_line(tmp_path, capsys, names):
    state = models.load("demo-resnet", weights=None).net.backbone.state_dict()
    if isinstance(names, str):
        from safetensors.torch import save_file

        path = tmp_path / "bad.safetensors"
        save_file(state, str(path), metadata={"class_names": "circle, square", "arch": "demo-resnet"})
        expected = "its class_names metadata is not JSON ('circle, square')"
    else:
        path = tmp_path / "bad.pt"
        torch.save({"state_dict": state, "class_names": names}, path)
        expected = f"its class_names must be a list of names, got {names!r}"
    assert expected in _cli_refusal(capsys, tmp_path, path)


def test_an_unreadable_file_is_refused_with_torchs_reason_and_no_warnings(tmp_path, capsys):
    """A protocol-5 pickle: torch warns (two lines) and then fails with a long preamble; the refusal is one line
    that keeps the reason (the opcode it stopped at), whole, not the preamble cut at 160 characters."""
    files = _evil_files(tmp_path, tmp_path / "pwned")
    err = _cli_refusal(capsys, tmp_path, files["raw5.pkl"])
    assert "the weights-only unpickler stopped: Unsupported operand" in err
    assert "Weights only load failed" not in err
    with warnings.catch_warnings(record=True) as caught:  # torch's protocol warning is not shown before it
        warnings.simplefilter("always")
        with pytest.raises(GcdashError):
            read_checkpoint(files["raw5.pkl"])
    assert not caught
    assert "nothing in it was run. Re-save it as a plain state dict" in _cli_refusal(capsys, tmp_path, files["zip.pt"])


def test_a_missing_checkpoint_says_file_not_found(tmp_path, capsys):
    err = _cli_refusal(capsys, tmp_path, tmp_path / "nowhere.pt")
    assert f"file not found: {tmp_path / 'nowhere.pt'}" in err and "None" not in err


def test_the_safetensors_suffix_is_read_in_any_case(tuned, tmp_path):
    path = save_checkpoint(tuned, tmp_path / "faces.SafeTensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:  # written as safetensors, not by torch.save
        assert f.metadata()["arch"] == "resnet50"
    assert read_checkpoint(path).class_names == FACES
