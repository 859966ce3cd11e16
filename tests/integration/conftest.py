"""Fixtures: the binary under test, a shared server per test module, and a
factory for servers with a configuration of their own.

Nothing is built here: the test command builds first (`cargo build -p
postamt`), or `POSTAMT_BIN` names the binary.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import SECURE_LISTEN, Postamt, find_binary


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


@pytest.fixture(scope="module")
def secure_server(postamt_bin, tmp_path_factory):
    """Like `server`, with every port of issue 3 listening (smtp, submission,
    submissions, pop3, pop3s) and no `[tls]`: the self-signed certificate."""
    srv = Postamt(postamt_bin, tmp_path_factory.mktemp("postamt"), {"listen": SECURE_LISTEN})
    srv.start()
    try:
        yield srv
        srv.stop()
    finally:
        srv.kill9()


# --------------------------------------------------------------------------
# Remote delivery (issue 4): a stub DNS server and scripted SMTP sinks.


@pytest.fixture
def dns_stub():
    """A stub DNS server on loopback (UDP+TCP); `dns_stub.addr` goes into
    `[dns] nameservers`. Stopped after the test."""
    from dnsstub import DnsStub

    stub = DnsStub().start()
    try:
        yield stub
    finally:
        stub.stop()


@pytest.fixture
def sink_factory():
    """Makes SMTP sinks: `make(host, port=0, **options)` (see sinks.Sink).
    Every sink is stopped after the test."""
    from sinks import Sink

    made = []

    def make(host: str, port: int = 0, **kwargs):
        sink = Sink(host, port, **kwargs)
        made.append(sink)
        return sink

    try:
        yield make
    finally:
        for sink in made:
            sink.stop()
