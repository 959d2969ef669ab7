"""`!planifier` argument parsing: whatever is typed, a usable action or a UsageError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commands.base import UsageError
from commands.planifier import parse


@pytest.mark.parametrize("text", ["18:00 !", "18:00 /", '"lun-ven 18:00" !!  ', "18:00", "8h30 ! "])
def test_a_time_without_a_command_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="précisez la commande"):
        parse(text)


def test_a_prefixed_command_is_kept_without_its_prefix() -> None:
    action = parse('"lun-ven 18:00" !resume 1j')
    assert (action.action, action.spec, action.command_line) == (
        "add",
        "lun-ven 18:00",
        "resume 1j",
    )


@given(st.text(alphabet=st.sampled_from(list('!/ "18:0h lunvedrsm-,')), max_size=30))
def test_never_crashes_and_an_added_command_has_a_word(text: str) -> None:
    try:
        action = parse(text)
    except UsageError:
        return
    if action.action == "add":
        assert action.command_line.split(), "run() reads the command's first word"
        assert not action.command_line.startswith(("!", "/"))
