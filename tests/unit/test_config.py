"""`Settings.from_env`: names, defaults and the one way numbers are read."""

from __future__ import annotations

import pytest

from pts.config import Settings


def test_defaults_when_unset_or_empty() -> None:
    settings = Settings.from_env({"PTS_IDLE_TIMEOUT_SECONDS": "", "PTS_BATCH_MAX_BYTES": " "})
    assert settings.idle_timeout == 120.0
    assert settings.batch_max_bytes == 4096
    assert settings.source == "demo"


def test_numbers_are_parsed_by_their_kind() -> None:
    settings = Settings.from_env({"PTS_RETENTION_DAYS": "7", "PTS_BATCH_MAX_DELAY_SECONDS": "0.25"})
    assert (settings.retention_days, settings.batch_max_delay) == (7, 0.25)
    with pytest.raises(ValueError, match="PTS_BATCH_MAX_BYTES must be a whole number"):
        Settings.from_env({"PTS_BATCH_MAX_BYTES": "4.5"})


def test_source_is_read_from_its_new_and_its_old_name() -> None:
    assert Settings.from_env({"PTS_GENERATOR": "bedrock"}).source == "bedrock"
    assert Settings.from_env({"PTS_SOURCE": "openai", "PTS_GENERATOR": "bedrock"}).source == (
        "openai"
    )
