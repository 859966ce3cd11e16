"""POP3 end to end (RFC 1939, 2449, 5034) with poplib and a raw socket:
every command, UIDL stability, DELE/RSET/QUIT semantics, the IN-USE lock,
identical failures for unknown users and wrong passwords, AUTH PLAIN."""

from __future__ import annotations

import poplib
import re
import time

import pytest

from support import DOMAIN, auth_plain, pop3_retr, simple_message, split_received, uniq


@pytest.fixture
def mailbox3(server):
    """A user with three delivered messages: (user, password, {token: sent})."""
    user, pw = server.add_user()
    sent = {}
    for i in range(3):
        token = uniq(f"pop{i}-")
        body = b"".join(b"body line %d of %s\r\n" % (k, token.encode()) for k in range(1, 6))
        data = simple_message(token, to=f"{user}@{DOMAIN}", body=body)
        server.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], data)
        sent[token] = data
    server.wait_messages(user, 3)
    return user, pw, sent


def token_of(msg: bytes, tokens) -> str:
    found = [t for t in tokens if t.encode() in msg]
    assert len(found) == 1, f"message should carry exactly one token: {msg[:300]!r}"
    return found[0]


def uidl_map(p: poplib.POP3) -> dict[int, str]:
    resp, lines, _ = p.uidl()
    assert resp.startswith(b"+OK"), resp
    out = {}
    for line in lines:
        n, uid = line.decode().split(" ", 1)
        out[int(n)] = uid
    return out


def test_capa(server):
    p = server.pop3()
    try:
        caps = p.capa()
    finally:
        p.quit()
    for c in ("USER", "UIDL", "TOP", "RESP-CODES", "SASL"):
        assert c in caps, f"CAPA lacks {c}: {caps}"
    assert "PLAIN" in [m.upper() for m in caps["SASL"]], caps


def test_stat_list_retr_top_noop(server, mailbox3):
    user, pw, sent = mailbox3
    stored = server.messages(user)
    p = server.pop3(user, pw)
    try:
        assert p.noop().startswith(b"+OK")
        count, size = p.stat()
        assert count == 3
        assert size == sum(len(m) for m in stored), (size, [len(m) for m in stored])
        resp, lines, _ = p.list()
        assert resp.startswith(b"+OK")
        sizes = {int(l.split()[0]): int(l.split()[1]) for l in lines}
        assert sorted(sizes) == [1, 2, 3]
        assert sum(sizes.values()) == size
        seen = set()
        for n in (1, 2, 3):
            one = p.list(n)
            assert one.startswith(b"+OK") and int(one.split()[1]) == n and int(one.split()[2]) == sizes[n], one
            msg = pop3_retr(p, n)
            assert len(msg) == sizes[n], f"RETR {n} gave {len(msg)} octets, LIST said {sizes[n]}"
            token = token_of(msg, sent)
            split_received(msg, sent[token])
            seen.add(token)
            # TOP n 0: the headers and the blank line only.
            resp, lines, _ = p.top(n, 0)
            header_end = msg.index(b"\r\n\r\n") + 4
            assert b"".join(l + b"\r\n" for l in lines) == msg[:header_end], lines
            # TOP n 2: plus the first two body lines.
            resp, lines, _ = p.top(n, 2)
            body_lines = msg[header_end:].split(b"\r\n")[:2]
            expect = msg[:header_end] + b"".join(l + b"\r\n" for l in body_lines)
            assert b"".join(l + b"\r\n" for l in lines) == expect
        assert seen == set(sent)
        for bad in ("LIST 4", "LIST 0", "RETR 4", "TOP 9 1", "DELE 0", "RETR x"):
            with pytest.raises(poplib.error_proto):
                p._shortcmd(bad)
    finally:
        p.quit()


def test_uidl_stable_across_sessions_and_deletions(server, mailbox3):
    user, pw, sent = mailbox3
    p = server.pop3(user, pw)
    try:
        first = uidl_map(p)
        tokens = {n: token_of(pop3_retr(p, n), sent) for n in first}
        one = p.uidl(2)
        assert one.split()[1:] == [b"2", first[2].encode()], one
    finally:
        p.quit()
    assert len(set(first.values())) == 3, f"UIDs must be unique: {first}"
    for uid in first.values():
        assert 1 <= len(uid) <= 70 and all(0x21 <= ord(ch) <= 0x7E for ch in uid), f"bad UID {uid!r}"

    p = server.pop3(user, pw)
    try:
        second = uidl_map(p)
        assert second == first, "UIDL changed between sessions"
        p.dele(1)
    finally:
        p.quit()

    by_token = {tokens[n]: first[n] for n in first}
    p = server.pop3(user, pw)
    try:
        third = uidl_map(p)
        assert len(third) == 2
        for n, uid in third.items():
            token = token_of(pop3_retr(p, n), sent)
            assert by_token[token] == uid, "a message's UID changed after another was deleted"
        assert first[1] not in third.values()
    finally:
        p.quit()


def test_dele_rset_quit_semantics(server, mailbox3):
    user, pw, sent = mailbox3
    p = server.pop3(user, pw)
    try:
        _, size_before = p.stat()
        assert p.dele(1).startswith(b"+OK")
        count, size = p.stat()
        assert count == 2 and size < size_before
        with pytest.raises(poplib.error_proto):
            p.retr(1)
        with pytest.raises(poplib.error_proto):
            p.list(1)
        with pytest.raises(poplib.error_proto):
            p.dele(1)  # already deleted
        assert p.rset().startswith(b"+OK")
        assert p.stat() == (3, size_before)
        p.dele(1)
    finally:
        # Drop the connection without QUIT: nothing may be deleted.
        p.close()
    assert len(server.messages(user)) == 3
    # The lock is released once the client is gone (the server may notice
    # the close a moment later: bounded retries).
    p = None
    for _ in range(50):
        try:
            p = server.pop3(user, pw)
            break
        except poplib.error_proto as e:
            assert b"[IN-USE]" in e.args[0], e.args
            time.sleep(0.1)
    assert p is not None, "mailbox still locked after the client went away"
    try:
        assert p.stat()[0] == 3, "deletion applied without QUIT"
        gone = token_of(pop3_retr(p, 1), sent)
        p.dele(1)
        resp = p.quit()
        assert resp.startswith(b"+OK"), resp
    finally:
        p.close()
    msgs = server.messages(user)
    assert len(msgs) == 2, "QUIT must apply the deletion"
    assert not [m for m in msgs if gone.encode() in m], "QUIT deleted the wrong message"
    p = server.pop3(user, pw)
    try:
        assert p.stat()[0] == 2
    finally:
        p.quit()


def test_quit_removes_the_right_message(server, mailbox3):
    user, pw, sent = mailbox3
    p = server.pop3(user, pw)
    try:
        victim = token_of(pop3_retr(p, 2), sent)
        p.dele(2)
    finally:
        p.quit()
    remaining = server.messages(user)
    assert len(remaining) == 2
    assert not [m for m in remaining if victim.encode() in m], "QUIT deleted the wrong message"


def test_in_use_lock(server, mailbox3):
    user, pw, _ = mailbox3
    a = server.pop3(user, pw)
    try:
        b = server.pop3()
        try:
            b.user(user)
            with pytest.raises(poplib.error_proto) as e:
                b.pass_(pw)
            assert e.value.args[0].startswith(b"-ERR [IN-USE]"), e.value.args
        finally:
            b.close()
        assert a.stat()[0] == 3  # the first session is unaffected
    finally:
        a.quit()
    c = server.pop3(user, pw)  # free again after QUIT
    c.quit()


def login_replies(server, user: str, password: str) -> list[bytes]:
    c = server.raw_pop3()
    try:
        c.send(f"USER {user}\r\n".encode())
        r1 = c.read_line()
        c.send(f"PASS {password}\r\n".encode())
        r2 = c.read_line()
        return [r1, r2]
    finally:
        c.close()


def test_unknown_user_and_wrong_password_look_the_same(server):
    user, pw = server.add_user()
    wrong = login_replies(server, user, pw + "x")
    unknown = login_replies(server, uniq("ghost"), pw)
    assert wrong[1].startswith(b"-ERR"), wrong
    assert wrong == unknown, f"wrong password {wrong} vs unknown user {unknown}"
    # And the right password works.
    assert login_replies(server, user, pw)[1].startswith(b"+OK")


def test_auth_plain(server, mailbox3):
    user, pw, _ = mailbox3
    # Initial response on the command line.
    c = server.raw_pop3()
    try:
        c.send(b"AUTH PLAIN " + auth_plain(user, pw) + b"\r\n")
        line = c.read_line()
        assert line.startswith(b"+OK"), line
        c.send(b"STAT\r\n")
        assert re.match(rb"\+OK 3 \d+\r\n", c.read_line())
        c.send(b"QUIT\r\n")
        assert c.read_line().startswith(b"+OK")
    finally:
        c.close()
    # Empty challenge, response on its own line.
    c = server.raw_pop3()
    try:
        c.send(b"AUTH PLAIN\r\n")
        line = c.read_line()
        assert line.rstrip(b"\r\n") in (b"+", b"+ "), line
        c.send(auth_plain(user, pw) + b"\r\n")
        line = c.read_line()
        assert line.startswith(b"+OK"), line
        c.send(b"LIST\r\n")
        assert c.read_line().startswith(b"+OK")
        assert len(c.read_multiline()) == 3
        c.send(b"QUIT\r\n")
        assert c.read_line().startswith(b"+OK")
    finally:
        c.close()
    # A wrong password fails.
    c = server.raw_pop3()
    try:
        c.send(b"AUTH PLAIN " + auth_plain(user, pw + "x") + b"\r\n")
        assert c.read_line().startswith(b"-ERR")
    finally:
        c.close()


def test_commands_need_login(server):
    c = server.raw_pop3()
    try:
        for cmd in (b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"UIDL"):
            c.send(cmd + b"\r\n")
            line = c.read_line()
            assert line.startswith(b"-ERR"), (cmd, line)
        c.send(b"QUIT\r\n")
        assert c.read_line().startswith(b"+OK")
    finally:
        c.close()


def test_session_sees_a_snapshot(server, mailbox3):
    """Mail arriving during a session is not part of it (RFC 1939 maildrop),
    and deleting everything at QUIT leaves the new message alone."""
    user, pw, sent = mailbox3
    p = server.pop3(user, pw)
    try:
        assert p.stat()[0] == 3
        late = uniq("late-")
        server.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], simple_message(late, to=f"{user}@{DOMAIN}"))
        server.wait_token(user, late.encode())
        assert p.stat()[0] == 3
        assert len(uidl_map(p)) == 3
        for n in (1, 2, 3):
            p.dele(n)
    finally:
        p.quit()
    msgs = server.messages(user)
    assert len(msgs) == 1 and late.encode() in msgs[0], [m[:200] for m in msgs]
    p = server.pop3(user, pw)
    try:
        assert p.stat()[0] == 1
        assert late.encode() in pop3_retr(p, 1)
    finally:
        p.quit()


def test_empty_and_new_mailbox(server):
    """A user who never got mail has an empty maildrop, not an error."""
    user, pw = server.add_user()
    p = server.pop3(user, pw)
    try:
        assert p.stat() == (0, 0)
        assert p.list()[1] == []
        assert p.uidl()[1] == []
    finally:
        p.quit()
