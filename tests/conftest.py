"""Shared pytest setup. Fixtures for the local stack live in ``tests/fixtures`` (one module each)."""

pytest_plugins = [
    "tests.fixtures.azurite",
    "tests.fixtures.emulator",
    "tests.fixtures.pipeline",
]
