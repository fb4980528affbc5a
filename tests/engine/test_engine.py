"""ModelEngine: pass counts on cold, warm and partial sweeps; damage is recomputed; cancel keeps finished
batches; a transfer source comes from the caller."""

from pathlib import Path

import pandas as pd
import pytest

import gcdash.engine
from gcdash import models
from gcdash.engine import ModelEngine
from gcdash.errors import Cancelled, GcdashError
from gcdash.store import Store
from tests.engine.helpers import EPS, small


def test_cold_sweep_costs_one_plus_n_eps_forwards_per_image_whatever_the_layers(tiny_handle, tiny_samples, store):
    counted = []
    hook = tiny_handle.net.register_forward_hook(lambda m, i, o: counted.append(len(i[0])))
    engine = small(tiny_handle, store)
    table = engine.table(tiny_samples, EPS, "all")
    hook.remove()
    n, n_eps = len(tiny_samples), 2  # eps = 0 reuses the clean pass; FGSM's gradient rides on the clean forward
    assert engine.passes == sum(counted) == n * (1 + n_eps)
    assert engine.shared == n
    assert len(table) == n * len(EPS) * 3
    assert (table.loc[table.eps == 0, "nissim"].abs() < 1e-9).all()


def test_identical_second_sweep_makes_no_model_pass(tiny_handle, tiny_samples, store):
    first = small(tiny_handle, store).table(tiny_samples, EPS, "all")
    counted = []
    hook = tiny_handle.net.register_forward_hook(lambda m, i, o: counted.append(len(i[0])))
    again = small(tiny_handle, store)
    second = again.table(tiny_samples, EPS, "all")
    hook.remove()
    assert again.passes == 0 and counted == []
    pd.testing.assert_frame_equal(first, second)


def test_an_added_eps_costs_one_pass_per_image(tiny_handle, tiny_samples, store):
    small(tiny_handle, store).table(tiny_samples, EPS, "all")
    engine = small(tiny_handle, store)
    engine.table(tiny_samples, [*EPS, 16 / 255], "all")
    assert engine.passes == len(tiny_samples)


def test_an_added_layer_costs_one_plus_n_eps_passes_per_image(tiny_handle, tiny_samples, store):
    small(tiny_handle, store).table(tiny_samples, EPS, ["block3"])
    engine = small(tiny_handle, store)
    engine.table(tiny_samples, EPS, ["block2", "block3"])
    assert engine.passes == len(tiny_samples) * (1 + 2)


def test_added_images_cost_only_their_own_passes(tiny_handle, tiny_samples, store):
    small(tiny_handle, store).table(tiny_samples.subset(range(5)), EPS)
    engine = small(tiny_handle, store)
    engine.table(tiny_samples, EPS)
    assert engine.passes == 3 * (1 + 2) and engine.shared == 3


def test_damaged_cells_are_recomputed(tiny_handle, tiny_samples, tmp_path):
    store = Store(tmp_path)
    first = small(tiny_handle, store).table(tiny_samples, EPS, "all")
    conn = store._conn()
    with conn:
        conn.execute("UPDATE arrays SET blob = substr(blob, 1, 20)")  # every array truncated
        conn.execute("DELETE FROM scalars")
    engine = small(tiny_handle, store)
    second = engine.table(tiny_samples, EPS, "all")
    assert engine.passes == len(tiny_samples) * (1 + 2) and engine.shared == len(tiny_samples)
    pd.testing.assert_frame_equal(first, second, atol=1e-6)


def test_cancel_keeps_finished_batches(tiny_handle, tiny_samples, store):
    calls = iter([False, True])
    with pytest.raises(Cancelled):
        small(tiny_handle, store).table(tiny_samples, EPS, should_stop=lambda: next(calls))
    engine = small(tiny_handle, store)
    engine.table(tiny_samples, EPS)
    assert engine.passes == (len(tiny_samples) - 4) * (1 + 2)  # the first batch of 4 was kept


def test_a_transfer_source_comes_from_the_caller(tiny_handle, store):
    from gcdash.config import AttackConfig, CamConfig, DataConfig, ModelSpec, SweepConfig

    attack = AttackConfig("fgsm", (("source", "tiny-cnn2"),))
    config = SweepConfig((ModelSpec("tiny-cnn"),), DataConfig("tiny", 8, 0), (0.0,), "all", CamConfig(), attack=attack)
    with pytest.raises(GcdashError, match="transfer source tiny-cnn2 is not loaded"):
        ModelEngine.from_config(tiny_handle, store, config)
    source = models.load("tiny-cnn2")
    engine = ModelEngine.from_config(tiny_handle, store, config, handles={"tiny-cnn2": source})
    assert engine.adversary.source is source


def test_the_engine_never_loads_a_model():
    for path in Path(gcdash.engine.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "models.load" not in text and "from gcdash import models" not in text, path.name
