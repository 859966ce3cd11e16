"""Fixtures: the binary under test, a shared server per test module, and a
factory for servers with a configuration of their own.

Nothing is built here: the test command builds first (`cargo build -p
postamt`), or `POSTAMT_BIN` names the binary.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import Postamt, find_binary


@pytest.fixture(scope="session")
def postamt_bin() -> Path:
    path = find_binary()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"postamt binary not found at {path}: build it first (`cargo build -p postamt`) "
            "or set POSTAMT_BIN",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def server(postamt_bin, tmp_path_factory):
    """A running server shared by the tests of one module (each test uses
    users and tokens of its own); stopped with SIGTERM, must exit 0."""
    srv = Postamt(postamt_bin, tmp_path_factory.mktemp("postamt"))
    srv.start()
    try:
        yield srv
        srv.stop()
    finally:
        srv.kill9()


@pytest.fixture
def postamt_factory(postamt_bin, tmp_path_factory):
    """Makes servers with config overrides: `make(overrides, start=True)`.
    Every server still running at the end is stopped and must exit 0."""
    made: list[Postamt] = []

    def make(overrides: dict | None = None, start: bool = True) -> Postamt:
        srv = Postamt(postamt_bin, tmp_path_factory.mktemp("postamt"), overrides)
        made.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    errors = []
    for srv in made:
        try:
            srv.stop()
        except AssertionError as e:
            errors.append(str(e))
        finally:
            srv.kill9()
    assert not errors, "\n".join(errors)
