"""Bad ``[votes]`` and ``[gate]`` settings are refused by name, as configuration errors."""

from __future__ import annotations

import pytest

from node.pause.gate import GateConfig
from node.pause.planner import VotesConfig
from protocol.errors import ConfigurationError


@pytest.mark.parametrize(
    ("data", "field"),
    [({"auto": "always"}, "auto"), ({"propose_delay_s": -1}, "propose_delay_s"), ({"surprise": 1}, "surprise")],
)
def test_bad_votes_setting_names_section_and_field(data, field) -> None:
    with pytest.raises(ConfigurationError, match=rf"^node\.toml \[votes\] {field}: ") as e:
        VotesConfig.from_mapping(data)
    assert e.value.code == "config"


def test_bad_gate_setting_names_section_and_field() -> None:
    with pytest.raises(ConfigurationError, match=r"^\[gate\] surprise: ") as e:
        GateConfig.from_mapping({"surprise": 1})
    assert e.value.code == "config"
