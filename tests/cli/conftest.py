"""Fixtures for the command-line tests: finished runs shared by the tests that inspect them."""

from __future__ import annotations

import pytest

from .helpers import DEFAULT_ARGS, REGRESSION_ARGS, TrainedRun, train_once


# One training subprocess per fixture, shared by the tests that inspect it: each subprocess
# spends seconds importing torch, so the assertions on one run are split across tests, not runs.
@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    return train_once(tmp_path_factory, "default", DEFAULT_ARGS)


@pytest.fixture(scope="session")
def regression_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    return train_once(tmp_path_factory, "regression", REGRESSION_ARGS)
