"""The value syntax (phonetui.space): one value, a list A,B or a range LO:HI, read once for flags and fields."""

from __future__ import annotations

import pytest

from phonetui import space
from phonetui.errors import PhonetuiError


def test_a_value_a_list_and_a_range() -> None:
    assert space.parse("lr", "3e-4") == space.Field("lr", space.Shape.VALUE, (3e-4,))
    assert space.parse("batch_size", "64, 128,64") == space.Field("batch_size", space.Shape.LIST, (64, 128))
    assert space.parse("lr", "1e-4:1e-2") == space.Field("lr", space.Shape.RANGE, (1e-4, 1e-2))
    assert space.parse("epochs", "2:5").values == (2, 5) and space.parse("lr", "1e-4:1e-2").value == 1e-4
    assert space.parse("device", "cuda:1") == space.Field("device", space.Shape.VALUE, ("cuda:1",))  # its own colon
    assert space.parse("device", "cpu,cuda:0").values == ("cpu", "cuda:0")


@pytest.mark.parametrize("key, text, flag_error, field_reason", [
    ("batch_size", "64,0", "--batch-size 0: must be an integer >= 1", "0: must be an integer >= 1"),
    ("lr", "abc", "--lr abc: not a number", "not a number"),
    ("lr", "1e-2:1e-4", "--lr 1e-2:1e-4: a range needs numbers LO:HI with LO < HI", space.RANGE_REASON),
    ("lr", "1:2:3", "--lr 1:2:3: a range needs", space.RANGE_REASON),
    ("lr", "1e-4:1e-2,3", "--lr 1e-4:1e-2,3: a range needs", space.RANGE_REASON),
    ("lr", "x:1", "--lr x:1: a range needs", space.RANGE_REASON),
])
def test_what_is_wrong_is_said_for_the_flag_and_for_the_field(key, text, flag_error, field_reason) -> None:
    with pytest.raises(PhonetuiError) as e:
        space.parse(key, text)
    assert str(e.value).startswith(flag_error)
    assert space.read(key, text) == (None, field_reason)


def test_the_job_a_set_of_values_asks_for() -> None:
    fields = [space.parse("lr", "1e-3"), space.parse("seed", "1,2")]
    assert space.job(fields) == space.Job.SWEEP and space.job([]) == space.Job.RUN
    assert space.job([*fields, space.parse("epochs", "1:3")]) == space.Job.SEARCH
    assert space.intent("lr", "0.01:") == space.Shape.RANGE and space.intent("device", "cuda:1") == space.Shape.VALUE
    with pytest.raises(PhonetuiError, match="'colour' is not a training value"):
        space.parse("colour", "blue")
