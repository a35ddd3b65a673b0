"""Shared pytest fixtures: a tiny birds dataset built once per test session."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tiny_data import make_tiny_birds  # noqa: E402


@pytest.fixture(scope="session")
def tiny_birds(tmp_path_factory) -> Path:
    """Root of a preprocessed tiny birds dataset (see `tiny_data.make_tiny_birds`); treat as read-only."""
    return make_tiny_birds(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict:
    """Tiny Stage-I and Stage-II snapshots and a text encoder for the tiny birds (see
    `tiny_data.make_tiny_models`); treat as read-only."""
    from tiny_data import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("tiny_models"))
