"""``python -m gcdash sweep`` end to end on a tiny model, bad arguments, two processes on one cache."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tiny

from gcdash import results
from gcdash.cli import main
from gcdash.store import Store

ROOT = Path(__file__).resolve().parent.parent
BASE = ["sweep", "--models", "tiny-cnn", "--data", "tiny", "--n", "6", "--eps", "0,4/255,8/255", "--batch-size", "4"]


def test_sweep_writes_the_three_tables(tmp_path, capsys):
    code = main([*BASE, "--models", "tiny-cnn,tiny-cnn2", "--layers", "all", "--out", str(tmp_path / "out"),
                 "--cache", str(tmp_path / "c")])  # fmt: skip
    assert code == 0
    per_image = pd.read_parquet(tmp_path / "out" / "per_image.parquet")
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    vid = pd.read_csv(tmp_path / "out" / "vid.csv")
    assert list(per_image.columns) == results.PER_IMAGE_COLUMNS
    assert list(summary.columns) == results.SUMMARY_COLUMNS
    assert list(vid.columns) == results.VID_COLUMNS
    assert len(per_image) == 2 * 3 * 3 * 6  # models × layers × eps × images
    assert len(summary) == 2 * 3 * 3 and (summary["n"] == 6).all()
    assert len(vid) == 2 * 3 and (vid["vid"] >= 0).all()
    mod = per_image.groupby(["model", "layer", "eps"])["nissim"].mean().reset_index()
    merged = summary.merge(mod, on=["model", "layer", "eps"])
    assert (merged["mod"] - merged["nissim"]).abs().max() < 1e-9
    printed = capsys.readouterr().out
    assert "MOD@8/255" in printed and "vid" in printed


def test_attack_and_comparisons_reach_every_table(tmp_path, capsys):
    out = tmp_path / "o"
    args = ["--attack", "pgd", "--attack-param", "steps=2", "--dissimilarity", "spearman,topk"]
    assert main([*BASE, *args, "--out", str(out), "--cache", str(tmp_path / "c")]) == 0
    per_image = pd.read_parquet(out / "per_image.parquet")
    assert {"attack", "source", "nissim", "spearman", "topk"} <= set(per_image.columns)
    assert set(per_image["attack"]) == {"pgd"} and set(per_image["source"]) == {"tiny-cnn"}
    summary = pd.read_csv(out / "summary.csv")
    assert {"mod_flipped", "mod_kept", "mod_spearman", "mod_topk"} <= set(summary.columns)
    assert {"vid", "vid_spearman", "vid_topk"} <= set(pd.read_csv(out / "vid.csv").columns)
    header = capsys.readouterr().out.split("MOD@4/255")[1].splitlines()[0].split()  # the printed table's header
    assert {"mod_spearman@4/255", "mod_spearman@8/255", "mod_topk@8/255", "vid_topk"} <= set(header)
    transfer = tmp_path / "t"
    assert (
        main([*BASE, "--attack-param", "source=tiny-cnn2", "--out", str(transfer), "--cache", str(tmp_path / "c")]) == 0
    )
    assert set(pd.read_parquet(transfer / "per_image.parquet")["source"]) == {"tiny-cnn2"}


def test_a_transfer_source_that_takes_other_images_is_refused_before_any_work(tmp_path, capsys):
    import tiny

    from gcdash import models

    if "tiny-48" not in models.MODELS:
        models.register("tiny-48", lambda weights="default": tiny.tiny_handle(2, 48, "tiny-48"), family="test")
    where = ["--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")]
    code = main([*BASE, "--attack-param", "source=tiny-48", *where])
    assert code == 2
    assert "source model tiny-48 takes 48×48 images, tiny-cnn 32×32" in capsys.readouterr().err
    assert not (tmp_path / "o" / "per_image.parquet").exists()
    assert Store(tmp_path / "c").usage() == []  # refused before any cell was computed


def test_attacks_are_listed_with_their_cost(capsys):
    assert main(["attacks"]) == 0
    printed = capsys.readouterr().out
    assert "pgd" in printed and "steps=10" in printed and "noise" in printed and "no model pass" in printed
    assert "step_size=0 (= 2.5·eps/steps)" in printed  # the 0 is a stand-in, and the listing says for what


def test_the_same_sweep_again_is_served_from_the_cache(tmp_path, monkeypatch):
    args = [*BASE, "--out", str(tmp_path / "a"), "--cache", str(tmp_path / "c")]
    assert main(args) == 0
    from gcdash import attacks, cams

    def no_pass(*a, **k):
        raise AssertionError("a model pass ran on a warm cache")

    monkeypatch.setattr(cams, "explain", no_pass)
    monkeypatch.setattr(type(attacks.get("fgsm")), "state", no_pass)
    assert main([*args[:-4], "--out", str(tmp_path / "b"), "--cache", str(tmp_path / "c")]) == 0
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "a" / "per_image.parquet"), pd.read_parquet(tmp_path / "b" / "per_image.parquet")
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (["--models", "nope"], "unknown model 'nope'; choose from:"),
        (["--method", "nope"], "unknown CAM method 'nope'; choose from: gradcam"),
        (["--eps", "0.1,-0.2"], "eps must be ≥ 0"),
        (["--eps", "abc"], "is not a number"),
        (["--eps", "1e400"], "out of range"),  # these five gave tracebacks or were accepted before
        (["--eps", "0,1e9"], "above 1"),
        (["--seed", "-1"], "--seed must be ≥ 0"),
        (["--weights", "tiny-cnn=a.pt,b.pt"], "name=PATH pairs"),
        (["--batch-size", "0"], "--batch-size must be ≥ 1"),
        (["--layers", "block9"], "unknown layer 'block9' for model tiny-cnn; choose from: block1, block2, block3"),
        (["--data", "tiny", "--classes", "hexagon"], "gave no images"),
        (["--data", "nowhere"], "unknown data source 'nowhere'; choose from:"),
        (["--target", "nope"], "unknown target policy 'nope'; choose from: pred, clean-pred, label"),
        (["--cam-param", "x=1"], "--cam-param"),
        (["--device", "tpu"], "unknown device"),
        (["--attack", "cw"], "unknown attack 'cw'; choose from: fgsm, pgd, noise"),
        (["--attack", "pgd", "--attack-param", "steps=two"], "--attack-param steps must be an integer, got 'two'"),
        (["--attack", "pgd", "--attack-param", "random_start=maybe"], "random_start must be true or false"),
        (["--method", "intgradcam", "--cam-param", "authors=ture"], "--cam-param authors must be true or"),
        (["--dissimilarity-param", "nissim.gaussian=maybe"], "--dissimilarity-param gaussian must be true or false"),
        (["--eps", "1.0000001"], "eps 1.0000001 is above 1"),  # the value as typed, not "eps 1 is above 1"
        (["--eps", "0,-1/255"], "eps must be ≥ 0, got -1/255"),
        (["--device", "cpu:abc"], "--device 'cpu:abc' is not a device"),
        (["--gpus-per-worker", "-1"], "--gpus-per-worker must be ≥ 0"),
        (["--weights", "/nowhere/a=b.safetensors"], "file not found: /nowhere/a=b.safetensors"),  # a path, not a pair
        (["--weights", "/nowhere/model.pt"], "weights for tiny-cnn: file not found: /nowhere/model.pt"),
        (["--attack", "pgd", "--attack-param", "steps=0"], "pgd steps must be ≥ 1"),
        (["--attack", "noise", "--attack-param", "source=tiny-cnn2"], "--attack-param 'source=tiny-cnn2': noise"),
        (["--attack-param", "source=nope"], "unknown model 'nope'"),
        (["--dissimilarity", "nissim,l2"], "unknown comparison 'l2'; choose from: nissim, spearman, topk"),
        (["--dissimilarity-param", "topk.share=2"], "NAME.PARAM=VALUE with NAME in ['nissim']"),
        (["--dissimilarity", "topk", "--dissimilarity-param", "topk.share=2"], "topk share must be in (0, 1]"),
        (["--precision", "fp8"], "unknown precision 'fp8'; choose from: fp32, bf16, bf16-cam, fp16, fp16-cam"),
        (["--precision", "fp16", "--device", "cpu"], "precision fp16 runs on CUDA only (model tiny-cnn is on cpu)"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, change, message):
    code = main([*BASE, *change, "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_two_processes_sweeping_into_one_cache_agree(tmp_path):
    cache = tmp_path / "shared-cache"
    args = [*BASE, "--n", "12", "--layers", "all", "--cache", str(cache)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    commands = [tiny.cli_command(*args, "--out", str(tmp_path / f"p{i}")) for i in range(2)]
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in commands]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    assert main([*args, "--out", str(tmp_path / "solo"), "--cache", str(tmp_path / "solo-cache")]) == 0
    tables = [pd.read_parquet(tmp_path / d / "per_image.parquet") for d in ("p0", "p1", "solo")]
    # Which process computes which cells, and so in batches of what size, depends on how their batches interleave;
    # CPU convolutions round differently per batch size (~1e-7). Exact equality here flaked on a busy machine; a
    # mixed-up cell would differ by orders of magnitude more than this tolerance.
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=False, atol=1e-5, rtol=0)
    pd.testing.assert_frame_equal(tables[0], tables[2], check_exact=False, atol=1e-5, rtol=0)


@pytest.mark.timeout(300)
def test_a_fine_tuned_paper_checkpoint_on_an_image_folder(tmp_path, flush_denormals):
    """The face-recognition route: a 3-identity ResNet50 checkpoint, an identity folder, no centre crop."""
    import numpy as np
    from PIL import Image

    from gcdash import models
    from gcdash.models.checkpoint import save_checkpoint

    identities = ["alice", "bob", "carol"]
    rng = np.random.default_rng(0)
    for who in identities:
        (tmp_path / "faces" / who).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 32, 3), dtype=np.uint8)).save(
                tmp_path / "faces" / who / f"{i}.png"
            )
    handle = models.load("resnet50", weights=None, num_classes=3)
    save_checkpoint(handle, tmp_path / "faces.pt")
    (tmp_path / "names.txt").write_text("\n".join(identities))
    args = [
        "sweep", "--models", "resnet50", "--weights", str(tmp_path / "faces.pt"),
        "--class-names", str(tmp_path / "names.txt"), "--no-crop", "--data", f"folder:{tmp_path / 'faces'}",
        "--per-class", "1", "--eps", "8/255", "--batch-size", "3",
        "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c"),
    ]  # fmt: skip
    assert main(args) == 0
    table = pd.read_parquet(tmp_path / "out" / "per_image.parquet")
    assert len(table) == 3 and set(table["label"]) == {0, 1, 2}
    assert table["layer"].unique().tolist() == ["layer4.2"]
    assert table["nissim"].between(0, 1).all()


@pytest.mark.parametrize(
    "words, value", [("true", True), ("YES", True), ("1", True), ("False", False), ("no", False), ("0", False)]
)
def test_boolean_parameters_take_the_six_words_in_any_case(words, value):
    from gcdash.cli import build_config, parser

    args = parser().parse_args([*BASE, "--attack", "pgd", "--attack-param", f"random_start={words}", "--out", "o"])
    assert dict(build_config(args).attack.params)["random_start"] is value


@pytest.mark.parametrize("argv", [["sweep"], ["sweep", *BASE[1:], "--out", "o", "--bogus"], ["sweep", "--n", "x"]])
def test_argparse_errors_are_one_line_with_a_pointer_to_help(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err.startswith("gcdash: error: ") and err.rstrip().endswith("--help)")
    assert err.count("\n") == 1 and "usage:" not in err


def test_cache_info_shows_model_names_whole(tmp_path, capsys):
    name = "a-fine-tuned-model-with-a-long-name"
    Store(tmp_path / "c").put_arrays({"k": np.zeros(4, np.float32)}, "map", name)
    assert main(["cache", "info", "--cache", str(tmp_path / "c")]) == 0
    assert name in capsys.readouterr().out


def test_verify_says_ok_in_one_line_and_each_problem_in_one(tmp_path, capsys):
    out = tmp_path / "out"
    args = [*BASE, "--models", "tiny-cnn,tiny-cnn2", "--eps", "0,8/255", "--transfer"]
    assert main([*args, "--out", str(out), "--cache", str(tmp_path / "c")]) == 0
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and printed[0].startswith(f"{out}: OK (") and "transfer.csv" in printed[0]
    parts = sorted((out / "per_image.parquet").glob("part-*.parquet"))
    parts[0].unlink()
    (out / "transfer.csv").write_text("edited\n")
    assert main(["verify", str(out)]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2
    assert f"per_image.parquet/{parts[0].name} is missing" in printed[0] and "transfer.csv changed" in printed[1]
    assert main(["verify", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_second_sweep_into_a_busy_out_is_refused_naming_the_folder(tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    with tiny.another_sweep_holds(out):
        assert main([*BASE, "--out", str(out), "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out.resolve()) in err and "another sweep" in err
    assert not (out / "per_image.parquet").exists()


def test_a_full_out_disk_is_one_line_and_keeps_the_parts_and_the_cache(tmp_path, capsys, monkeypatch):
    tiny.disk_full_after(monkeypatch, 1)
    out = tmp_path / "full"
    assert main([*BASE, "--out", str(out), "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    line = err[err.index("gcdash: error:") :]  # after the progress bar, closed first
    assert line.count("\n") == 1 and "Traceback" not in err and line.startswith(f"gcdash: error: --out {out} is full")
    assert [p.name for p in (out / "per_image.parquet").iterdir()] == ["part-0000-000000.parquet"]
    assert Store(tmp_path / "c").usage()  # the cells of both batches are kept


def test_a_bf16_sweep_is_recorded_as_such_and_never_serves_fp32(tmp_path):
    import json

    def sweep(name: str, cache: str, *extra: str) -> pd.DataFrame:
        assert main([*BASE, *extra, "--out", str(tmp_path / name), "--cache", str(tmp_path / cache)]) == 0
        return pd.read_parquet(tmp_path / name / "per_image.parquet")

    half = sweep("half", "c", "--precision", "bf16")
    exact = sweep("exact", "c")  # on the cache the bf16 sweep filled
    alone = sweep("alone", "c2")  # on a cache of its own
    pd.testing.assert_frame_equal(exact, alone)
    assert not half["nissim"].equals(exact["nissim"])
    manifest = json.loads((tmp_path / "half" / "manifest.json").read_text())
    assert '"precision": "bf16"' in json.dumps(manifest)
