"""Fixtures shared by the test modules, and the ``--full`` switch for the long runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.helpers import redis_server

# CI runs the property tests briefly; `pytest --full` (or `make reliability`) runs them for real.
settings.register_profile("ci", max_examples=150, deadline=None)
settings.register_profile(
    "full", max_examples=5_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--full",
        action="store_true",
        help="Run fuzzing and the soak at full size (minutes, not seconds).",
    )


def pytest_configure(config: pytest.Config) -> None:
    settings.load_profile("full" if config.getoption("--full") else "ci")


@pytest.fixture(scope="session")
def full_run(request: pytest.FixtureRequest) -> bool:
    """Whether this is the long run (``pytest --full``)."""
    return bool(request.config.getoption("--full"))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server for the whole test run (started on first use)."""
    with redis_server() as url:
        yield url
