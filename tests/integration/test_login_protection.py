"""Login protection and connection limits end to end (issue 3): failed
logins answered after a delay that grows per client address (2 s, 4 s,
8 s ...) and per account; byte-identical replies for unknown users and
wrong passwords (POP3 and SMTP AUTH); right passwords still work after
failures; the verified-credential cache forgets a changed or deleted
password; per-IP and total connection caps, the error limit and idle
timeouts on the submission and POP3 ports.

Only lower bounds on time are asserted. Every test that fails logins has
a server of its own (or a loopback source address of its own: all of
127.0.0.0/8 is this machine), so delays never pile up across tests."""

from __future__ import annotations

import ssl
import time

import pytest

from support import (
    DOMAIN,
    RawClient,
    auth_plain,
    uniq,
)

# Lower bounds for the 1st, 2nd and 3rd failure from one address (the
# server promises 2 s, 4 s, 8 s; a margin for clocks, none needed for load).
BOUNDS = (1.5, 3.5, 7.0)
LOGIN_TIMEOUT = 40.0  # above the 15 s cap, with room


def timed(fn):
    t0 = time.monotonic()
    out = fn()
    return out, time.monotonic() - t0


def pop3_login(srv, user: str, password: str, source: str = "127.0.0.1") -> tuple[list[bytes], float]:
    """USER/PASS on the plain pop3 port (allowed on loopback): the raw reply
    lines and the seconds the PASS reply took."""
    c = RawClient(srv.pop3_addr, LOGIN_TIMEOUT, (source, 0))
    try:
        greeting = c.read_line()
        assert greeting.startswith(b"+OK"), greeting
        c.send(f"USER {user}\r\n".encode())
        r1 = c.read_line()
        c.send(f"PASS {password}\r\n".encode())
        r2, took = timed(c.read_line)
        if r2.startswith(b"+OK"):
            c.send(b"STAT\r\n")
            stat = c.read_line()
            assert stat.startswith(b"+OK"), f"STAT after login: {stat!r}"
            c.send(b"QUIT\r\n")
            c.read_line()
        return [r1, r2], took
    finally:
        c.close()


def smtp_login(srv, user: str, password: str, source: str = "127.0.0.1") -> tuple[bytes, float]:
    """AUTH PLAIN on submissions (implicit TLS): the raw reply line (it must
    be a single line) and the seconds it took."""
    c = srv.raw_tls_smtp("submissions", timeout=LOGIN_TIMEOUT, source_address=(source, 0))
    try:
        c.send(b"AUTH PLAIN " + auth_plain(user, password) + b"\r\n")
        line, took = timed(c.read_line)
        assert line[3:4] == b" ", f"AUTH reply is not a single line: {line!r}"
        if line.startswith(b"235"):
            c.command(f"MAIL FROM:<{user}@{DOMAIN}>".encode(), 250)
            c.command(b"QUIT", 221)
        return line, took
    finally:
        c.close()


def test_pop3_failures_grow_slower_and_look_the_same(postamt_factory):
    srv = postamt_factory()
    user, pw = srv.add_user()
    ghost = uniq("ghost")
    unknown1, t1 = pop3_login(srv, ghost, pw)
    wrong, t2 = pop3_login(srv, user, pw + "x")
    unknown2, t3 = pop3_login(srv, uniq("ghost"), pw + "y")
    assert wrong[1].startswith(b"-ERR"), wrong
    assert unknown1 == wrong == unknown2, f"replies differ: unknown {unknown1} / wrong password {wrong} / unknown {unknown2}"
    took = (t1, t2, t3)
    for i, (t, bound) in enumerate(zip(took, BOUNDS), 1):
        assert t >= bound, f"failure {i} answered after {t:.2f}s, expected >= {bound}s (all: {[round(x, 2) for x in took]})"
    # The right password still works (possibly after a delay), and again.
    ok, _ = pop3_login(srv, user, pw)
    assert ok[1].startswith(b"+OK"), f"right password after failures: {ok}"
    ok, _ = pop3_login(srv, user, pw)
    assert ok[1].startswith(b"+OK"), f"second right login: {ok}"


def test_smtp_auth_failures_grow_slower_and_look_the_same(postamt_factory):
    srv = postamt_factory({"listen": {"submissions": ["127.0.0.1:0"]}})
    user, pw = srv.add_user()
    unknown1, t1 = smtp_login(srv, uniq("ghost"), pw)
    wrong, t2 = smtp_login(srv, user, pw + "x")
    unknown2, t3 = smtp_login(srv, uniq("ghost"), pw + "y")
    assert wrong.startswith(b"535 5.7.8 "), wrong
    assert unknown1 == wrong == unknown2, f"replies differ: unknown {unknown1!r} / wrong password {wrong!r} / unknown {unknown2!r}"
    took = (t1, t2, t3)
    for i, (t, bound) in enumerate(zip(took, BOUNDS), 1):
        assert t >= bound, f"AUTH failure {i} answered after {t:.2f}s, expected >= {bound}s (all: {[round(x, 2) for x in took]})"
    ok, _ = smtp_login(srv, user, pw)
    assert ok.startswith(b"235 2.7.0"), f"right password after failures: {ok!r}"
    ok, _ = smtp_login(srv, user, pw)
    assert ok.startswith(b"235 2.7.0"), f"second right login: {ok!r}"


def test_failures_also_counted_per_account(postamt_factory):
    """A new client address does not reset an account's delay: one failure
    for the account from 127.0.0.2, then the next from 127.0.0.3 already
    waits longer than a first failure."""
    srv = postamt_factory()
    user, pw = srv.add_user()
    first, t1 = pop3_login(srv, user, pw + "x", source="127.0.0.2")
    second, t2 = pop3_login(srv, user, pw + "x", source="127.0.0.3")
    assert first[1].startswith(b"-ERR") and second == first, (first, second)
    assert t1 >= BOUNDS[0], f"first failure took {t1:.2f}s"
    assert t2 >= BOUNDS[1], f"second failure for the account, from a fresh address, took {t2:.2f}s: no per-account counter?"
    ok, _ = pop3_login(srv, user, pw, source="127.0.0.4")
    assert ok[1].startswith(b"+OK"), ok


def test_credential_cache_forgets_changed_and_deleted_passwords(postamt_factory):
    srv = postamt_factory({"listen": {"submissions": ["127.0.0.1:0"]}})
    user, old = srv.add_user()
    gone, gone_pw = srv.add_user()
    # Warm whatever cache there is: two good logins each, both protocols.
    for _ in range(2):
        assert pop3_login(srv, user, old)[0][1].startswith(b"+OK")
        assert smtp_login(srv, user, old)[0].startswith(b"235")
        assert pop3_login(srv, gone, gone_pw)[0][1].startswith(b"+OK")
        assert smtp_login(srv, gone, gone_pw)[0].startswith(b"235")
    new = old + "-new"
    srv.cli("user", "passwd", user, "--password-stdin", input=new + "\n")
    srv.cli("user", "del", gone)
    # Each failure from an address of its own keeps the delays short.
    r, _ = pop3_login(srv, user, old, source="127.0.0.2")
    assert r[1].startswith(b"-ERR"), f"POP3 accepted the old password after `user passwd`: {r}"
    r, _ = smtp_login(srv, user, old, source="127.0.0.3")
    assert r.startswith(b"535"), f"SMTP AUTH accepted the old password after `user passwd`: {r!r}"
    r, _ = pop3_login(srv, gone, gone_pw, source="127.0.0.4")
    assert r[1].startswith(b"-ERR"), f"POP3 accepted a deleted user: {r}"
    r, _ = smtp_login(srv, gone, gone_pw, source="127.0.0.5")
    assert r.startswith(b"535"), f"SMTP AUTH accepted a deleted user: {r!r}"
    assert pop3_login(srv, user, new, source="127.0.0.6")[0][1].startswith(b"+OK"), "the new password fails on POP3"
    assert smtp_login(srv, user, new, source="127.0.0.6")[0].startswith(b"235"), "the new password fails on SMTP AUTH"


# --------------------------------------------------------------------------
# connection limits


def held_smtp(srv, service: str, n: int, source: str = "127.0.0.1") -> list[RawClient]:
    out = []
    try:
        for _ in range(n):
            c = RawClient(srv.addr(service), 15, (source, 0))
            out.append(c)
            c.expect(220)
    except BaseException:
        for c in out:
            c.close()
        raise
    return out


def first_reply_line(srv, service: str, source: str = "127.0.0.1") -> bytes:
    c = RawClient(srv.addr(service), 15, (source, 0))
    try:
        return c.read_line()
    except EOFError:
        return b""
    finally:
        c.close()


def wait_served(srv, service: str, ok: bytes) -> None:
    """After closing held connections the server notices a moment later:
    bounded retries until a new session is greeted normally."""
    line = b""
    for _ in range(100):
        line = first_reply_line(srv, service)
        if line.startswith(ok):
            return
        time.sleep(0.1)
    raise AssertionError(f"{service} still refuses after the held connections closed: {line!r}")


def hold_all(srv, service: str, n: int, ok: bytes, timeout: float = 15.0) -> list[RawClient]:
    """`n` sessions on `service`, all greeted with `ok`; retried (bounded)
    while the server still counts connections closed a moment ago."""
    deadline = time.monotonic() + timeout
    while True:
        held, lines = [], []
        try:
            for _ in range(n):
                c = RawClient(srv.addr(service), 15)
                held.append(c)
                lines.append(c.read_line())
        except EOFError:
            lines.append(b"(closed)")
        if len(lines) == n and all(x.startswith(ok) for x in lines):
            return held
        for c in held:
            c.close()
        if time.monotonic() >= deadline:
            raise AssertionError(f"could not hold {n} {service} sessions within {timeout}s: {lines}")
        time.sleep(0.1)


def test_connections_per_ip_on_submission_and_pop3(postamt_factory):
    srv = postamt_factory({
        "listen": {"submission": ["127.0.0.1:0"], "pop3": ["127.0.0.1:0"]},
        "limits": {"max_connections_per_ip": 3},
    })
    held = held_smtp(srv, "submission", 3)
    try:
        line = first_reply_line(srv, "submission")
        assert line.startswith(b"421 4.7.0"), f"4th submission connection from one address: {line!r}"
        # Another address is not affected.
        other = first_reply_line(srv, "submission", source="127.0.0.2")
        assert other.startswith(b"220"), f"a connection from another address: {other!r}"
    finally:
        for c in held:
            c.close()
    wait_served(srv, "submission", b"220")

    # The count is shared by every listener: hold three POP3 sessions once
    # the server has let go of all the submission ones (bounded retries).
    held_p = hold_all(srv, "pop3", 3, b"+OK")
    try:
        line = first_reply_line(srv, "pop3")
        assert line.startswith(b"-ERR"), f"4th POP3 connection from one address: {line!r}"
    finally:
        for c in held_p:
            c.close()
    wait_served(srv, "pop3", b"+OK")


def test_total_connection_cap(postamt_factory):
    srv = postamt_factory({
        "listen": {"submission": ["127.0.0.1:0"]},
        "limits": {"max_connections": 4, "max_connections_per_ip": 3},
    })
    held = held_smtp(srv, "submission", 3) + held_smtp(srv, "submission", 1, source="127.0.0.2")
    try:
        line = first_reply_line(srv, "submission", source="127.0.0.3")
        assert line.startswith(b"421"), f"5th connection with max_connections = 4: {line!r}"
    finally:
        for c in held:
            c.close()
    wait_served(srv, "submission", b"220")


def read_until_421(c: RawClient, limit: int) -> list[int]:
    codes = []
    for _ in range(limit + 5):
        c.send(b"BOGUS\r\n")
        code, _ = c.read_reply()
        codes.append(code)
        if code == 421:
            break
    return codes


@pytest.mark.parametrize("service", ["submission", "submissions"])
def test_error_limit_on_submission(postamt_factory, service):
    limit = 5
    srv = postamt_factory({
        "listen": {"submission": ["127.0.0.1:0"], "submissions": ["127.0.0.1:0"]},
        "limits": {"max_errors": limit},
    })
    if service == "submission":
        c = RawClient(srv.addr(service), 15)
        c.expect(220)
    else:
        c = srv.raw_tls_smtp(service, ehlo=False)
    try:
        codes = read_until_421(c, limit)
        assert codes[-1] == 421, f"no 421 after {len(codes)} bad commands on {service}: {codes}"
        assert len(codes) <= limit + 1, codes
        c.sock.settimeout(5)
        try:
            rest = c.sock.recv(100)
        except (ConnectionResetError, ssl.SSLError):
            rest = b""
        assert rest == b"", f"{service}: connection still open after 421: {rest!r}"
    finally:
        c.close()


def test_idle_timeout_on_tls_ports(postamt_factory):
    srv = postamt_factory({
        "listen": {"submission": ["127.0.0.1:0"], "submissions": ["127.0.0.1:0"], "pop3s": ["127.0.0.1:0"]},
        "limits": {"idle_timeout": "1s"},
    })
    sub = RawClient(srv.addr("submission"), 15)
    subs = srv.raw_tls_smtp("submissions", ehlo=False)
    pops = srv.raw_tls_pop3("pop3s")
    try:
        sub.expect(220)
        code, text = sub.read_reply()
        assert code == 421, f"submission idle: {code} {text!r}"
        code, text = subs.read_reply()
        assert code == 421, f"submissions idle (inside TLS): {code} {text!r}"
        rest = b""
        try:
            for _ in range(100):
                chunk = pops.sock.recv(4096)
                if not chunk:
                    break
                rest += chunk
        except (ConnectionResetError, ssl.SSLError):
            pass
        assert rest == b"" or rest.startswith(b"-ERR"), f"pop3s idle: {rest!r}"
    finally:
        sub.close()
        subs.close()
        pops.close()


def closed_within(sock, timeout: float) -> bytes:
    """Reads until the server closes (returns what it said) or `timeout`
    passes (raises): for sockets the server must drop."""
    sock.settimeout(timeout)
    got = b""
    try:
        while len(got) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                return got
            got += chunk
    except (ConnectionResetError, ssl.SSLError):
        return got
    except TimeoutError:
        raise AssertionError(f"the server did not close the connection within {timeout}s; got {got!r}") from None
    return got


def test_stalled_tls_handshakes_are_dropped(postamt_factory):
    """A client that never sends its ClientHello (implicit TLS, or after
    STARTTLS/STLS) is dropped by the idle timeout, not kept forever."""
    srv = postamt_factory({
        "listen": {"submission": ["127.0.0.1:0"], "submissions": ["127.0.0.1:0"], "pop3": ["127.0.0.1:0"], "pop3s": ["127.0.0.1:0"]},
        "limits": {"idle_timeout": "1s"},
    })
    implicit = [RawClient(srv.addr(service), 30) for service in ("submissions", "pop3s")]
    sub = RawClient(srv.addr("submission"), 30)
    pop = RawClient(srv.pop3_addr, 30)
    try:
        sub.expect(220)
        sub.command(b"STARTTLS", 220)
        assert pop.read_line().startswith(b"+OK")
        pop.send(b"STLS\r\n")
        assert pop.read_line().startswith(b"+OK")
        for name, c in (("submissions", implicit[0]), ("pop3s", implicit[1]), ("submission after STARTTLS", sub), ("pop3 after STLS", pop)):
            try:
                closed_within(c.sock, 20)
            except AssertionError as e:
                raise AssertionError(f"{name}: {e}") from None
    finally:
        for c in implicit + [sub, pop]:
            c.close()


@pytest.mark.parametrize("service", ["submissions", "pop3s"])
def test_connections_per_ip_on_implicit_tls_ports(postamt_factory, service):
    """Over the per-IP cap on an implicit-TLS port: no usable session (the
    handshake fails, or the first thing said inside TLS is a refusal)."""
    srv = postamt_factory({
        "listen": {service: ["127.0.0.1:0"]},
        "limits": {"max_connections_per_ip": 3},
    })
    held = []
    try:
        for _ in range(3):
            c = RawClient.implicit_tls(srv.addr(service), srv.tls_context(), timeout=15)
            held.append(c)
            assert c.read_line()[:1] in (b"2", b"+"), "greeting"
        try:
            extra = RawClient.implicit_tls(srv.addr(service), srv.tls_context(), timeout=15)
        except (ssl.SSLError, ConnectionError):
            pass
        else:
            try:
                try:
                    line = extra.read_line()
                except (EOFError, ConnectionError, ssl.SSLError):
                    line = b""
                assert line == b"" or line.startswith(b"421") or line.startswith(b"-ERR"), f"4th {service} connection: {line!r}"
            finally:
                extra.close()
    finally:
        for c in held:
            c.close()
