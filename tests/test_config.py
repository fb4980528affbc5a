"""Sweep configs: eps parsing and its display inverse, stable keys."""

import pytest

from gcdash.config import DEFAULT_EPS, ModelSpec, SweepConfig, eps_text, parse_eps
from gcdash.errors import GcdashError


def test_eps_text_is_the_inverse_of_parse_eps():
    for eps in (*DEFAULT_EPS, 0.01, 0.5, 3 / 255):
        assert parse_eps(eps_text(eps)) == pytest.approx((eps,))
    assert [eps_text(e) for e in (0.0, 4 / 255, 0.01)] == ["0", "4/255", "0.01"]


def test_parse_eps_sorts_dedups_and_refuses_bad_values():
    assert parse_eps("8/255, 0, 4/255, 8/255") == (0.0, 4 / 255, 8 / 255)
    for bad in ("", "-1/255", "x"):
        with pytest.raises(GcdashError):
            parse_eps(bad)


def test_config_key_depends_on_weights():
    base = SweepConfig(models=(ModelSpec("vgg16"),))
    assert base.key() == SweepConfig(models=(ModelSpec("vgg16"),)).key()
    assert base.key() != SweepConfig(models=(ModelSpec("vgg16", "/ckpt.pt"),)).key()


@pytest.mark.parametrize(
    "text, message",
    [("0,-1/255", "eps must be ≥ 0, got -1/255"), ("1.0000001", "eps 1.0000001 is above 1"), ("2/1", "eps 2/1 is")],
)
def test_eps_refusals_quote_the_value_as_typed(text, message):
    with pytest.raises(GcdashError) as err:
        parse_eps(text)
    assert message in str(err.value)
