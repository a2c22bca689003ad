"""A new value must differ from the row's old one."""

from __future__ import annotations

import random

import pytest

from tests.conftest import run
from tests.testapp.models import ApiKey

pytestmark = pytest.mark.django_db(transaction=True)


def a_or_b() -> str:
    """A low-entropy generator: it draws a row's own old value half the time."""
    return random.choice("ab")


def test_a_row_never_keeps_its_old_value_even_when_the_generator_draws_it():
    ApiKey.objects.bulk_create(ApiKey(label="a") for _ in range(300))
    run("rotate_field", "testapp.ApiKey.label", "--generator", f"{__name__}.a_or_b", "-v", "0")
    assert set(ApiKey.objects.values_list("label", flat=True)) == {"b"}
