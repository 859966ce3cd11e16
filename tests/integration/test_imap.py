"""IMAP end to end with Python's imaplib (and a raw socket where imaplib
cannot go): every RFC 3501 command and the extensions Postamt announces
(UIDPLUS, MOVE, NAMESPACE, ID, ENABLE, UNSELECT, CHILDREN, SPECIAL-USE,
LIST-EXTENDED/LIST-STATUS, CONDSTORE/QRESYNC, ESEARCH, STATUS=SIZE), login
failures, and hostile input."""

from __future__ import annotations

import base64
import imaplib
import re

import pytest

from support import DOMAIN, split_received, uniq
from test_imap_support import (
    RawImap,
    connect,
    deliver,
    fetch_map,
    imap_server,
    ok,
    uids_of,
    untagged,
)


@pytest.fixture(scope="module")
def srv(postamt_bin, tmp_path_factory):
    s = imap_server(postamt_bin, tmp_path_factory.mktemp("imap"))
    try:
        yield s
        s.stop()
    finally:
        s.kill9()


@pytest.fixture
def account(srv):
    return srv.add_user()


def test_greeting_and_capabilities(srv):
    c = RawImap(srv.addr("imap"))
    try:
        assert c.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 "), c.greeting
        caps = c.greeting.split(b"]")[0].split()[3:]
        for cap in (b"AUTH=PLAIN", b"SASL-IR", b"STARTTLS", b"LITERAL+", b"IDLE", b"ID", b"ENABLE"):
            assert cap in caps, (cap, c.greeting)
        assert b"LOGINDISABLED" not in caps, "loopback may log in in plaintext"
    finally:
        c.close()
    m = connect(srv)
    try:
        for cap in ("UIDPLUS", "MOVE", "NAMESPACE", "UNSELECT", "CHILDREN", "SPECIAL-USE",
                    "CONDSTORE", "QRESYNC", "ESEARCH", "STATUS=SIZE", "LIST-EXTENDED"):
            assert cap in m.capabilities, (cap, m.capabilities)
    finally:
        m.logout()


def test_login_failures_say_authenticationfailed(srv, account):
    user, pw = account
    m = connect(srv)
    try:
        with pytest.raises(imaplib.IMAP4.error) as e:
            m.login(user, pw + "x")
        assert "AUTHENTICATIONFAILED" in str(e.value), e.value
        with pytest.raises(imaplib.IMAP4.error) as e2:
            m.login(uniq("nobody"), pw)
        assert str(e2.value) == str(e.value), "unknown user and wrong password look the same"
        ok(m.login(user, pw))
    finally:
        m.logout()


def test_authenticate_plain_continuation_and_sasl_ir(srv, account):
    user, pw = account
    m = connect(srv)
    try:
        typ, _ = m.authenticate("PLAIN", lambda _: f"\0{user}\0{pw}".encode())
        assert typ == "OK"
        assert m.state == "AUTH"
    finally:
        m.logout()
    c = RawImap(srv.addr("imap"))
    try:
        ir = base64.b64encode(f"\0{user}\0{pw}".encode())
        lines = c.command(b"a1", b"AUTHENTICATE PLAIN " + ir)
        assert lines[-1].startswith(b"a1 OK"), lines
    finally:
        c.close()


def test_folders_create_list_rename_subscribe_delete(srv, account):
    m = connect(srv, *account)
    try:
        listing = b"\n".join(ok(m.list()))
        for name, attr in ((b"Sent", b"\\Sent"), (b"Drafts", b"\\Drafts"), (b"Trash", b"\\Trash"),
                           (b"Junk", b"\\Junk"), (b"Archive", b"\\Archive")):
            assert re.search(rb"\([^)]*" + re.escape(attr) + rb"[^)]*\) \"/\" \"?" + name, listing), (name, listing)
        assert b'"INBOX"' in listing or b" INBOX" in listing, listing

        ok(m.create("Projects"))
        ok(m.create("Projects/2026"))
        ok(m.create("Entw&APw-rfe"))  # "Entwürfe" in modified UTF-7
        listing = b"\n".join(ok(m.list()))
        assert re.search(rb"\\HasChildren[^\n]*\"Projects\"", listing), listing
        assert b'"Projects/2026"' in listing, listing
        assert b"Entw&APw-rfe" in listing, listing
        top = b"\n".join(ok(m.list("\"\"", "%")))
        assert b"Projects/2026" not in top and b'"Projects"' in top, top
        sub = b"\n".join(d for d in ok(m.list("Projects", "%")) if d)
        assert b"Projects/2026" in sub and b'"Sent"' not in sub, sub

        typ, data = m.create("Projects")
        assert typ == "NO" and b"ALREADYEXISTS" in data[0], data

        ok(m.rename("Projects/2026", "Projects/2027"))
        listing = b"\n".join(ok(m.list()))
        assert b"Projects/2027" in listing and b"Projects/2026" not in listing, listing

        ok(m.subscribe("Projects/2027"))
        lsub = b"\n".join(d for d in ok(m.lsub()) if d)
        assert b"Projects/2027" in lsub, lsub
        ok(m.unsubscribe("Projects/2027"))
        lsub = b"\n".join(d for d in ok(m.lsub()) if d)
        assert b"Projects/2027" not in lsub, lsub

        ok(m.delete("Projects/2027"))
        typ, data = m.delete("INBOX")
        assert typ == "NO", data
        typ, data = m.delete("Nowhere")
        assert typ == "NO" and b"NONEXISTENT" in data[0], data
        listing = b"\n".join(ok(m.list()))
        assert b"Projects/2027" not in listing, listing
        # The folder is a Maildir++ folder on disk.
        assert (srv.mailbox_path(account[0]) / ".Projects").is_dir()
    finally:
        m.logout()


def test_list_extended_and_status(srv, account):
    user, pw = account
    deliver(srv, user, 2)
    m = connect(srv, user, pw)
    try:
        data = ok(m._simple_command("LIST", "(SPECIAL-USE)", '""', '"*"'))
        special = b"\n".join(d for d in m.untagged_responses.pop("LIST", []) if d)
        assert b"\\Sent" in special and b"INBOX" not in special, special
        ok(m._simple_command("LIST", '""', "INBOX", "RETURN", "(STATUS (MESSAGES UNSEEN SIZE))"))
        untagged(m, "LIST")
        status = b"\n".join(untagged(m, "STATUS"))
        assert re.search(rb"MESSAGES 2 UNSEEN 2 SIZE \d+", status), status
        data = ok(m.status("INBOX", "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ SIZE)"))
        text = data[0]
        for item in (b"MESSAGES 2", b"UIDNEXT 3", b"UNSEEN 2", b"UIDVALIDITY ", b"HIGHESTMODSEQ ", b"SIZE "):
            assert item in text, (item, text)
        typ, data = m.status("Nowhere", "(MESSAGES)")
        assert typ == "NO", data
    finally:
        m.logout()


def test_select_examine(srv, account):
    user, pw = account
    deliver(srv, user, 3)
    m = connect(srv, user, pw)
    try:
        data = ok(m.select("INBOX"))
        assert data == [b"3"], data
        for code in ("UIDVALIDITY", "UIDNEXT", "PERMANENTFLAGS", "UNSEEN", "HIGHESTMODSEQ"):
            assert m.untagged_responses.get(code), (code, m.untagged_responses)
        assert m.untagged_responses.get("READ-WRITE") is not None
        ok(m.close())
        ok(m.select("INBOX", readonly=True))
        assert "READ-ONLY" in m.untagged_responses
        typ, data = m.store("1", "+FLAGS", "(\\Seen)")
        assert typ == "NO", data
        typ, data = m.select("Nowhere")
        assert typ == "NO" and b"NONEXISTENT" in data[0], data
        with pytest.raises(imaplib.IMAP4.error):
            m.fetch("1", "(FLAGS)")  # nothing selected after a failed SELECT
    finally:
        m.logout()


def test_append_fetch_store_search(srv, account):
    user, pw = account
    tokens = deliver(srv, user, 2, subject="report")
    stored = srv.messages(user)
    m = connect(srv, user, pw)
    try:
        ok(m.select("INBOX"))
        f = fetch_map(m, "1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)")
        assert sorted(f) == [1, 2], f
        for n in (1, 2):
            assert b"ENVELOPE (" in f[n] and b"BODYSTRUCTURE (" in f[n], f[n]
            size = int(re.search(rb"RFC822\.SIZE (\d+)", f[n]).group(1))
            assert size in [len(s) for s in stored], (size, [len(s) for s in stored])

        data = ok(m.fetch("1", "(BODY.PEEK[])"))
        body = data[0][1]
        assert body in stored, "BODY[] is the stored message, byte for byte"
        assert b"\\Seen" not in b"".join(p if isinstance(p, bytes) else p[0] for p in ok(m.fetch("1", "(FLAGS)")))
        ok(m.fetch("1", "(BODY[TEXT])"))
        flags = b"".join(p if isinstance(p, bytes) else p[0] for p in ok(m.fetch("1", "(FLAGS)")))
        assert b"\\Seen" in flags, "BODY[] sets \\Seen"
        hdr = ok(m.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))[0][1]
        assert hdr.startswith(b"Subject: report "), hdr

        data = ok(m.uid("FETCH", "1:*", "(FLAGS)"))
        assert all(b"UID " in (d if isinstance(d, bytes) else d[0]) for d in data if d), data

        ok(m.store("2", "+FLAGS", "(\\Flagged $Important)"))
        ok(m.store("1", "-FLAGS", "(\\Seen)"))
        assert ok(m.search(None, "FLAGGED")) == [b"2"]
        assert ok(m.search(None, "KEYWORD", "$Important")) == [b"2"]
        assert ok(m.search(None, "UNSEEN")) == [b"1 2"]
        assert ok(m.search(None, "SUBJECT", tokens[1])) == [b"2"]
        assert ok(m.search(None, "BODY", f'"this is {tokens[0]}"')) == [b"1"]
        assert ok(m.search("UTF-8", "TEXT", tokens[0])) == [b"1"]
        assert ok(m.search(None, "NOT", "FLAGGED", "LARGER", "10")) == [b"1"]
        assert ok(m.uid("SEARCH", None, "ALL")) == [b"1 2"]
        typ, data = m.search("KOI8-R", "ALL")
        assert typ == "NO" and b"BADCHARSET" in data[0], data

        msg = b"From: me@example.org\r\nSubject: appended\r\n\r\nappended body\r\n"
        data = ok(m.append("INBOX", "(\\Seen $Draft)", imaplib.Time2Internaldate(1_700_000_000), msg))
        assert re.match(rb"\[APPENDUID \d+ 3\]", data[0]), data
        ok(m.noop())
        assert untagged(m, "EXISTS")[-1] == b"3"
        f = fetch_map(m, "3", "(FLAGS INTERNALDATE RFC822.SIZE)")
        assert b"\\Seen" in f[3] and b"$Draft" in f[3] and b"14-Nov-2023" in f[3], f
        assert f"RFC822.SIZE {len(msg)}".encode() in f[3], f
        typ, data = m.append("Nowhere", None, None, msg)
        assert typ == "NO" and b"TRYCREATE" in data[0], data
    finally:
        m.logout()


def test_copy_move_expunge_uidplus(srv, account):
    user, pw = account
    deliver(srv, user, 4)
    m = connect(srv, user, pw)
    try:
        ok(m.select("INBOX"))
        data = ok(m.copy("1:2", "Archive"))
        assert re.search(rb"COPYUID \d+ 1:2 1:2", data[0]), data
        typ, data = m.copy("1", "Nowhere")
        assert typ == "NO" and b"TRYCREATE" in data[0], data

        typ, data = m.uid("MOVE", "3", "Trash")
        assert typ == "OK", data
        assert untagged(m, "EXPUNGE") == [b"3"]
        assert uids_of(m) == [1, 2, 4]

        ok(m.store("1", "+FLAGS", "(\\Deleted)"))
        ok(m.store("3", "+FLAGS", "(\\Deleted)"))  # UID 4
        ok(m.uid("EXPUNGE", "4"))
        assert untagged(m, "EXPUNGE") == [b"3"]
        assert uids_of(m) == [1, 2]
        assert ok(m.expunge()) == [b"1"], "imaplib returns the EXPUNGE numbers"
        assert uids_of(m) == [2]

        ok(m.select("Archive"))
        assert uids_of(m) == [1, 2]
        ok(m.select("Trash"))
        assert uids_of(m) == [1]
        ok(m.store("1", "+FLAGS", "(\\Deleted)"))
        ok(m.close())  # expunges silently
        ok(m.select("Trash"))
        assert uids_of(m) == []
    finally:
        m.logout()


def test_condstore_qresync_esearch(srv, account):
    user, pw = account
    deliver(srv, user, 3)
    m = connect(srv, user, pw)
    try:
        ok(m.enable("QRESYNC"))
        ok(m.select("INBOX"))
        hms = int(m.untagged_responses["HIGHESTMODSEQ"][-1])
        uv = int(m.untagged_responses["UIDVALIDITY"][-1])
        ok(m.store("2", "+FLAGS", "(\\Flagged)"))
        data = ok(m.fetch("1:*", f"(FLAGS) (CHANGEDSINCE {hms})"))
        text = b" ".join(d for d in data if isinstance(d, bytes))
        assert b"UID 2" in text and b"MODSEQ (" in text and b"UID 1 " not in text, data

        typ, data = m._simple_command("STORE", "1:2", f"(UNCHANGEDSINCE {hms})", "+FLAGS", "(\\Answered)")
        assert typ == "OK", data
        assert re.search(rb"MODIFIED 2", b" ".join(m.untagged_responses.pop("MODIFIED", []) + [data[0] or b""])) \
            or b"MODIFIED" in (data[0] or b""), (data, m.untagged_responses)

        typ, data = m._simple_command("SEARCH", "RETURN", "(MIN MAX COUNT ALL)", "ALL")
        assert typ == "OK", data
        es = untagged(m, "ESEARCH")
        assert es and b"MIN 1 MAX 3 COUNT 3 ALL 1:3" in es[-1], es

        ok(m.store("3", "+FLAGS", "(\\Deleted)"))
        assert m.expunge() == ("OK", [None]), "QRESYNC: no EXPUNGE responses"
        assert untagged(m, "VANISHED") == [b"3"], "QRESYNC: VANISHED instead of EXPUNGE"
        ok(m.unselect())

        typ, data = m._simple_command("SELECT", "INBOX", f"(QRESYNC ({uv} {hms} 1:3))")
        assert typ == "OK", data
        vanished = untagged(m, "VANISHED")
        assert any(b"(EARLIER) 3" in v for v in vanished), vanished
        fetched = b" ".join(x if isinstance(x, bytes) else x[0] for x in untagged(m, "FETCH"))
        assert b"UID 2" in fetched and b"MODSEQ" in fetched, fetched
    finally:
        m.logout()


def test_namespace_id_check_unselect_noop(srv, account):
    m = connect(srv, *account)
    try:
        data = ok(m.namespace())
        assert data == [b'(("" "/")) NIL NIL'], data
        ok(m._simple_command("ID", '("name" "pytest")'))
        ident = untagged(m, "ID")
        assert ident and b'"name" "Postamt"' in ident[-1], ident
        ok(m.select("INBOX"))
        ok(m.check())
        ok(m.noop())
        ok(m.unselect())
        with pytest.raises(imaplib.IMAP4.error):
            m.check()
    finally:
        m.logout()


def test_bad_input(srv, account):
    user, pw = account
    # A huge literal before login: BYE, connection closed.
    c = RawImap(srv.addr("imap"))
    try:
        c.send(b"a1 LOGIN {100000000}\r\n")
        l = c.line()
        assert l.startswith(b"* BYE"), l
        assert c.closed()
    finally:
        c.close()
    # A 100 KB line: BYE.
    c = RawImap(srv.addr("imap"))
    try:
        c.send(b"a1 NOOP " + b"x" * 100_000 + b"\r\n")
        l = c.line()
        assert l.startswith(b"* BYE"), l
    finally:
        c.close()
    c = RawImap(srv.addr("imap"))
    try:
        assert c.command(b"a1", b"LOGIN " + user.encode() + b" \"" + pw.encode() + b"\"")[-1].startswith(b"a1 OK")
        assert c.command(b"a2", b"SELECT INBOX")[-1].startswith(b"a2 OK")
        # 5,000 '(' -> BAD, the session goes on.
        assert c.command(b"a3", b"SEARCH " + b"(" * 5000)[-1].startswith(b"a3 BAD")
        assert c.command(b"a4", b"BLURB")[-1].startswith(b"a4 BAD")
        for tag, name in ((b"a5", b'"../etc"'), (b"a6", b'"/abs"'), (b"a7", b'"~root"'), (b"a8", b'"a/../b"')):
            last = c.command(tag, b"CREATE " + name)[-1]
            assert last.startswith(tag + b" NO [CANNOT]"), last
            last = c.command(tag, b"SELECT " + name)[-1]
            assert last.startswith(tag + b" NO [CANNOT]"), last
        assert c.command(b"a9", b"FETCH 99 FLAGS")[-1].startswith(b"a9 BAD")
        assert c.command(b"b1", b"NOOP")[-1].startswith(b"b1 OK")
    finally:
        c.close()
