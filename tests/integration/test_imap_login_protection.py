"""Login protection over IMAP end to end (issues 3 and 6): failed IMAP
logins (LOGIN and AUTHENTICATE PLAIN) are answered after a delay that
grows per client address and per account (2 s, 4 s, 8 s ...), with the
same tagged `NO` for an unknown user and a wrong password; the counters
are the ones POP3 uses, so failures over POP3 slow down the next IMAP
attempt and the reverse, by address and by account; the right password
still works after the failures, over both protocols.

Only lower bounds on time are asserted: the delays are the protocol's
promise, not a speed. Every test has a server of its own (and the tests
that need a fresh counter use a loopback source address of their own: all
of 127.0.0.0/8 is this machine), so delays never pile up across tests."""

from __future__ import annotations

import base64

import pytest

from support import RawClient, uniq
from test_imap_support import IMAP_LISTEN
from test_login_protection import BOUNDS, LOGIN_TIMEOUT, pop3_login, timed


@pytest.fixture
def srv(postamt_factory):
    return postamt_factory({"listen": dict(IMAP_LISTEN)})


def _quote(s: str) -> bytes:
    return b'"' + s.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def imap_login(srv, user: str, password: str, source: str = "127.0.0.1", mechanism: str = "LOGIN") -> tuple[bytes, float]:
    """One login on a fresh connection to the plain imap port (allowed on
    loopback): the tagged reply line and the seconds it took. `mechanism`
    is LOGIN or PLAIN (AUTHENTICATE PLAIN with an initial response). After
    a success the session must be usable (SELECT INBOX) and logs out."""
    c = RawClient(srv.addr("imap"), LOGIN_TIMEOUT, (source, 0))
    try:
        greeting = c.read_line()
        assert greeting.startswith(b"* OK"), greeting
        if mechanism == "LOGIN":
            c.send(b"a1 LOGIN " + _quote(user) + b" " + _quote(password) + b"\r\n")
        else:
            ir = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
            c.send(b"a1 AUTHENTICATE PLAIN " + ir + b"\r\n")
        line, took = timed(c.read_line)
        assert line.startswith(b"a1 "), f"untagged line before the login reply: {line!r}"
        if line.startswith(b"a1 OK"):
            c.send(b"a2 SELECT INBOX\r\n")
            for _ in range(50):
                l = c.read_line()
                if l.startswith(b"a2 "):
                    assert l.startswith(b"a2 OK"), f"SELECT after login: {l!r}"
                    break
            else:
                raise AssertionError("no tagged reply to SELECT")
            c.send(b"a3 LOGOUT\r\n")
        return line, took
    finally:
        c.close()


def assert_lower_bounds(took, bounds, what):
    for i, (t, bound) in enumerate(zip(took, bounds), 1):
        assert t >= bound, f"{what} {i} answered after {t:.2f}s, expected >= {bound}s (all: {[round(x, 2) for x in took]})"


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_imap_failures_grow_slower_and_look_the_same(srv, mechanism):
    user, pw = srv.add_user()
    unknown1, t1 = imap_login(srv, uniq("ghost"), pw, mechanism=mechanism)
    wrong, t2 = imap_login(srv, user, pw + "x", mechanism=mechanism)
    unknown2, t3 = imap_login(srv, uniq("ghost"), pw + "y", mechanism=mechanism)
    assert wrong.startswith(b"a1 NO [AUTHENTICATIONFAILED]"), wrong
    assert unknown1 == wrong == unknown2, \
        f"replies differ: unknown {unknown1!r} / wrong password {wrong!r} / unknown {unknown2!r}"
    assert_lower_bounds((t1, t2, t3), BOUNDS, f"{mechanism} failure")
    # The right password still works after the failures, and again.
    ok, _ = imap_login(srv, user, pw, mechanism=mechanism)
    assert ok.startswith(b"a1 OK"), f"right password after failures: {ok!r}"
    ok, _ = imap_login(srv, user, pw, mechanism=mechanism)
    assert ok.startswith(b"a1 OK"), f"second right login: {ok!r}"


def test_failures_on_one_connection_grow_then_bye(srv):
    """Three failures on one connection: each waits longer than the last
    one's bound, then `* BYE` and the connection closes."""
    user, pw = srv.add_user()
    c = RawClient(srv.addr("imap"), LOGIN_TIMEOUT, ("127.0.0.1", 0))
    try:
        assert c.read_line().startswith(b"* OK")
        took, replies = [], []
        for i in range(3):
            tag = b"b%d" % i
            c.send(tag + b" LOGIN " + _quote(user) + b" " + _quote(pw + "x") + b"\r\n")
            line, t = timed(c.read_line)
            replies.append(line[len(tag):])
            took.append(t)
        assert all(r == b" NO [AUTHENTICATIONFAILED] Authentication failed\r\n" for r in replies), replies
        assert_lower_bounds(took, BOUNDS, "failure on one connection")
        bye = c.read_line()
        assert bye.startswith(b"* BYE"), bye
        with pytest.raises((EOFError, ConnectionError)):
            c.read_line()
    finally:
        c.close()
    ok, _ = imap_login(srv, user, pw)
    assert ok.startswith(b"a1 OK"), ok


@pytest.mark.parametrize("first", ["pop3", "imap"])
def test_failures_shared_with_pop3_same_account_and_address(srv, first):
    """A failure over one protocol makes the next failure over the other,
    for the same account from the same address, wait a second failure's
    delay; then the right password works over both."""
    user, pw = srv.add_user()
    source = "127.0.0.2"
    if first == "pop3":
        r1, t1 = pop3_login(srv, user, pw + "x", source=source)
        assert r1[1].startswith(b"-ERR"), r1
        r2, t2 = imap_login(srv, user, pw + "y", source=source)
        assert r2.startswith(b"a1 NO [AUTHENTICATIONFAILED]"), r2
    else:
        r1, t1 = imap_login(srv, user, pw + "x", source=source)
        assert r1.startswith(b"a1 NO [AUTHENTICATIONFAILED]"), r1
        r2, t2 = pop3_login(srv, user, pw + "y", source=source)
        assert r2[1].startswith(b"-ERR"), r2
    assert t1 >= BOUNDS[0], f"first failure ({first}) took {t1:.2f}s"
    assert t2 >= BOUNDS[1], \
        f"second failure, other protocol, same account and address, took {t2:.2f}s: counters not shared?"
    ok, _ = imap_login(srv, user, pw, source=source)
    assert ok.startswith(b"a1 OK"), f"IMAP with the right password after the failures: {ok!r}"
    okp, _ = pop3_login(srv, user, pw, source=source)
    assert okp[1].startswith(b"+OK"), f"POP3 with the right password after the failures: {okp}"


def test_pop3_failures_slow_down_imap_from_the_same_address(srv):
    """Only the address is shared: POP3 failures for one (unknown) name,
    then an IMAP failure for another name from the same address waits the
    address's third-failure delay."""
    source = "127.0.0.3"
    pw = "not-the-password"
    took = []
    for _ in range(2):
        r, t = pop3_login(srv, uniq("ghost"), pw, source=source)
        assert r[1].startswith(b"-ERR"), r
        took.append(t)
    r, t = imap_login(srv, uniq("ghost"), pw, source=source)
    assert r.startswith(b"a1 NO [AUTHENTICATIONFAILED]"), r
    took.append(t)
    assert_lower_bounds(took, BOUNDS, "failure from one address (POP3, POP3, IMAP)")
    # A real account from that address still gets in with its password.
    user, upw = srv.add_user()
    ok, _ = imap_login(srv, user, upw, source=source)
    assert ok.startswith(b"a1 OK"), ok


def test_imap_failures_slow_down_pop3_for_the_same_account(srv):
    """Only the account is shared: IMAP failures for an account from two
    addresses, then a POP3 failure for it from a third address waits the
    account's third-failure delay; the right password then works from a
    fourth address over both protocols."""
    user, pw = srv.add_user()
    took = []
    for source in ("127.0.0.4", "127.0.0.5"):
        r, t = imap_login(srv, user, pw + "x", source=source)
        assert r.startswith(b"a1 NO [AUTHENTICATIONFAILED]"), r
        took.append(t)
    r, t = pop3_login(srv, user, pw + "x", source="127.0.0.6")
    assert r[1].startswith(b"-ERR"), r
    took.append(t)
    assert_lower_bounds(took, BOUNDS, "failure for one account (IMAP, IMAP, POP3)")
    okp, _ = pop3_login(srv, user, pw, source="127.0.0.7")
    assert okp[1].startswith(b"+OK"), okp
    ok, _ = imap_login(srv, user, pw, source="127.0.0.7")
    assert ok.startswith(b"a1 OK"), ok
