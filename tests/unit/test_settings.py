"""The settings object: copies are validated as the settings are."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stream_rec.settings import ModelSettings


def test_a_replaced_copy_is_validated() -> None:
    assert ModelSettings().replaced(dim=16).dim == 16
    with pytest.raises(ValidationError, match="dim"):
        ModelSettings().replaced(dim=4)
    with pytest.raises(ValidationError, match="encoder"):
        ModelSettings().replaced(encoder="rnn")
