"""More IMAP end to end with imaplib and raw sockets, beside test_imap.py:
plain MOVE (not UID MOVE), UID STORE, UID COPY, APPEND with a LITERAL+
non-synchronising literal, oversized literals after login (`{n}` refused
with `NO [TOOBIG]` and the session goes on; `{n+}` ends it with
`* BYE [TOOBIG]`), the SEARCH nesting limit, the UIDs of the surviving
messages after a POP3 deletion, and keywords across a server restart
(and what a rebuilt index keeps)."""

from __future__ import annotations

import re

import pytest

from support import DOMAIN, simple_message, uniq
from test_imap_support import (
    IMAP_LISTEN,
    RawImap,
    connect,
    deliver,
    fetch_map,
    imap_server,
    ok,
    uids_of,
    untagged,
)

# The tests' `[limits] max_message_size` (support.base_config): the
# largest literal after login.
MAX_MESSAGE_SIZE = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def srv(postamt_bin, tmp_path_factory):
    s = imap_server(postamt_bin, tmp_path_factory.mktemp("imapmore"))
    try:
        yield s
        s.stop()
    finally:
        s.kill9()


@pytest.fixture
def account(srv):
    return srv.add_user()


def tokens_by_uid(m, tokens: list[str]) -> dict[int, str]:
    """{UID: token} of the selected folder's messages."""
    out = {}
    for text in fetch_map(m, "1:*", "(UID BODY.PEEK[HEADER.FIELDS (X-TOKEN)])").values():
        uid = int(re.search(rb"UID (\d+)", text).group(1))
        found = [t for t in tokens if t.encode() in text]
        assert len(found) == 1, text
        out[uid] = found[0]
    return out


def flags_of(m, seqset: str = "1:*", uid: bool = False) -> dict[int, set[bytes]]:
    """{sequence number: flags}, without the session's `\\Recent`."""
    out = {}
    for n, text in fetch_map(m, seqset, "(FLAGS)", uid).items():
        flags = re.search(rb"FLAGS \(([^)]*)\)", text).group(1)
        out[n] = set(flags.split()) - {b"\\Recent"}
    return out


def login_raw(srv, user: str, pw: str) -> RawImap:
    c = RawImap(srv.addr("imap"))
    assert c.command(b"a1", f'LOGIN {user} "{pw}"'.encode())[-1].startswith(b"a1 OK")
    return c


def test_plain_move(srv, account):
    user, pw = account
    tokens = deliver(srv, user, 3)
    m = connect(srv, user, pw)
    try:
        ok(m.select("INBOX"))
        typ, data = m._simple_command("MOVE", "2", "Archive")
        assert typ == "OK", data
        copyuid = untagged(m, "COPYUID") + [d for d in data if d and b"COPYUID" in d]
        assert copyuid and re.search(rb"\d+ 2 1\b", copyuid[0]), f"COPYUID (source UID 2 -> 1): {copyuid}"
        assert untagged(m, "EXPUNGE") == [b"2"], "the moved message is expunged by sequence number"
        assert uids_of(m) == [1, 3]
        assert sorted(tokens_by_uid(m, tokens).values()) == sorted([tokens[0], tokens[2]])
        # A sequence range after the first move: numbers, not UIDs.
        typ, data = m._simple_command("MOVE", "1:2", "Trash")
        assert typ == "OK", data
        assert untagged(m, "EXPUNGE") in ([b"1", b"1"], [b"2", b"1"]), "two EXPUNGEs, each renumbering the rest"
        assert uids_of(m) == []
        ok(m.select("Archive"))
        assert tokens_by_uid(m, tokens) == {1: tokens[1]}
        ok(m.select("Trash"))
        assert sorted(tokens_by_uid(m, tokens).values()) == sorted([tokens[0], tokens[2]])
        typ, data = m._simple_command("MOVE", "1", "Nowhere")
        assert typ == "NO" and b"TRYCREATE" in data[0], data
    finally:
        m.logout()


def test_uid_store(srv, account):
    user, pw = account
    deliver(srv, user, 3)
    m = connect(srv, user, pw)
    try:
        ok(m.select("INBOX"))
        # Make sequence numbers and UIDs differ: expunge UID 1.
        ok(m.store("1", "+FLAGS", "(\\Deleted)"))
        ok(m.expunge())
        assert uids_of(m) == [2, 3]
        data = ok(m.uid("STORE", "3", "+FLAGS", "(\\Flagged $Label1)"))
        text = b" ".join(d for d in data if isinstance(d, bytes))
        assert re.search(rb"^2 \(", text) and b"UID 3" in text, f"FETCH of seq 2 with its UID: {data}"
        assert b"\\Flagged" in text and b"$Label1" in text, data
        flags = flags_of(m)
        assert b"\\Flagged" not in flags[1] and b"\\Flagged" in flags[2], flags
        # .SILENT: no FETCH back, the flags change all the same.
        data = ok(m.uid("STORE", "2:3", "+FLAGS.SILENT", "(\\Seen)"))
        assert data == [None], f"STORE .SILENT sends no FETCH of the change: {data}"
        flags = flags_of(m)
        assert all(b"\\Seen" in f for f in flags.values()), flags
        ok(m.uid("STORE", "2", "-FLAGS", "(\\Seen)"))
        ok(m.uid("STORE", "3", "FLAGS", "(\\Answered)"))
        assert flags_of(m) == {1: set(), 2: {b"\\Answered"}}, flags_of(m)
        # A UID that does not exist changes nothing and is no error.
        ok(m.uid("STORE", "99", "+FLAGS", "(\\Flagged)"))
        assert flags_of(m) == {1: set(), 2: {b"\\Answered"}}
    finally:
        m.logout()


def test_uid_copy(srv, account):
    user, pw = account
    tokens = deliver(srv, user, 4)
    m = connect(srv, user, pw)
    try:
        ok(m.select("INBOX"))
        ok(m.store("1", "+FLAGS", "(\\Deleted)"))
        ok(m.expunge())
        ok(m.store("2", "+FLAGS", "(\\Flagged)"))  # UID 3
        # imaplib's uid() drops the tagged text that carries COPYUID.
        data = ok(m._simple_command("UID", "COPY", "3:4", "Archive"))
        assert re.search(rb"COPYUID \d+ 3[:,]4 1[:,]2", data[0]), data
        assert uids_of(m) == [2, 3, 4], "COPY leaves the source as it was"
        assert untagged(m, "EXPUNGE") == []
        data = ok(m._simple_command("UID", "COPY", "2", "Archive"))
        assert re.search(rb"COPYUID \d+ 2 3", data[0]), data
        typ, data = m._simple_command("UID", "COPY", "2", "Nowhere")
        assert typ == "NO" and b"TRYCREATE" in data[0], data
        ok(m.select("Archive"))
        assert tokens_by_uid(m, tokens) == {1: tokens[2], 2: tokens[3], 3: tokens[1]}
        flags = flags_of(m, "1:*", uid=True)
        assert b"\\Flagged" in flags[1] and b"\\Flagged" not in flags[2], "flags are copied"
    finally:
        m.logout()


def test_append_with_literal_plus(srv, account):
    """`{n+}`: the client sends the message at once, the server sends no
    continuation request; a command pipelined behind it is answered too."""
    user, pw = account
    token = uniq("litplus")
    msg = simple_message(token, subject="literal plus", to=f"{user}@{DOMAIN}")
    c = login_raw(srv, user, pw)
    try:
        c.send(b"a2 APPEND INBOX (\\Seen $Label2) {%d+}\r\n" % len(msg) + msg + b"\r\na3 NOOP\r\n")
        lines = c.until_tag(b"a2")
        assert not any(l.startswith(b"+") for l in lines), f"a continuation for a LITERAL+: {lines}"
        assert re.match(rb"a2 OK \[APPENDUID \d+ 1\]", lines[-1]), lines
        assert c.until_tag(b"a3")[-1].startswith(b"a3 OK")
        assert c.command(b"a4", b"SELECT INBOX")[-1].startswith(b"a4 OK")
        lines = c.command(b"a5", b"UID FETCH 1 (FLAGS RFC822.SIZE BODY.PEEK[])")
        text = b"".join(lines)
        assert b"RFC822.SIZE %d" % len(msg) in text, text[:300]
        assert b"\\Seen" in text and b"$Label2" in text, text[:300]
        assert msg in text, "the appended message byte for byte"
    finally:
        c.close()
    # The message is a file in the Maildir like any other.
    assert any(token.encode() in data for data in srv.messages(user))


def test_oversized_synchronising_literal_is_refused_and_the_session_goes_on(srv, account):
    user, pw = account
    c = login_raw(srv, user, pw)
    try:
        c.send(b"a2 APPEND INBOX {%d}\r\n" % (MAX_MESSAGE_SIZE + 1))
        l = c.line()
        assert not l.startswith(b"+"), f"a continuation request for a literal over the limit: {l!r}"
        assert l.startswith(b"a2 NO [TOOBIG]") or l.startswith(b"a2 BAD"), l
        # The client sent no literal; the next command is a command.
        assert c.command(b"a3", b"NOOP")[-1].startswith(b"a3 OK")
        # A literal just at the limit is accepted (`+`); a normal APPEND works.
        msg = b"Subject: small\r\n\r\nsmall\r\n"
        c.send(b"a4 APPEND INBOX {%d}\r\n" % len(msg))
        assert c.line().startswith(b"+ ")
        c.send(msg + b"\r\n")
        assert c.until_tag(b"a4")[-1].startswith(b"a4 OK")
        c.send(b"a5 APPEND INBOX {%d}\r\n" % MAX_MESSAGE_SIZE)
        assert c.line().startswith(b"+ "), "a literal of exactly max_message_size is accepted"
        head = b"Subject: big\r\n\r\n"
        body = head + b"x" * (MAX_MESSAGE_SIZE - len(head) - 2) + b"\r\n"
        assert len(body) == MAX_MESSAGE_SIZE
        c.send(body + b"\r\n")
        assert c.until_tag(b"a5")[-1].startswith(b"a5 OK")
        assert c.command(b"a6", b"STATUS INBOX (MESSAGES)")[-1].startswith(b"a6 OK")
    finally:
        c.close()


def test_oversized_non_synchronising_literal_ends_the_session(srv, account):
    user, pw = account
    c = login_raw(srv, user, pw)
    try:
        c.send(b"a2 APPEND INBOX {%d+}\r\n" % (MAX_MESSAGE_SIZE + 1))
        l = c.line()
        assert l.startswith(b"* BYE [TOOBIG]"), l
        assert c.closed(), "the connection is closed after BYE"
    finally:
        c.close()
    # Nothing was stored, and the account works on a new connection.
    c = login_raw(srv, user, pw)
    try:
        lines = c.command(b"a2", b"STATUS INBOX (MESSAGES)")
        assert any(b"MESSAGES 0" in l for l in lines), lines
    finally:
        c.close()


def test_search_nesting_limit(srv, account):
    """SEARCH keys nest 8 levels deep (parentheses, NOT and OR each count);
    deeper is `BAD` and the session goes on."""
    user, pw = account
    deliver(srv, user, 1)
    c = login_raw(srv, user, pw)
    try:
        assert c.command(b"a2", b"SELECT INBOX")[-1].startswith(b"a2 OK")
        lines = c.command(b"a3", b"SEARCH " + b"(" * 8 + b"ALL" + b")" * 8)
        assert lines[-1].startswith(b"a3 OK") and b"* SEARCH 1\r\n" in lines, lines
        lines = c.command(b"a4", b"SEARCH " + b"NOT " * 7 + b"(DELETED)")
        assert lines[-1].startswith(b"a4 OK") and b"* SEARCH 1\r\n" in lines, lines
        assert c.command(b"a5", b"SEARCH " + b"(" * 9 + b"ALL" + b")" * 9)[-1].startswith(b"a5 BAD")
        assert c.command(b"a6", b"SEARCH " + b"NOT " * 8 + b"(DELETED)")[-1].startswith(b"a6 BAD")
        assert c.command(b"a7", b"NOOP")[-1].startswith(b"a7 OK")
    finally:
        c.close()


def test_uids_unchanged_after_pop3_deletion(srv, account):
    user, pw = account
    tokens = deliver(srv, user, 3)
    m = connect(srv, user, pw)
    try:
        ok(m.select("INBOX"))
        validity = m.untagged_responses["UIDVALIDITY"][-1]
        before = tokens_by_uid(m, tokens)
        assert sorted(before) == [1, 2, 3]
        # Delete the middle one (UID 2) over POP3.
        p = srv.pop3(user, pw)
        try:
            n = next(i for i in range(1, 4) if before[2].encode() in b"\n".join(p.retr(i)[1]))
            p.dele(n)
        finally:
            p.quit()
        ok(m.noop())
        assert untagged(m, "EXPUNGE") == [b"2"]
        assert tokens_by_uid(m, tokens) == {1: before[1], 3: before[3]}, "same session"
    finally:
        m.logout()
    m = connect(srv, user, pw)
    try:
        ok(m.select("INBOX"))
        assert m.untagged_responses["UIDVALIDITY"][-1] == validity
        assert tokens_by_uid(m, tokens) == {1: before[1], 3: before[3]}, "new session"
        assert b"UIDNEXT 4" in ok(m.status("INBOX", "(UIDNEXT)"))[0], "UID 2 is not given out again"
    finally:
        m.logout()


def test_keywords_survive_a_restart(postamt_factory):
    srv = postamt_factory({"listen": dict(IMAP_LISTEN)})
    user, pw = srv.add_user()
    tokens = deliver(srv, user, 2)
    m = connect(srv, user, pw)
    try:
        ok(m.select("INBOX"))
        ok(m.store("1", "+FLAGS", "($Label1 \\Flagged)"))
        ok(m.store("2", "+FLAGS", "($Label3 Custom_Word)"))
        appended = b"Subject: with keywords\r\n\r\nbody\r\n"
        ok(m.append("INBOX", "(\\Seen $Label2)", None, appended))
        ok(m.select("Archive"))
        ok(m.append("Archive", "($Label4)", None, appended))
    finally:
        m.logout()

    def state():
        m = connect(srv, user, pw)
        try:
            ok(m.select("INBOX"))
            validity = m.untagged_responses["UIDVALIDITY"][-1]
            permanent = b" ".join(m.untagged_responses.get("PERMANENTFLAGS", []))
            inbox = flags_of(m, "1:*", uid=True)
            ok(m.select("Archive"))
            archive = flags_of(m, "1:*", uid=True)
            return validity, permanent, inbox, archive
        finally:
            m.logout()

    validity, permanent, inbox, archive = state()
    assert inbox == {1: {b"$Label1", b"\\Flagged"}, 2: {b"$Label3", b"Custom_Word"}, 3: {b"$Label2", b"\\Seen"}}, inbox
    assert archive == {1: {b"$Label4"}}, archive
    assert b"\\*" in permanent, f"new keywords may be stored: {permanent!r}"

    srv.stop()
    srv.start()
    again = state()
    assert again[0] == validity, "same UIDVALIDITY after a restart"
    assert again[2] == inbox, f"INBOX flags after a restart: {again[2]} (before: {inbox})"
    assert again[3] == archive, f"Archive flags after a restart: {again[3]} (before: {archive})"

    m = connect(srv, user, pw)
    try:
        ok(m.select("INBOX"))
        assert ok(m.search(None, "KEYWORD", "$Label1")) == [b"1"]
        assert ok(m.uid("SEARCH", None, "KEYWORD", "Custom_Word")) == [b"2"]
        assert ok(m.search(None, "UNKEYWORD", "$Label2")) == [b"1 2"]
    finally:
        m.logout()

    # A rebuilt index (deleted while the server is down) gets a new
    # UIDVALIDITY; the system flags come back from the Maildir file
    # names (docs/imap.md: keywords live only in the index).
    srv.stop()
    for p in srv.mailbox_path(user).rglob("postamt-index*"):
        if p.is_file():
            p.unlink()
    srv.start()
    rebuilt = state()
    assert rebuilt[0] != validity, "a rebuilt index announces a new UIDVALIDITY"
    system = sorted(sorted(f & {b"\\Flagged", b"\\Seen"}) for f in rebuilt[2].values())
    assert system == [[], [b"\\Flagged"], [b"\\Seen"]], f"system flags after the rebuild: {rebuilt[2]}"
    m = connect(srv, user, pw)
    try:
        assert ok(m.select("INBOX")) == [b"3"], "every message is still there"
        found = b" ".join(fetch_map(m, "1:*", "(BODY.PEEK[HEADER.FIELDS (X-TOKEN)])").values())
        assert all(t.encode() in found for t in tokens), found
    finally:
        m.logout()
