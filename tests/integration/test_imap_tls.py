"""IMAP over TLS and the login rules: STARTTLS on the imap port, implicit
TLS on imaps, LOGINDISABLED for plaintext from non-loopback addresses,
nothing pipelined after STARTTLS executed, `* BYE` at shutdown, and the
retrieval log (user, client address, folder actions, queue ids)."""

from __future__ import annotations

import socket
import ssl

import pytest

from support import DOMAIN, HOSTNAME, non_loopback_ipv4, uniq, wait_until
from test_imap_support import (
    IMAP_LISTEN,
    RawImap,
    connect,
    connect_tls,
    deliver,
    imap_server,
    ok,
    starttls,
)


@pytest.fixture(scope="module")
def srv(postamt_bin, tmp_path_factory):
    s = imap_server(postamt_bin, tmp_path_factory.mktemp("imaptls"))
    try:
        yield s
        s.stop()
    finally:
        s.kill9()


def test_starttls_then_login(srv):
    user, pw = srv.add_user()
    m = connect(srv)
    try:
        assert "STARTTLS" in m.capabilities
        starttls(m, srv)
        caps = m.capabilities
        assert "STARTTLS" not in caps and "AUTH=PLAIN" in caps, caps
        ok(m.login(user, pw))
        ok(m.select("INBOX"))
        cipher = m.sock.cipher()
        assert cipher and cipher[1] in ("TLSv1.2", "TLSv1.3"), cipher
    finally:
        m.logout()


def test_imaps(srv):
    user, pw = srv.add_user()
    deliver(srv, user, 1)
    m = connect_tls(srv)
    try:
        assert "STARTTLS" not in m.capabilities
        ok(m.login(user, pw))
        assert ok(m.select("INBOX")) == [b"1"]
        body = ok(m.fetch("1", "(BODY.PEEK[])"))[0][1]
        assert body in srv.messages(user)
    finally:
        m.logout()


def test_plaintext_after_starttls_is_dropped(srv):
    user, pw = srv.add_user()
    c = RawImap(srv.addr("imap"))
    try:
        # LOGIN pipelined after STARTTLS must never run in plaintext.
        c.send(b"a1 STARTTLS\r\na2 LOGIN " + user.encode() + b' "' + pw.encode() + b'"\r\n')
        assert c.line() == b"a1 OK Begin TLS negotiation now\r\n"
        c.buf = b""
        c.sock = srv.tls_context().wrap_socket(c.sock, server_hostname=HOSTNAME)
        lines = c.command(b"a3", b"NOOP")
        assert not any(l.startswith(b"a2 ") for l in lines), lines
        assert lines[-1].startswith(b"a3 OK")
        lines = c.command(b"a4", b"SELECT INBOX")
        assert lines[-1].startswith(b"a4 BAD"), "not logged in: the plaintext LOGIN was dropped"
    finally:
        c.close()


def test_logindisabled_without_tls_from_other_addresses(postamt_factory):
    ip = non_loopback_ipv4()
    if ip is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    try:
        socket.create_server((ip, 0)).close()
    except OSError as e:
        pytest.skip(f"cannot listen on {ip}: {e}")
    srv = postamt_factory({"listen": {"smtp": ["127.0.0.1:0"], "imap": [f"{ip}:0"], "imaps": [f"{ip}:0"]}})
    user, pw = srv.add_user()
    c = RawImap(srv.addr("imap"), timeout=40)
    try:
        assert b"LOGINDISABLED" in c.greeting and b"AUTH=PLAIN" not in c.greeting, c.greeting
        last = c.command(b"a1", b"LOGIN " + user.encode() + b' "' + pw.encode() + b'"')[-1]
        assert last.startswith(b"a1 NO [PRIVACYREQUIRED]"), last
        last = c.command(b"a2", b"AUTHENTICATE PLAIN")[-1]
        assert last.startswith(b"a2 NO"), last
        assert c.command(b"a3", b"STARTTLS")[-1].startswith(b"a3 OK")
        c.buf = b""
        c.sock = srv.tls_context().wrap_socket(c.sock, server_hostname=HOSTNAME)
        caps = c.command(b"a4", b"CAPABILITY")[0]
        assert b"AUTH=PLAIN" in caps and b"LOGINDISABLED" not in caps, caps
        last = c.command(b"a5", b"LOGIN " + user.encode() + b' "' + pw.encode() + b'"')[-1]
        assert last.startswith(b"a5 OK"), last
    finally:
        c.close()
    m = connect_tls(srv, timeout=40)
    try:
        ok(m.login(user, pw))
    finally:
        m.logout()


def test_shutdown_says_bye(postamt_factory):
    srv = postamt_factory({"listen": dict(IMAP_LISTEN)})
    user, pw = srv.add_user()
    c = RawImap(srv.addr("imap"))
    try:
        assert c.command(b"a1", b"LOGIN " + user.encode() + b' "' + pw.encode() + b'"')[-1].startswith(b"a1 OK")
        assert c.command(b"a2", b"SELECT INBOX")[-1].startswith(b"a2 OK")
        c.send(b"a3 IDLE\r\n")
        assert c.line().startswith(b"+ ")
        rc = srv.terminate()
        assert rc == 0
        assert c.line(timeout=10).startswith(b"* BYE"), "BYE before the close"
    finally:
        c.close()


def test_retrieval_log_names_user_peer_actions_and_queue_ids(srv):
    user, pw = srv.add_user()
    token = uniq("log")
    from support import simple_message

    qid = srv.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], simple_message(token, to=f"{user}@{DOMAIN}"))
    srv.wait_messages(user, 1)
    m = connect(srv, user, pw)
    try:
        ok(m.create("Logged"))
        ok(m.select("INBOX"))
        ok(m.fetch("1", "(BODY[])"))
        ok(m.copy("1", "Logged"))
        ok(m.store("1", "+FLAGS", "(\\Deleted)"))
        ok(m.expunge())
        ok(m.delete("Logged"))
    finally:
        m.logout()
    actions = ("login", "select", "fetch body", "copy", "expunge", "delete", "logout", "session end")

    def mine():
        lines = [l for l in srv.log("retrieval").splitlines() if user in l]
        return lines if all(any(a in l for l in lines) for a in actions) else None

    lines = wait_until(mine, 15, f"every IMAP action of {user} in the retrieval log")
    assert any(qid in l and "fetch body" in l for l in lines), lines
    assert any("127.0.0.1" in l for l in lines), lines
