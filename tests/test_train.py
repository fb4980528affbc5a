"""``train-demo``: a tiny budget lowers the loss and writes loadable safetensors; the CLI options parse."""

from __future__ import annotations

import argparse
import json

import pytest
from safetensors import safe_open

from gcdash import models
from gcdash.data.demo import CLASS_NAMES
from gcdash.errors import GcdashError
from gcdash.models.demo import weights_path
from gcdash.train import add_arguments, main, train_demo

TINY = {"steps": 40, "batch_size": 32, "n_train": 192, "n_val": 32, "lr": 3e-3}


def test_train_demo_lowers_the_loss_and_saves_loadable_weights(tmp_path):
    reports = train_demo(["demo-vgg"], out=tmp_path, progress=False, **TINY)
    report = reports["demo-vgg"]
    assert report.last_loss < report.first_loss - 0.1
    path = weights_path("demo-vgg", tmp_path)
    assert report.path == str(path) and path.is_file()
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["class_names"]) == list(CLASS_NAMES)
    assert json.loads(meta["config"])["steps"] == TINY["steps"]
    handle = models.load("demo-vgg", weights=path)
    assert handle.digest != models.load("demo-vgg", weights=None).digest
    assert not list(tmp_path.glob("*.tmp*"))


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_main_trains_the_chosen_models_reproducibly(tmp_path, capsys):
    argv = ["--models", "demo-xception,demo-inception", "--steps", "3", "--batch-size", "4", "--n-train", "8"]
    for run in ("a", "b"):
        assert main(_parse([*argv, "--n-val", "4", "--out", str(tmp_path / run), "--quiet"])) == 0
    assert not weights_path("demo-vgg", tmp_path / "a").is_file()
    for name in ("demo-xception", "demo-inception"):
        a, b = (models.load(name, weights=weights_path(name, tmp_path / run)) for run in ("a", "b"))
        assert a.digest == b.digest, "same seed, same weights"
    assert "demo-xception: val top-1" in capsys.readouterr().out


def test_bad_options_are_user_errors(tmp_path):
    with pytest.raises(GcdashError, match="--steps"):
        main(_parse(["--steps", "0", "--out", str(tmp_path), "--quiet"]))
    with pytest.raises(GcdashError, match="unknown demo model"):
        train_demo(["demo-alexnet"], out=tmp_path, progress=False)
    with pytest.raises(GcdashError, match="unknown demo model"):
        main(_parse(["--models", "demo-vgg,demo-alexnet", "--out", str(tmp_path), "--quiet"]))


def test_adversarial_training_mixes_the_clean_and_the_pgd_loss(tiny_handle):
    import torch
    import torch.nn.functional as F

    from gcdash import attacks
    from gcdash.models.demo import AdversarialTraining
    from gcdash.train import step_loss

    net = tiny_handle.net
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    spec = AdversarialTraining(steps=2, weight=0.25)
    adv = attacks.attack("pgd", net, x, y, spec.eps, steps=2)
    net.train()
    expected = 0.75 * F.cross_entropy(net(x), y) + 0.25 * F.cross_entropy(net(adv), y)
    assert step_loss(net, x, y, spec).item() == pytest.approx(expected.item(), rel=1e-5)
    assert step_loss(net, x, y, None).item() == pytest.approx(F.cross_entropy(net(x), y).item(), rel=1e-6)
    assert net.training  # the attack ran in eval mode and left the training mode as it was


def test_the_robust_model_fine_tunes_its_start_and_records_how(tmp_path):
    reports = train_demo(["demo-resnet-robust"], out=tmp_path, progress=False, steps=2, n_train=64, n_val=16)
    path = reports["demo-resnet-robust"].path
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    spec = json.loads(meta["adversarial"])
    assert spec["attack"] == "pgd" and spec["eps"] == pytest.approx(8 / 255) and spec["start"] == "demo-resnet"
    assert json.loads(meta["config"])["lr"] == spec["lr"]  # the fine-tune's own learning rate
