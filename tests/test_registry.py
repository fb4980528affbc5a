"""The registry's parameter typing: the one place text becomes a parameter's value, refusing what it cannot read."""

import pytest

from gcdash import attacks
from gcdash.errors import GcdashError
from gcdash.registry import parse_bool, typed_value


@pytest.mark.parametrize("word", ["true", "True", "YES", "1", " yes "])
def test_true_words(word):
    assert parse_bool(word) is True


@pytest.mark.parametrize("word", ["false", "FALSE", "No", "0", False])
def test_false_words(word):
    assert parse_bool(word) is False


@pytest.mark.parametrize("word", ["maybe", "ture", "", "2", "off"])
def test_any_other_word_is_refused_not_read_as_false(word):
    with pytest.raises(GcdashError, match=f"flag must be true or false .*got '{word}'"):
        parse_bool(word, "flag")


def test_a_configurables_parameters_are_typed_and_refused_by_name():
    pgd = attacks.get("pgd")
    assert pgd.params(random_start="no", steps="3")["random_start"] is False
    with pytest.raises(GcdashError, match="attack pgd random_start must be true or false"):
        pgd.params(random_start="maybe")
    with pytest.raises(GcdashError, match="attack pgd steps must be an integer, got 'two'"):
        pgd.params(steps="two")
    assert typed_value(0.5, "0.25") == 0.25 and typed_value("a", 3) == "3"
