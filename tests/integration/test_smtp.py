"""SMTP receiver end to end: extensions, byte-exact round trips into Maildir
and out through POP3, dot-stuffing, BDAT, envelope checks, limits, loop
detection, the smuggling probe, pipelining and curl as a client."""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import time

import pytest

from support import (
    CLIENT_NAME,
    DOMAIN,
    HOSTNAME,
    RawClient,
    assert_bytes_equal,
    pop3_retr,
    queue_id_from,
    simple_message,
    split_received,
    uniq,
)


def roundtrip(server, user, password, sent, token, **send_kw):
    """Sends `sent` to `user`, then checks Maildir and POP3 both return our
    Received header followed by exactly the bytes sent."""
    server.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], sent, **send_kw)
    stored = server.wait_token(user, token.encode())
    received = split_received(stored, sent)
    box = server.mailbox_path(user)
    for sub in ("tmp", "new", "cur"):
        assert (box / sub).is_dir(), f"Maildir {box} lacks {sub}/"
    assert list((box / "tmp").iterdir()) == [], "a delivery left files in tmp/"
    assert HOSTNAME.encode() in received, f"Received header should name {HOSTNAME}: {received!r}"
    p = server.pop3(user, password)
    try:
        count, size = p.stat()
        assert count == 1
        assert size == len(stored), f"STAT size {size} != stored size {len(stored)}"
        listed = p.list(1)
        assert int(listed.split()[2]) == len(stored), listed
        assert_bytes_equal(pop3_retr(p, 1), stored, "POP3 RETR vs Maildir file")
    finally:
        p.quit()
    return stored


def test_ehlo_advertises_extensions(server):
    with server.smtp() as s:
        feats = s.esmtp_features
        for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes", "smtputf8", "chunking"):
            assert ext in feats, f"EHLO does not advertise {ext.upper()}: {feats}"
        assert feats["size"].strip() == str(server.config["limits"]["max_message_size"]), feats["size"]
        assert HOSTNAME in s.ehlo_resp.decode().splitlines()[0], s.ehlo_resp


def test_helo_works(server):
    c = server.raw_smtp(ehlo=False)
    try:
        text = c.command(b"HELO " + CLIENT_NAME.encode(), 250)
        assert HOSTNAME.encode() in text
        c.command(b"QUIT", 221)
    finally:
        c.close()


def test_plain_roundtrip(server):
    user, pw = server.add_user()
    token = uniq("plain-")
    sent = simple_message(token, to=f"{user}@{DOMAIN}")
    roundtrip(server, user, pw, sent, token)


@pytest.mark.parametrize("options", [["BODY=8BITMIME"], ["BODY=8BITMIME", "SMTPUTF8"]], ids=["8bitmime", "smtputf8"])
def test_8bit_roundtrip(server, options):
    user, pw = server.add_user()
    token = uniq("8bit-")
    subject = "Grüße aus Köln – ½ € 日本語" if "SMTPUTF8" in options else "8bit"
    body = (
        "Grüße, Jürgen!\r\n"
        "Straße, Äpfel, Öl, Übermut: ½ € ß.\r\n"
        "日本語のテキスト。 Ελληνικά. Русский.\r\n"
        f"{token}\r\n"
    ).encode("utf-8")
    sent = (
        f"From: <sender@{DOMAIN}>\r\nTo: <{user}@{DOMAIN}>\r\nSubject: {subject}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode("utf-8") + body
    roundtrip(server, user, pw, sent, token, mail_options=options)


def test_2mb_roundtrip(server):
    user, pw = server.add_user()
    token = uniq("big-")
    rnd = random.Random(1234)
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    lines = [bytes(rnd.choice(alphabet) for _ in range(76)) for _ in range(512)]
    body = b"".join(lines[i % 512] + b"\r\n" for i in range(2 * 1024 * 1024 // 78 + 1))
    sent = simple_message(token, body=body + token.encode() + b"\r\n", to=f"{user}@{DOMAIN}")
    assert len(sent) > 2 * 1024 * 1024
    stored = roundtrip(server, user, pw, sent, token)
    assert hashlib.sha256(stored[-len(sent):]).digest() == hashlib.sha256(sent).digest()


def test_dot_stuffing_roundtrip(server):
    """Lines starting with '.' (smtplib stuffs them; the server must
    unstuff on DATA, and POP3 must stuff them again on RETR)."""
    user, pw = server.add_user()
    token = uniq("dots-")
    body = (
        b".leading dot\r\n"
        b"..two leading dots\r\n"
        b".\r\n"
        b"..\r\n"
        b"middle . dot\r\n"
        b". space after dot\r\n"
        + token.encode()
        + b"\r\n"
        b".last line\r\n"
    )
    sent = simple_message(token, body=body, to=f"{user}@{DOMAIN}")
    roundtrip(server, user, pw, sent, token)


def test_dot_stuffing_raw_wire(server):
    """The same, with the stuffing written by hand on the wire."""
    user, _ = server.add_user()
    token = uniq("rawdots-")
    content = simple_message(token, body=b".a\r\n..b\r\n.\r\nend\r\n", to=f"{user}@{DOMAIN}")
    wire = content.replace(b"\r\n.", b"\r\n..")
    c = server.raw_smtp()
    try:
        c.command(f"MAIL FROM:<sender@{DOMAIN}>".encode(), 250)
        c.command(f"RCPT TO:<{user}@{DOMAIN}>".encode(), 250)
        c.command(b"DATA", 354)
        c.send(wire + b".\r\n")
        queue_id_from(c.expect(250))
        c.command(b"QUIT", 221)
    finally:
        c.close()
    split_received(server.wait_token(user, token.encode()), content)


def test_bdat(server):
    """BDAT chunks are taken byte for byte: no dot-unstuffing, no end marker."""
    user, pw = server.add_user()
    token = uniq("bdat-")
    header = (
        f"From: <sender@{DOMAIN}>\r\nTo: <{user}@{DOMAIN}>\r\nSubject: bdat {token}\r\n\r\n"
    ).encode()
    chunk1 = header + b"first chunk\r\n.\r\n..not stuffed\r\n"
    chunk2 = b"second chunk\r\n.\r\nQUIT\r\n" + token.encode() + b"\r\n"
    chunk3 = b"last chunk\r\n"
    c = server.raw_smtp()
    try:
        c.command(f"MAIL FROM:<sender@{DOMAIN}>".encode(), 250)
        c.command(f"RCPT TO:<{user}@{DOMAIN}>".encode(), 250)
        c.send(b"BDAT %d\r\n" % len(chunk1) + chunk1)
        c.expect(250)
        c.send(b"BDAT %d\r\n" % len(chunk2) + chunk2)
        c.expect(250)
        c.send(b"BDAT %d LAST\r\n" % len(chunk3) + chunk3)
        code, text = c.read_reply()
        assert code == 250, (code, text)
        queue_id_from(text)
        c.command(b"QUIT", 221)
    finally:
        c.close()
    sent = chunk1 + chunk2 + chunk3
    stored = server.wait_token(user, token.encode())
    split_received(stored, sent)
    p = server.pop3(user, pw)
    try:
        assert_bytes_equal(pop3_retr(p, 1), stored, "POP3 RETR of a BDAT message")
    finally:
        p.quit()


def test_bdat_zero_last_and_pipelined(server):
    """Pipelined BDAT chunks and an empty `BDAT 0 LAST`."""
    user, _ = server.add_user()
    token = uniq("bdat0-")
    body = simple_message(token, to=f"{user}@{DOMAIN}")
    a, b = body[:37], body[37:]
    c = server.raw_smtp()
    try:
        c.send(
            f"MAIL FROM:<sender@{DOMAIN}>\r\nRCPT TO:<{user}@{DOMAIN}>\r\n".encode()
            + b"BDAT %d\r\n" % len(a) + a
            + b"BDAT %d\r\n" % len(b) + b
            + b"BDAT 0 LAST\r\n"
        )
        c.expect(250)
        c.expect(250)
        c.expect(250)
        c.expect(250)
        queue_id_from(c.expect(250))
        c.command(b"QUIT", 221)
    finally:
        c.close()
    split_received(server.wait_token(user, token.encode()), body)


def test_unknown_user_550(server):
    with server.smtp() as s:
        assert s.mail(f"sender@{DOMAIN}")[0] == 250
        code, resp = s.rcpt(f"{uniq('nobody')}@{DOMAIN}")
        assert code == 550, (code, resp)
        assert resp.startswith(b"5.1.1"), resp


def test_path_like_local_parts_refused(server):
    with server.smtp() as s:
        assert s.mail(f"sender@{DOMAIN}")[0] == 250
        for rcpt in ('"../../etc"', '"a/b"', "..", ".hidden", '"x\\/y"'):
            code, resp = s.docmd(f"RCPT TO:<{rcpt}@{DOMAIN}>")
            assert 500 <= code <= 599, (rcpt, code, resp)
    assert not (server.data_dir.parent / "etc").exists()


def test_relay_denied_even_from_loopback(server):
    with server.smtp() as s:
        assert s.mail(f"sender@{DOMAIN}")[0] == 250
        for rcpt in ("someone@elsewhere.test", f"someone@sub.{DOMAIN}", f"someone@{DOMAIN}.elsewhere.test"):
            code, resp = s.rcpt(rcpt)
            assert code == 554, (rcpt, code, resp)
            assert resp.startswith(b"5.7.1"), (rcpt, resp)
        # An address literal is never local here: refused one way or another.
        code, resp = s.rcpt("someone@[127.0.0.1]")
        assert 500 <= code <= 599, (code, resp)
        # Nothing was accepted, so DATA must not start.
        code, resp = s.docmd("DATA")
        assert code in (503, 554), (code, resp)


def test_postmaster_always_accepted(server):
    """RFC 5321 4.5.1: `postmaster@domain` and bare `<Postmaster>` are
    accepted even when no account of that name was created."""
    with server.smtp() as s:
        assert s.mail(f"sender@{DOMAIN}")[0] == 250
        for rcpt in (f"postmaster@{DOMAIN}", f"postmaster@{HOSTNAME}", "Postmaster"):
            code, resp = s.rcpt(rcpt)
            assert code == 250, (rcpt, code, resp)


def test_hostname_and_domain_case_are_local(server):
    user, _ = server.add_user()
    token = uniq("local-")
    with server.smtp() as s:
        assert s.mail(f"sender@{DOMAIN}")[0] == 250
        for rcpt in (f"{user}@{HOSTNAME}", f"{user}@{DOMAIN.upper()}"):
            code, resp = s.rcpt(rcpt)
            assert code == 250, (rcpt, code, resp)
        code, resp = s.data(simple_message(token, to=f"{user}@{DOMAIN}"))
        assert code == 250, (code, resp)
    # Two envelope recipients reach the same user; at least one copy arrives.
    server.wait_token(user, token.encode())


def test_too_many_recipients(server):
    limit = server.config["limits"]["max_recipients"]
    user, _ = server.add_user()
    prefix = uniq("many")
    # A wildcard alias gives us `limit + 1` distinct valid addresses.
    server.add_alias(f"{prefix}-*", user)
    token = uniq("rcpts-")
    with server.smtp() as s:
        assert s.mail(f"sender@{DOMAIN}")[0] == 250
        for i in range(limit):
            code, resp = s.rcpt(f"{prefix}-{i}@{DOMAIN}")
            assert code == 250, (i, code, resp)
        code, resp = s.rcpt(f"{prefix}-{limit}@{DOMAIN}")
        assert code == 452, (code, resp)
        assert resp.startswith(b"4.5.3"), resp
        # The transaction goes on with the accepted recipients.
        code, resp = s.data(simple_message(token, to=f"{prefix}-0@{DOMAIN}"))
        assert code == 250, (code, resp)
    server.wait_token(user, token.encode())


def test_oversize_declared_in_mail_from(server):
    limit = server.config["limits"]["max_message_size"]
    with server.smtp() as s:
        code, resp = s.mail(f"sender@{DOMAIN}", [f"SIZE={limit + 1}"])
        assert code == 552, (code, resp)
        assert resp.startswith(b"5.3.4"), resp
        # The session is still usable.
        assert s.mail(f"sender@{DOMAIN}", [f"SIZE={limit // 2}"])[0] == 250


def test_oversize_data_rejected_and_not_delivered(server):
    limit = server.config["limits"]["max_message_size"]
    user, _ = server.add_user()
    token = uniq("oversize-")
    line = b"x" * 998 + b"\r\n"
    big = simple_message(token, to=f"{user}@{DOMAIN}", body=line * (limit // len(line) + 100))
    assert len(big) > limit
    c = server.raw_smtp()
    try:
        c.command(f"MAIL FROM:<sender@{DOMAIN}>".encode(), 250)
        c.command(f"RCPT TO:<{user}@{DOMAIN}>".encode(), 250)
        c.command(b"DATA", 354)
        c.send(big + b".\r\n")
        code, text = c.read_reply()
        assert code == 552, (code, text)
        assert text.startswith(b"5.3.4"), text
    finally:
        c.close()
    # Same for BDAT.
    c = server.raw_smtp()
    try:
        c.command(f"MAIL FROM:<sender@{DOMAIN}>".encode(), 250)
        c.command(f"RCPT TO:<{user}@{DOMAIN}>".encode(), 250)
        c.send(b"BDAT %d LAST\r\n" % len(big) + big)
        code, text = c.read_reply()
        assert code == 552, (code, text)
        assert text.startswith(b"5.3.4"), text
    finally:
        c.close()
    # A sentinel sent afterwards arrives; the oversize one never did.
    sentinel = uniq("sentinel-")
    server.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], simple_message(sentinel))
    server.wait_token(user, sentinel.encode())
    msgs = server.messages(user)
    assert [m for m in msgs if token.encode() in m] == [], "an oversize message was delivered"


def hop_message(token: str, hops: int, user: str) -> bytes:
    received = b"".join(
        b"Received: from relay%d.elsewhere.test by relay%d.elsewhere.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        % (i, i + 1)
        for i in range(hops)
    )
    return received + simple_message(token, to=f"{user}@{DOMAIN}")


def test_hop_count_loop_detected(server):
    user, _ = server.add_user()
    looping = uniq("loop-")
    with server.smtp() as s:
        assert s.mail(f"sender@{DOMAIN}")[0] == 250
        assert s.rcpt(f"{user}@{DOMAIN}")[0] == 250
        code, resp = s.data(hop_message(looping, 50, user))
        assert code == 554, (code, resp)
        assert resp.startswith(b"5.4.6"), resp
    # A message with a normal number of hops is accepted.
    ok = uniq("hops-")
    server.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], hop_message(ok, 20, user))
    server.wait_token(user, ok.encode())
    assert not [m for m in server.messages(user) if looping.encode() in m], "looping message delivered"


def test_smuggling_probe_makes_one_message(server):
    """Bare LF / bare CR around a dot never end DATA: the probe below must
    give ONE message holding all those bytes, never a second transaction."""
    victim, _ = server.add_user()
    token = uniq("smuggle-")
    content = (
        f"From: <sender@{DOMAIN}>\r\nTo: <{victim}@{DOMAIN}>\r\nSubject: probe {token}\r\n\r\n"
        "first part\r\n"
        "lf\n.\n"
        f"MAIL FROM:<smuggler@{DOMAIN}>\r\nRCPT TO:<{victim}@{DOMAIN}>\r\nDATA\r\n"
        "Subject: smuggled-lf\r\n\r\nsecond\r\n"
        "cr\r.\r"
        f"MAIL FROM:<smuggler2@{DOMAIN}>\r\nRCPT TO:<{victim}@{DOMAIN}>\r\nDATA\r\n"
        "Subject: smuggled-cr\r\n\r\nthird\r\n"
        "mixed\r\n.\n"
        f"MAIL FROM:<smuggler3@{DOMAIN}>\r\nRCPT TO:<{victim}@{DOMAIN}>\r\nDATA\r\n"
        "Subject: smuggled-crlf-lf\r\n\r\nfourth\r\n"
        "mixed2\n.\r\n"
        f"MAIL FROM:<smuggler4@{DOMAIN}>\r\nRCPT TO:<{victim}@{DOMAIN}>\r\nDATA\r\n"
        f"Subject: smuggled-lf-crlf\r\n\r\nfifth {token}\r\n"
    ).encode()
    c = server.raw_smtp()
    replies = []
    try:
        c.command(f"MAIL FROM:<sender@{DOMAIN}>".encode(), 250)
        c.command(f"RCPT TO:<{victim}@{DOMAIN}>".encode(), 250)
        c.command(b"DATA", 354)
        c.send(content + b".\r\nQUIT\r\n")
        for _ in range(20):
            code, text = c.read_reply()
            replies.append((code, text))
            if code == 221:
                break
    finally:
        c.close()
    queued = [r for r in replies if r[0] == 250 and b"queued as" in r[1]]
    assert len(queued) == 1 and replies[-1][0] == 221 and len(replies) == 2, (
        f"expected exactly [250 queued, 221], got {replies}"
    )
    stored = server.wait_token(victim, b"fifth " + token.encode())
    # RFC 5321 4.5.2 transparency applies to CRLF-delimited lines only: the
    # line ".\nMAIL FROM..." after "mixed\r\n" loses its first dot; the
    # bare-LF / bare-CR dots stay.
    expected = b"\r\n".join(l[1:] if l.startswith(b".") else l for l in content.split(b"\r\n"))
    assert expected.count(b"\n.") == 2 and expected.count(b"\r.\r") == 1
    split_received(stored, expected)
    sentinel = uniq("sentinel-")
    server.send(f"sender@{DOMAIN}", [f"{victim}@{DOMAIN}"], simple_message(sentinel))
    server.wait_token(victim, sentinel.encode())
    msgs = server.messages(victim)
    assert len(msgs) == 2, f"expected the probe and the sentinel only, got {len(msgs)} messages: {[m[:300] for m in msgs]}"


def test_pipelining(server):
    """Whole transactions in one write, including the commands after the
    end-of-data dot; replies come back in order."""
    user, _ = server.add_user()
    t1, t2 = uniq("pipe1-"), uniq("pipe2-")
    m1 = simple_message(t1, to=f"{user}@{DOMAIN}")
    m2 = simple_message(t2, to=f"{user}@{DOMAIN}")
    c = server.raw_smtp()
    try:
        c.send(
            f"MAIL FROM:<sender@{DOMAIN}>\r\n"
            f"RCPT TO:<{user}@{DOMAIN}>\r\n"
            f"RCPT TO:<{uniq('nobody')}@{DOMAIN}>\r\n"
            f"RCPT TO:<{user}@{DOMAIN}>\r\n"
            "DATA\r\n".encode()
        )
        codes = [c.read_reply()[0] for _ in range(5)]
        assert codes == [250, 250, 550, 250, 354], codes
        c.send(
            m1 + b".\r\n"
            + f"MAIL FROM:<sender@{DOMAIN}>\r\nRCPT TO:<{user}@{DOMAIN}>\r\nDATA\r\n".encode()
        )
        q1 = queue_id_from(c.expect(250))
        c.expect(250)
        c.expect(250)
        c.expect(354)
        c.send(m2 + b".\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        q2 = queue_id_from(c.expect(250))
        c.expect(250)
        c.expect(250)
        c.expect(221)
        assert q1 != q2
    finally:
        c.close()
    split_received(server.wait_token(user, t1.encode()), m1)
    split_received(server.wait_token(user, t2.encode()), m2)


def test_session_rules(server):
    """Commands out of order get 503 and do not break the session."""
    user, _ = server.add_user()
    c = server.raw_smtp()
    try:
        c.send(f"RCPT TO:<{user}@{DOMAIN}>\r\n".encode())
        assert c.read_reply()[0] == 503  # RCPT before MAIL
        c.command(f"MAIL FROM:<sender@{DOMAIN}>".encode(), 250)
        c.send(f"MAIL FROM:<sender@{DOMAIN}>\r\n".encode())
        assert c.read_reply()[0] == 503  # nested MAIL
        c.send(b"DATA\r\n")
        assert c.read_reply()[0] in (503, 554)  # DATA without a recipient
        c.command(b"NOOP", 250)
        c.command(b"RSET", 250)
        c.send(b"FROBNICATE\r\n")
        assert c.read_reply()[0] == 500
        c.command(b"QUIT", 221)
    finally:
        c.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_upload(server, tmp_path):
    user, pw = server.add_user()
    token = uniq("curl-")
    sent = simple_message(token, to=f"{user}@{DOMAIN}", body=b"Sent by curl.\r\n.dot line\r\n" + token.encode() + b"\r\n")
    f = tmp_path / "mail.eml"
    f.write_bytes(sent)
    host, port = server.smtp_addr
    p = subprocess.run(
        [
            "curl", "-sS", "--max-time", "60",
            "--mail-from", f"sender@{DOMAIN}",
            "--mail-rcpt", f"{user}@{DOMAIN}",
            "-T", str(f),
            f"smtp://{host}:{port}/{CLIENT_NAME}",
        ],
        capture_output=True, text=True, timeout=90,
    )
    assert p.returncode == 0, f"curl exit {p.returncode}: {p.stderr}"
    split_received(server.wait_token(user, token.encode()), sent)


def test_received_header_names_queue_id(server):
    user, _ = server.add_user()
    token = uniq("rcvd-")
    sent = simple_message(token, to=f"{user}@{DOMAIN}")
    qid = server.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], sent)
    received = split_received(server.wait_token(user, token.encode()), sent)
    assert qid.encode() in received, f"Received header should carry the queue id {qid}: {received!r}"
    assert b"127.0.0.1" in received and CLIENT_NAME.encode() in received, received


def test_smtputf8_sender(server):
    user, _ = server.add_user()
    token = uniq("utf8addr-")
    sender = "jürgen.müller@beispiel.test"
    sent = (
        f"From: Jürgen <{sender}>\r\nTo: <{user}@{DOMAIN}>\r\nSubject: {token}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nGrüße\r\n"
    ).encode()
    with server.smtp() as s:
        code, resp = s.mail(sender, ["SMTPUTF8", "BODY=8BITMIME"])
        assert code == 250, (code, resp)
        assert s.rcpt(f"{user}@{DOMAIN}")[0] == 250
        code, resp = s.data(sent)
        assert code == 250, (code, resp)
    split_received(server.wait_token(user, token.encode()), sent)
    # Without SMTPUTF8 a non-ASCII address is refused.
    c = server.raw_smtp()
    try:
        c.send(f"MAIL FROM:<{sender}>\r\n".encode())
        code, text = c.read_reply()
        assert 500 <= code <= 599, (code, text)
    finally:
        c.close()


def test_alias_loop_and_overlong_chain_refused(server):
    a, b = uniq("cyca"), uniq("cycb")
    server.add_alias(a, f"{b}@{DOMAIN}")
    server.add_alias(b, f"{a}@{DOMAIN}")
    names = [uniq("deep") for _ in range(40)]
    user, _ = server.add_user()
    for x, y in zip(names, names[1:]):
        server.add_alias(x, f"{y}@{DOMAIN}")
    server.add_alias(names[-1], user)
    with server.smtp() as s:
        assert s.mail(f"sender@{DOMAIN}")[0] == 250
        for rcpt in (a, names[0]):
            code, resp = s.rcpt(f"{rcpt}@{DOMAIN}")
            assert 500 <= code <= 599, (rcpt, code, resp)
        # The end of the chain itself is fine.
        assert s.rcpt(f"{names[-2]}@{DOMAIN}")[0] == 250


def test_too_long_command_line(server):
    c = server.raw_smtp()
    try:
        c.send(b"NOOP " + b"x" * 100_000 + b"\r\n")
        code, text = c.read_reply()
        assert code == 500 or code == 421, (code, text)
    finally:
        c.close()
    with server.smtp() as s:  # the server is fine
        assert s.noop()[0] == 250


def test_error_limit_closes_session(server):
    limit = server.config["limits"]["max_errors"]
    c = server.raw_smtp()
    codes = []
    try:
        for _ in range(limit + 5):
            c.send(b"BOGUS\r\n")
            code, _ = c.read_reply()
            codes.append(code)
            if code == 421:
                break
        assert codes[-1] == 421, f"no 421 after {len(codes)} bad commands: {codes}"
        assert len(codes) <= limit + 1, codes
        c.sock.settimeout(5)
        try:
            rest = c.sock.recv(100)
        except ConnectionResetError:
            rest = b""
        assert rest == b"", f"connection still open after 421: {rest!r}"
    finally:
        c.close()


def test_idle_timeout(postamt_factory):
    srv = postamt_factory({"limits": {"idle_timeout": "1s"}})
    smtp = srv.raw_smtp()
    pop = srv.raw_pop3()
    try:
        smtp.sock.settimeout(15)
        code, text = smtp.read_reply()
        assert code == 421, (code, text)
        pop.sock.settimeout(15)
        rest = b""
        for _ in range(100):
            chunk = pop.sock.recv(4096)
            if not chunk:
                break
            rest += chunk
        assert rest == b"" or rest.startswith(b"-ERR"), rest
    finally:
        smtp.close()
        pop.close()


def test_connections_per_ip_limit(postamt_factory):
    srv = postamt_factory({"limits": {"max_connections_per_ip": 2}})
    held = [srv.raw_smtp(), srv.raw_smtp()]
    try:
        extra = RawClient(srv.smtp_addr, timeout=10)
        try:
            code, text = extra.read_reply()
            assert code == 421, (code, text)
        finally:
            extra.close()
    finally:
        for c in held:
            c.close()
    # Once they are gone, new sessions are served again (bounded retries:
    # the server notices the closes a moment later).
    for _ in range(50):
        c = RawClient(srv.smtp_addr, timeout=10)
        try:
            code, _ = c.read_reply()
        finally:
            c.close()
        if code == 220:
            break
        time.sleep(0.1)
    assert code == 220
