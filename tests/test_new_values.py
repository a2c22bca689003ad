"""A new value must differ from the row's old one, and a generator that cannot give one
is refused before anything is planned."""

from __future__ import annotations

import random

import pytest
from django.core.management import CommandError

from rotator.models import Run
from tests.conftest import run
from tests.testapp.models import ApiKey

pytestmark = pytest.mark.django_db(transaction=True)


def a_or_b() -> str:
    """A low-entropy generator: it draws a row's own old value half the time."""
    return random.choice("ab")


def constant() -> str:
    return "same"


def one_of_ten() -> str:
    return f"k{random.randrange(10)}"


def test_a_row_never_keeps_its_old_value_even_when_the_generator_draws_it():
    ApiKey.objects.bulk_create(ApiKey(label="a") for _ in range(300))
    run("rotate_field", "testapp.ApiKey.label", "--generator", f"{__name__}.a_or_b", "-v", "0")
    assert set(ApiKey.objects.values_list("label", flat=True)) == {"b"}


def test_a_constant_generator_is_refused_before_planning():
    ApiKey.objects.bulk_create(ApiKey(label="x") for _ in range(20))
    with pytest.raises(CommandError) as refused:
        run("rotate_field", "testapp.ApiKey.label", "--generator", f"{__name__}.constant")
    assert str(refused.value) == (
        f"generator '{__name__}.constant' made the same value 64 times in a row: a new value "
        "must differ from the old one; pass --generator with a larger value space"
    )
    assert not Run.objects.exists()


def test_a_tiny_value_space_for_a_unique_column_is_refused_before_planning():
    ApiKey.objects.bulk_create(ApiKey() for _ in range(5))
    with pytest.raises(CommandError) as refused:
        run("rotate_field", "testapp.ApiKey.key", "--generator", f"{__name__}.one_of_ten")
    assert str(refused.value).startswith(f"generator '{__name__}.one_of_ten' made only ")
    assert str(refused.value).endswith(
        " distinct values in 64: testapp.ApiKey.key is unique, so its value space is nearly "
        "full already; pass --generator with a larger value space"
    )
    assert not Run.objects.exists()
