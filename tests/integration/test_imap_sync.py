"""IMAP sessions and the store together: IDLE pushing mail delivered over
SMTP, two sessions seeing each other's flag changes and expunges, POP3
deletions seen in IMAP, UIDs stable across reconnects and a server
restart, and a two-way sync with mbsync (Debian package isync)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from support import DOMAIN, simple_message, uniq, wait_until
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


@pytest.fixture(scope="module")
def srv(postamt_bin, tmp_path_factory):
    s = imap_server(postamt_bin, tmp_path_factory.mktemp("imapsync"))
    try:
        yield s
        s.stop()
    finally:
        s.kill9()


def test_idle_receives_exists_after_smtp_delivery(srv):
    user, pw = srv.add_user()
    deliver(srv, user, 1)
    c = RawImap(srv.addr("imap"))
    try:
        assert c.command(b"a1", f'LOGIN {user} "{pw}"'.encode())[-1].startswith(b"a1 OK")
        assert c.command(b"a2", b"SELECT INBOX")[-1].startswith(b"a2 OK")
        c.send(b"a3 IDLE\r\n")
        assert c.line().startswith(b"+ "), "IDLE continuation"
        token = uniq("idle")
        start = time.monotonic()
        srv.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], simple_message(token, to=f"{user}@{DOMAIN}"))
        lines = []
        while True:
            l = c.line(timeout=15)
            lines.append(l)
            if l == b"* 2 EXISTS\r\n":
                break
            assert len(lines) < 10, lines
        delay = time.monotonic() - start
        print(f"EXISTS {delay:.3f} s after the SMTP transaction began")
        c.send(b"DONE\r\n")
        assert c.until_tag(b"a3")[-1].startswith(b"a3 OK")
        lines = c.command(b"a4", b"FETCH 2 (BODY.PEEK[HEADER.FIELDS (X-TOKEN)])")
        assert any(token.encode() in l for l in lines), lines
    finally:
        c.close()


def test_two_sessions_see_each_others_changes(srv):
    user, pw = srv.add_user()
    deliver(srv, user, 3)
    a = connect(srv, user, pw)
    b = connect(srv, user, pw)
    try:
        ok(a.select("INBOX"))
        ok(b.select("INBOX"))
        ok(a.store("2", "+FLAGS", "(\\Flagged)"))
        ok(b.noop())
        fetches = untagged(b, "FETCH")
        assert any(f.startswith(b"2 (") and b"\\Flagged" in f for f in fetches), fetches

        ok(b.store("1", "+FLAGS", "(\\Deleted)"))
        ok(b.expunge())
        ok(a.noop())
        assert untagged(a, "EXPUNGE") == [b"1"]
        assert uids_of(a) == [2, 3]

        deliver(srv, user, 1)
        ok(b.noop())
        assert untagged(b, "EXISTS")[-1] == b"3"
        assert uids_of(b) == [2, 3, 4]
    finally:
        a.logout()
        b.logout()


def test_pop3_deletion_is_gone_in_imap(srv):
    user, pw = srv.add_user()
    tokens = deliver(srv, user, 2)
    m = connect(srv, user, pw)
    try:
        ok(m.select("INBOX"))
        assert uids_of(m) == [1, 2]
        p = srv.pop3(user, pw)
        try:
            resp, lines, _ = p.retr(1)
            first = b"\n".join(lines)
            p.dele(1)
        finally:
            p.quit()
        deleted = [t for t in tokens if t.encode() in first]
        assert len(deleted) == 1
        ok(m.noop())
        assert untagged(m, "EXPUNGE") == [b"1"]
        left = fetch_map(m, "1:*", "(BODY.PEEK[HEADER.FIELDS (X-TOKEN)])")
        assert len(left) == 1 and deleted[0].encode() not in left[1], left
    finally:
        m.logout()
    # A message appended over IMAP is seen by POP3.
    m = connect(srv, user, pw)
    try:
        ok(m.append("INBOX", None, None, b"Subject: via imap\r\n\r\nappended\r\n"))
    finally:
        m.logout()
    p = srv.pop3(user, pw)
    try:
        count, _ = p.stat()
        assert count == 2
    finally:
        p.quit()


def test_uids_stable_across_reconnect_and_restart(postamt_factory):
    srv = postamt_factory({"listen": dict(IMAP_LISTEN)})
    user, pw = srv.add_user()
    tokens = deliver(srv, user, 3)

    def snapshot():
        m = connect(srv, user, pw)
        try:
            ok(m.select("INBOX"))
            validity = m.untagged_responses["UIDVALIDITY"][-1]
            f = fetch_map(m, "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (X-TOKEN)])")
            by_token = {}
            for text in f.values():
                uid = int(text.split(b"UID ")[1].split()[0])
                tok = [t for t in tokens if t.encode() in text]
                assert len(tok) == 1, text
                by_token[tok[0]] = (uid, b"\\Flagged" in text)
            return validity, by_token
        finally:
            m.logout()

    m = connect(srv, user, pw)
    try:
        ok(m.select("INBOX"))
        ok(m.store("2", "+FLAGS", "(\\Flagged)"))
    finally:
        m.logout()
    first = snapshot()
    assert sorted(u for u, _ in first[1].values()) == [1, 2, 3]
    assert snapshot() == first, "same UIDs on reconnect"
    srv.stop()
    srv.start()
    assert snapshot() == first, "same UIDVALIDITY, UIDs and flags after a restart"
    # The index rebuilds itself when missing (removed while the server is down).
    srv.stop()
    removed = [p for p in srv.mailbox_path(user).rglob("postamt-index*") if p.is_file()]
    assert removed, "the folder index lives beside the Maildir"
    for p in removed:
        p.unlink()
    srv.start()
    validity, rebuilt = snapshot()
    assert sorted(rebuilt) == sorted(tokens), "every message is still there"
    assert sorted(u for u, _ in rebuilt.values()) == [1, 2, 3] or validity != first[0], \
        "a rebuilt index keeps the UIDs or announces a new UIDVALIDITY"


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed")
def test_two_way_sync_with_mbsync(srv, tmp_path):
    user, pw = srv.add_user()
    tokens = deliver(srv, user, 3)
    local = tmp_path / "mail"
    local.mkdir()
    host, port = srv.addr("imaps")
    conf = tmp_path / "mbsyncrc"
    conf.write_text(
        f"""IMAPAccount test
Host {host}
Port {port}
User {user}
Pass {pw}
SSLType IMAPS
CertificateFile {srv.cafile}

IMAPStore remote
Account test

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
"""
    )

    def sync():
        p = subprocess.run(["mbsync", "-c", str(conf), "-a"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "HOME": str(tmp_path)})
        assert p.returncode == 0, f"mbsync failed:\nstdout: {p.stdout}\nstderr: {p.stderr}\n{srv.log('retrieval')[-3000:]}"

    def local_files(folder: str = "INBOX") -> list[Path]:
        d = local / folder
        return sorted(list((d / "cur").glob("*")) + list((d / "new").glob("*")))

    sync()
    files = local_files()
    assert len(files) == 3, files
    assert all((local / f).is_dir() for f in ("Sent", "Trash", "Drafts")), list(local.iterdir())
    got = b"".join(f.read_bytes() for f in files)
    assert all(t.encode() in got for t in tokens)

    # Local changes go up: a new message, a flag, a deletion.
    new_token = uniq("local")
    (local / "INBOX" / "new" / f"{int(time.time())}.local1.host").write_bytes(
        simple_message(new_token, to=f"{user}@{DOMAIN}")
    )
    flag_me = next(f for f in local_files() if tokens[0].encode() in f.read_bytes())
    base = flag_me.name.split(":2,")[0]
    flag_me.rename(local / "INBOX" / "cur" / f"{base}:2,FS")
    kill_me = next(f for f in local_files() if tokens[1].encode() in f.read_bytes())
    base = kill_me.name.split(":2,")[0]
    kill_me.rename(local / "INBOX" / "cur" / f"{base}:2,ST")
    sync()

    m = connect(srv, user, pw)
    try:
        ok(m.select("INBOX"))
        f = fetch_map(m, "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (X-TOKEN)])")
        texts = list(f.values())
        assert any(new_token.encode() in t for t in texts), texts
        assert not any(tokens[1].encode() in t for t in texts), "deleted locally, expunged remotely"
        flagged = [t for t in texts if tokens[0].encode() in t]
        assert flagged and b"\\Flagged" in flagged[0], texts

        # Remote changes come down: a delete and a move.
        target = [n for n, t in f.items() if tokens[2].encode() in t]
        ok(m.copy(str(target[0]), "Trash"))
        ok(m.store(str(target[0]), "+FLAGS", "(\\Deleted)"))
        ok(m.expunge())
    finally:
        m.logout()
    sync()
    inbox = b"".join(p.read_bytes() for p in local_files())
    assert tokens[2].encode() not in inbox
    trash = b"".join(p.read_bytes() for p in local_files("Trash"))
    assert tokens[2].encode() in trash
    # A second sync in a row changes nothing.
    before = sorted(p.name for p in local_files())
    sync()
    assert sorted(p.name for p in local_files()) == before
