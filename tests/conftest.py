"""Shared test settings: hypothesis runs without deadlines (CI is a 2-core machine) and without a
local example database, so a run leaves nothing behind in the clone."""
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]

settings.register_profile(
    "xlref", deadline=None, database=None, max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", parent=settings.get_profile("xlref"), max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "xlref"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
