"""Submission end to end (issue 3, RFC 6409/8314/4954): AUTH only inside TLS
(unless `[submission] allow_plaintext_on_loopback`), AUTH before MAIL, PLAIN
and LOGIN, one reply for every bad credential, senders limited to the
user's own addresses, relaying for authenticated users only, and an MX
port that never relays and never offers AUTH, with or without TLS."""

from __future__ import annotations

import base64
import socket

import pytest

from support import (
    CLIENT_NAME,
    DOMAIN,
    HOSTNAME,
    RawClient,
    auth_plain,
    ehlo_keywords,
    non_loopback_ipv4,
    queue_id_from,
    simple_message,
    smtp_auth_plain,
    uniq,
)

# A remote domain whose lookup fails temporarily (no DNS leaves the machine:
# `[dns] nameservers` is 127.0.0.1:1), so mail for it waits in the queue.
# Not under .invalid: resolvers answer NXDOMAIN for that at once (RFC 6761).
REMOTE = "remote.example.net"


def b64(s: str) -> bytes:
    return base64.b64encode(s.encode())


def assert_reply(got: tuple[int, bytes], code: int, enhanced: str, what: str) -> None:
    assert got[0] == code and got[1].startswith(enhanced.encode() + b" "), f"{what}: expected {code} {enhanced}, got {got[0]} {got[1]!r}"


@pytest.fixture(scope="module")
def accounts(secure_server):
    """alice with an alias of her own; bob with one of his."""
    srv = secure_server
    alice, apw = srv.add_user(uniq("alice"))
    bob, bpw = srv.add_user(uniq("bob"))
    alias_a, alias_b = uniq("aa"), uniq("bb")
    srv.add_alias(f"{alias_a}@{DOMAIN}", alice)
    srv.add_alias(f"{alias_b}@{DOMAIN}", bob)
    return {"alice": (alice, apw), "bob": (bob, bpw), "alias_a": alias_a, "alias_b": alias_b}


# --------------------------------------------------------------------------
# before TLS, and what EHLO offers


def test_no_auth_before_tls(secure_server, accounts):
    srv = secure_server
    alice, apw = accounts["alice"]
    c = RawClient(srv.addr("submission"), timeout=15)
    try:
        c.expect(220)
        kw = ehlo_keywords(c.command(b"EHLO " + CLIENT_NAME.encode(), 250))
        assert "STARTTLS" in kw, f"submission does not offer STARTTLS: {kw}"
        assert "AUTH" not in kw, f"AUTH offered before TLS: AUTH {kw.get('AUTH')}"
        assert_reply(smtp_auth_plain(c, alice, apw), 538, "5.7.11", "AUTH PLAIN before TLS")
        c.send(b"AUTH LOGIN\r\n")
        assert_reply(c.read_reply(), 538, "5.7.11", "AUTH LOGIN before TLS")
        c.send(f"MAIL FROM:<{alice}@{DOMAIN}>\r\n".encode())
        assert_reply(c.read_reply(), 530, "5.7.0", "MAIL before AUTH (plaintext)")
        # The session is still good for STARTTLS and AUTH inside it.
        c.command(b"STARTTLS", 220)
        c.start_tls(srv.tls_context())
        c.command(b"EHLO " + CLIENT_NAME.encode(), 250)
        assert_reply(smtp_auth_plain(c, alice, apw), 235, "2.7.0", "AUTH PLAIN inside TLS")
    finally:
        c.close()


@pytest.mark.parametrize("service", ["submission", "submissions"])
def test_ehlo_inside_tls_offers_auth(secure_server, accounts, service):
    srv = secure_server
    alice, _ = accounts["alice"]
    c = srv.raw_tls_smtp(service, ehlo=False)
    try:
        kw = ehlo_keywords(c.command(b"EHLO " + CLIENT_NAME.encode(), 250))
        assert "AUTH" in kw, f"{service}: no AUTH inside TLS: {kw}"
        mechs = set(kw["AUTH"].upper().split())
        assert {"PLAIN", "LOGIN"} <= mechs, f"{service}: AUTH {kw['AUTH']}"
        assert "STARTTLS" not in kw, f"{service}: STARTTLS offered inside TLS"
        c.send(f"MAIL FROM:<{alice}@{DOMAIN}>\r\n".encode())
        assert_reply(c.read_reply(), 530, "5.7.0", f"{service}: MAIL before AUTH")
        c.send(f"RCPT TO:<someone@{REMOTE}>\r\n".encode())
        code, text = c.read_reply()
        assert 500 <= code <= 599, f"{service}: RCPT with no transaction and no AUTH: {code} {text!r}"
    finally:
        c.close()


# --------------------------------------------------------------------------
# AUTH mechanisms


def test_auth_plain_variants(secure_server, accounts):
    srv = secure_server
    alice, apw = accounts["alice"]
    # Initial response on the command line.
    c = srv.raw_tls_smtp("submission")
    try:
        assert_reply(smtp_auth_plain(c, alice, apw), 235, "2.7.0", "AUTH PLAIN with initial response")
        c.send(b"AUTH PLAIN " + auth_plain(alice, apw) + b"\r\n")
        code, text = c.read_reply()
        assert code == 503, f"a second AUTH in one session: {code} {text!r}"
        c.command(f"MAIL FROM:<{alice}@{DOMAIN}>".encode(), 250)
    finally:
        c.close()
    # Empty challenge first (`334 `), response on its own line.
    c = srv.raw_tls_smtp("submissions")
    try:
        c.send(b"AUTH PLAIN\r\n")
        code, text = c.read_reply()
        assert code == 334 and text.strip() == b"", f"AUTH PLAIN without initial response: {code} {text!r}"
        c.send(auth_plain(alice, apw) + b"\r\n")
        assert_reply(c.read_reply(), 235, "2.7.0", "AUTH PLAIN after 334")
    finally:
        c.close()
    # Cancelling with `*` gives 501 and leaves the session usable.
    c = srv.raw_tls_smtp("submission")
    try:
        c.send(b"AUTH PLAIN\r\n")
        assert c.read_reply()[0] == 334
        c.send(b"*\r\n")
        code, text = c.read_reply()
        assert code == 501, f"AUTH cancelled with *: {code} {text!r}"
        c.send(b"AUTH CRAM-NOTHING\r\n")
        code, text = c.read_reply()
        assert code == 504, f"unknown mechanism: {code} {text!r}"
        assert_reply(smtp_auth_plain(c, alice, apw), 235, "2.7.0", "AUTH PLAIN after a cancelled one")
    finally:
        c.close()


def test_auth_plain_identities(secure_server, accounts):
    """RFC 4616: an authorization identity equal to the user is fine; naming
    someone else must not make the session theirs."""
    srv = secure_server
    alice, apw = accounts["alice"]
    bob, _ = accounts["bob"]
    c = srv.raw_tls_smtp("submission")
    try:
        token = base64.b64encode(f"{alice}\0{alice}\0{apw}".encode())
        text = c.command(b"AUTH PLAIN " + token, 235)
        assert text.startswith(b"2.7.0 "), text
        c.command(f"MAIL FROM:<{alice}@{DOMAIN}>".encode(), 250)
    finally:
        c.close()
    c = srv.raw_tls_smtp("submission")
    try:
        token = base64.b64encode(f"{bob}\0{alice}\0{apw}".encode())
        c.send(b"AUTH PLAIN " + token + b"\r\n")
        code, text = c.read_reply()
        if code == 235:
            # Accepted as alice at most: bob's address stays out of reach.
            c.send(f"MAIL FROM:<{bob}@{DOMAIN}>\r\n".encode())
            assert_reply(c.read_reply(), 553, "5.7.1", f"{alice} authenticated naming {bob} as authzid, then MAIL FROM bob")
        else:
            assert 500 <= code <= 599, f"AUTH PLAIN as {alice} for {bob}: {code} {text!r}"
    finally:
        c.close()


def test_oversized_auth_data(secure_server, accounts):
    srv = secure_server
    alice, apw = accounts["alice"]
    c = srv.raw_tls_smtp("submission", timeout=40)
    try:
        c.send(b"AUTH PLAIN " + b"A" * 100_000 + b"\r\n")
        code, text = c.read_reply()
        assert 500 <= code <= 599 or code == 421, f"100 KB AUTH line: {code} {text!r}"
    finally:
        c.close()
    c = srv.raw_tls_smtp("submission", timeout=40)
    try:
        c.send(b"AUTH LOGIN\r\n")
        assert c.read_reply()[0] == 334
        c.send(b"A" * 100_000 + b"\r\n")
        code, text = c.read_reply()
        assert 500 <= code <= 599 or code == 421, f"100 KB AUTH LOGIN response: {code} {text!r}"
    finally:
        c.close()
    # The server is fine.
    with srv.submission(alice, apw, "submissions") as s:
        assert s.noop()[0] == 250


def test_auth_login(secure_server, accounts):
    srv = secure_server
    bob, bpw = accounts["bob"]
    c = srv.raw_tls_smtp("submission")
    try:
        c.send(b"AUTH LOGIN\r\n")
        code, text = c.read_reply()
        assert code == 334, (code, text)
        assert base64.b64decode(text).lower().startswith(b"username"), f"first LOGIN challenge: {text!r}"
        c.send(b64(bob) + b"\r\n")
        code, text = c.read_reply()
        assert code == 334, (code, text)
        assert base64.b64decode(text).lower().startswith(b"password"), f"second LOGIN challenge: {text!r}"
        c.send(b64(bpw) + b"\r\n")
        assert_reply(c.read_reply(), 235, "2.7.0", "AUTH LOGIN")
    finally:
        c.close()
    # smtplib's way: the user name as initial response (`AUTH LOGIN <b64>`).
    s = srv.smtp_tls("submissions")
    try:
        s.user, s.password = bob, bpw
        code, resp = s.auth("LOGIN", s.auth_login, initial_response_ok=True)
        assert code == 235, (code, resp)
    finally:
        s.quit()


def test_bad_credentials_look_the_same(postamt_factory):
    """535 5.7.8 with one text for an unknown user and a wrong password, in
    PLAIN and LOGIN. Own server, and each failure from a loopback address of
    its own, so the growing delays stay short and hit no other test."""
    srv = postamt_factory({"listen": {"submissions": ["127.0.0.1:0"]}})
    # A user (and a ghost) per attempt: per-account counters stay at one too.
    (user, pw), (user2, pw2), (user3, _) = srv.add_user(), srv.add_user(), srv.add_user()

    def plain(source: str, name: str, password: str) -> tuple[int, bytes]:
        c = srv.raw_tls_smtp("submissions", source_address=(source, 0), timeout=40)
        try:
            return smtp_auth_plain(c, name, password)
        finally:
            c.close()

    def login(source: str, name: str, password: str) -> list[tuple[int, bytes]]:
        c = srv.raw_tls_smtp("submissions", source_address=(source, 0), timeout=40)
        try:
            c.send(b"AUTH LOGIN\r\n")
            r1 = c.read_reply()
            c.send(b64(name) + b"\r\n")
            r2 = c.read_reply()
            c.send(b64(password) + b"\r\n")
            return [r1, r2, c.read_reply()]
        finally:
            c.close()

    wrong = plain("127.0.0.2", user, pw + "x")
    unknown = plain("127.0.0.3", uniq("ghost"), pw)
    assert_reply(wrong, 535, "5.7.8", "AUTH PLAIN, wrong password")
    assert wrong == unknown, f"wrong password {wrong} vs unknown user {unknown}"
    wrong_l = login("127.0.0.4", user2, pw2 + "x")
    unknown_l = login("127.0.0.5", uniq("ghost"), pw2)
    assert_reply(wrong_l[2], 535, "5.7.8", "AUTH LOGIN, wrong password")
    assert wrong_l == unknown_l, f"wrong password {wrong_l} vs unknown user {unknown_l}"
    assert wrong_l[2] == wrong, "PLAIN and LOGIN failures differ"
    # An empty password is no way in either.
    assert plain("127.0.0.6", user3, "")[0] == 535
    # The right password still works.
    assert_reply(plain("127.0.0.7", user, pw), 235, "2.7.0", "AUTH PLAIN, right password")


# --------------------------------------------------------------------------
# who may send what


def test_sender_must_be_owned(secure_server, accounts):
    srv = secure_server
    alice, apw = accounts["alice"]
    bob, _ = accounts["bob"]
    c = srv.raw_tls_smtp("submission")
    try:
        assert_reply(smtp_auth_plain(c, alice, apw), 235, "2.7.0", "AUTH")
        refused = [
            f"{bob}@{DOMAIN}",                       # another user
            f"{accounts['alias_b']}@{DOMAIN}",       # another user's alias
            "someone@elsewhere.test.invalid",        # a foreign address
            f"{alice}@elsewhere.test.invalid",       # her name, a foreign domain
            f"postmaster@{DOMAIN}",                  # not hers either
        ]
        for sender in refused:
            c.send(f"MAIL FROM:<{sender}>\r\n".encode())
            assert_reply(c.read_reply(), 553, "5.7.1", f"MAIL FROM:<{sender}> as {alice}")
        allowed = [
            f"{alice}@{DOMAIN}",
            f"{alice}@{DOMAIN.upper()}",             # domains are case-insensitive
            f"{alice}@{HOSTNAME}",                   # the hostname is a local domain
            f"{accounts['alias_a']}@{DOMAIN}",       # her alias
            "",                                      # null sender
        ]
        for sender in allowed:
            c.send(f"MAIL FROM:<{sender}>\r\n".encode())
            code, text = c.read_reply()
            assert code == 250, f"MAIL FROM:<{sender}> as {alice}: {code} {text!r}"
            c.command(b"RSET", 250)
    finally:
        c.close()


def test_submit_local_and_remote(secure_server, accounts):
    srv = secure_server
    alice, apw = accounts["alice"]
    bob, bpw = accounts["bob"]
    token = uniq("sub-")
    remote = f"someone@{REMOTE}"
    msg = simple_message(token, sender=f"{alice}@{DOMAIN}", to=f"{bob}@{DOMAIN}")
    s = srv.submission(alice, apw, "submission")
    try:
        assert s.mail(f"{alice}@{DOMAIN}")[0] == 250
        code, resp = s.rcpt(f"{bob}@{DOMAIN}")
        assert code == 250, (code, resp)
        code, resp = s.rcpt(remote)
        assert code == 250, f"authenticated RCPT to a remote domain: {code} {resp!r}"
        code, resp = s.rcpt(f"{uniq('nobody')}@{DOMAIN}")
        assert code == 550 and resp.startswith(b"5.1.1"), f"unknown local user after AUTH: {code} {resp!r}"
        code, resp = s.data(msg)
        assert code == 250, (code, resp)
        qid = queue_id_from(resp)
    finally:
        s.quit()
    stored = srv.wait_token(bob, token.encode())
    assert stored.endswith(msg.split(b"\r\n\r\n", 1)[1]), "the body arrived changed"
    received = stored.split(b"\r\n\r\n", 1)[0]
    assert b"ESMTPSA" in received, f"Received header should say ESMTPSA (RFC 3848): {received[:500]!r}"
    # The remote copy waits in the queue (remote delivery comes with a later issue,
    # and no DNS leaves this machine).
    listing = srv.queue_list()
    assert qid in listing and remote in listing, f"queue list should show {qid} waiting for {remote}:\n{listing}"


def test_submissions_sendmail(secure_server, accounts):
    srv = secure_server
    bob, bpw = accounts["bob"]
    alice, _ = accounts["alice"]
    token = uniq("subs-")
    with srv.submission(bob, bpw, "submissions") as s:
        refused = s.sendmail(f"{accounts['alias_b']}@{DOMAIN}", [f"{alice}@{DOMAIN}"], simple_message(token, to=f"{alice}@{DOMAIN}"))
        assert refused == {}, refused
    srv.wait_token(alice, token.encode())


# --------------------------------------------------------------------------
# the MX port


def test_mx_port_never_relays_or_authenticates(secure_server, accounts):
    srv = secure_server
    alice, apw = accounts["alice"]
    for tls in (False, True):
        where = "MX port inside TLS" if tls else "MX port"
        c = RawClient(srv.smtp_addr, timeout=15)
        try:
            c.expect(220)
            kw = ehlo_keywords(c.command(b"EHLO " + CLIENT_NAME.encode(), 250))
            if tls:
                c.command(b"STARTTLS", 220)
                c.start_tls(srv.tls_context())
                kw = ehlo_keywords(c.command(b"EHLO " + CLIENT_NAME.encode(), 250))
            assert "AUTH" not in kw, f"{where} offers AUTH {kw.get('AUTH')}"
            code, text = smtp_auth_plain(c, alice, apw)  # right credentials, wrong port
            assert 500 <= code <= 599, f"{where}: AUTH gave {code} {text!r}"
            c.command(f"MAIL FROM:<{alice}@{DOMAIN}>".encode(), 250)
            c.send(f"RCPT TO:<someone@{REMOTE}>\r\n".encode())
            assert_reply(c.read_reply(), 554, "5.7.1", f"{where}: relay from loopback")
            c.command(b"RSET", 250)
            c.command(b"MAIL FROM:<>", 250)
            c.send(f"RCPT TO:<someone@{REMOTE}>\r\n".encode())
            assert_reply(c.read_reply(), 554, "5.7.1", f"{where}: relay with the null sender")
            # Source routes and percent hacks are no way around it.
            for trick in (f"someone%{REMOTE}@{DOMAIN}", f"@{DOMAIN}:someone@{REMOTE}"):
                c.send(f"RCPT TO:<{trick}>\r\n".encode())
                code, text = c.read_reply()
                assert 500 <= code <= 599, f"{where}: RCPT TO:<{trick}> gave {code} {text!r}"
        finally:
            c.close()


# --------------------------------------------------------------------------
# `[submission] allow_plaintext_on_loopback`


@pytest.mark.parametrize("setting", [None, False, True], ids=["unset", "false", "true"])
def test_plaintext_auth_on_loopback_setting(postamt_factory, setting):
    overrides = {"listen": {"submission": ["127.0.0.1:0"]}}
    if setting is not None:
        overrides["submission"] = {"allow_plaintext_on_loopback": setting}
    srv = postamt_factory(overrides)
    user, pw = srv.add_user()
    token = uniq("plain-")
    c = RawClient(srv.addr("submission"), timeout=15)
    try:
        c.expect(220)
        kw = ehlo_keywords(c.command(b"EHLO " + CLIENT_NAME.encode(), 250))
        assert "STARTTLS" in kw, kw
        if not setting:
            assert "AUTH" not in kw, f"AUTH offered in plaintext with the setting {setting}: {kw}"
            assert_reply(smtp_auth_plain(c, user, pw), 538, "5.7.11", f"plaintext AUTH, setting {setting}")
            c.send(f"MAIL FROM:<{user}@{DOMAIN}>\r\n".encode())
            assert_reply(c.read_reply(), 530, "5.7.0", "MAIL before AUTH")
            return
        assert "AUTH" in kw and {"PLAIN", "LOGIN"} <= set(kw["AUTH"].upper().split()), kw
        assert_reply(smtp_auth_plain(c, user, pw), 235, "2.7.0", "plaintext AUTH on loopback, allowed")
        c.command(f"MAIL FROM:<{user}@{DOMAIN}>".encode(), 250)
        c.command(f"RCPT TO:<{user}@{DOMAIN}>".encode(), 250)
        c.command(b"DATA", 354)
        c.send(simple_message(token, to=f"{user}@{DOMAIN}") + b".\r\n")
        c.expect(250)
    finally:
        c.close()
    srv.wait_token(user, token.encode())


def test_no_plaintext_logins_from_other_addresses(postamt_factory):
    """The loopback allowance is for loopback only: from the machine's own
    outward address, AUTH (SMTP) and USER/PASS (POP3) need TLS first."""
    ip = non_loopback_ipv4()
    if ip is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    try:
        socket.create_server((ip, 0)).close()
    except OSError as e:
        pytest.skip(f"cannot listen on {ip}: {e}")
    srv = postamt_factory({
        "listen": {"smtp": [f"{ip}:0"], "submission": [f"{ip}:0"], "pop3": [f"{ip}:0"]},
        "submission": {"allow_plaintext_on_loopback": True},
    })
    user, pw = srv.add_user()
    c = RawClient(srv.addr("submission"), timeout=40)
    try:
        c.expect(220)
        kw = ehlo_keywords(c.command(b"EHLO " + CLIENT_NAME.encode(), 250))
        assert "AUTH" not in kw, f"AUTH offered in plaintext to {ip}: {kw}"
        assert_reply(smtp_auth_plain(c, user, pw), 538, "5.7.11", f"plaintext AUTH from {ip}")
        c.command(b"STARTTLS", 220)
        c.start_tls(srv.tls_context())
        c.command(b"EHLO " + CLIENT_NAME.encode(), 250)
        assert_reply(smtp_auth_plain(c, user, pw), 235, "2.7.0", f"AUTH inside TLS from {ip}")
    finally:
        c.close()
    p = srv.raw_pop3(timeout=40)
    try:
        p.send(f"USER {user}\r\n".encode())
        line = p.read_line()
        if line.startswith(b"+OK"):
            p.send(f"PASS {pw}\r\n".encode())
            line = p.read_line()
        assert line.startswith(b"-ERR"), f"POP3 plaintext login from {ip} with the right password: {line!r}"
        p.send(b"AUTH PLAIN " + auth_plain(user, pw) + b"\r\n")
        line = p.read_line()
        assert line.startswith(b"-ERR"), f"POP3 plaintext AUTH PLAIN from {ip}: {line!r}"
    finally:
        p.close()
    pop = srv.pop3_stls(user, pw, timeout=40)
    try:
        assert pop.stat()[0] == 0
    finally:
        pop.quit()
