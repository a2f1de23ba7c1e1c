from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import pytest

from pipeline.options import ConfigError, from_mapping, parse_assignments


class Mode(StrEnum):
    FAST = "fast"
    SAFE = "safe"


@dataclass
class Inner:
    workers: int = 1
    address: str | None = None


@dataclass
class Outer:
    name: str = "x"
    ratio: float = 0.5
    enabled: bool = True
    mode: Mode = Mode.SAFE
    tags: tuple[str, ...] = ()
    inner: Inner = field(default_factory=Inner)


def test_strings_from_the_command_line_become_typed_values():
    data = parse_assignments(["ratio=0.25", "enabled=false", "mode=fast", "tags=a,b", "inner.workers=4",
                              "inner.address=none"])
    config = from_mapping(Outer, data)
    assert config == Outer(ratio=0.25, enabled=False, mode=Mode.FAST, tags=("a", "b"), inner=Inner(4, None))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ratoi": 1}, "unknown config key ratoi"),
        ({"inner": {"wrokers": 2}}, "unknown config key inner.wrokers"),
        ({"inner": {"workers": "two"}}, "inner.workers: expected int, got str 'two'"),
        ({"inner": {"workers": 2.5}}, "inner.workers: expected int, got float 2.5"),
        ({"enabled": "maybe"}, "enabled: expected true/false"),
        ({"mode": "slow"}, "mode: 'slow' is not one of"),
        ({"inner": 3}, "inner: expected a mapping"),
    ],
)
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping(Outer, data)


def test_assignments_need_an_equals_sign():
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignments(["workers"])
