"""Transfer attacks: every (crafted on, evaluated on) pair of the selected models; the diagonal is the white-box
sweep exactly; the noise control has no transfer matrix."""

from __future__ import annotations

import pandas as pd
import pytest

from gcdash import results
from gcdash.cli import main
from gcdash.config import AttackConfig
from gcdash.errors import GcdashError

BASE = ["sweep", "--models", "tiny-cnn,tiny-cnn2", "--data", "tiny", "--n", "6", "--eps", "0,8/255"]


def test_transfer_attacks_craft_on_each_source_and_keep_the_other_parameters():
    made = AttackConfig("pgd", (("source", "x"), ("steps", 2))).crafted_on(["a", "b"])
    assert [a.source for a in made] == ["a", "b"]
    assert all(dict(a.params)["steps"] == 2 for a in made)
    with pytest.raises(GcdashError, match="no transfer matrix"):
        AttackConfig("noise").crafted_on(["a"])


def test_the_transfer_diagonal_is_the_white_box_sweep_exactly(tmp_path, capsys):
    cache = ["--cache", str(tmp_path / "c")]
    assert main([*BASE, "--transfer", "--out", str(tmp_path / "t"), *cache]) == 0
    assert main([*BASE, "--out", str(tmp_path / "w"), *cache]) == 0
    transfer = pd.read_parquet(tmp_path / "t" / "per_image.parquet")
    white = pd.read_parquet(tmp_path / "w" / "per_image.parquet")
    assert set(zip(transfer["source"], transfer["model"])) == {(a, b) for a in ("tiny-cnn", "tiny-cnn2")
                                                                for b in ("tiny-cnn", "tiny-cnn2")}  # fmt: skip
    diagonal = transfer[transfer["source"] == transfer["model"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(diagonal, white)  # every column, every image
    off = transfer[transfer["source"] != transfer["model"]]
    assert not off["pred_adv"].equals(diagonal["pred_adv"])  # another model's perturbation is another one
    table = pd.read_csv(tmp_path / "t" / "transfer.csv")
    assert len(table) == 4 and {"source", "model", "acc_adv", "mod"} <= set(table.columns)
    assert "rows crafted on, columns evaluated on" in capsys.readouterr().out


def test_the_matrix_puts_sources_in_rows_in_model_order():
    summary = pd.DataFrame({
        "model": ["b", "b", "a", "a", "a"], "source": ["b", "a", "b", "a", "a"], "eps": [0.1] * 5,
        "layer": ["l"] * 4 + ["shallow"], "mod": [0.3, 0.1, 0.2, 0.4, 0.9],
    }).iloc[[4, 0, 1, 2, 3]]  # fmt: skip
    matrix = results.transfer_matrix(summary, 0.1)
    assert list(matrix.index) == ["a", "b"] and list(matrix.columns) == ["a", "b"]  # as they first appear
    assert matrix.loc["a", "b"] == 0.1 and matrix.loc["a", "a"] == 0.4  # row: crafted on; column: evaluated on
    # each model at its deepest layer in the table ("l" comes after "shallow" for model a)
