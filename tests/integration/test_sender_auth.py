"""Inbound sender authentication on the MX port (issue 4): SPF, DKIM and
DMARC looked up in the stub DNS, written into `Authentication-Results:
<hostname>; ...` (RFC 8601); DMARC `p=reject` refused at the end of DATA
with `dmarc = "honor"` and only recorded with `"report"`; `p=quarantine`
marked and filed in the user's Junk folder; forged results claiming to be
ours removed.

The client is always 127.0.0.1, so `ip4:127.0.0.1` in an SPF record passes.
"""

from __future__ import annotations

import base64
import email
import imaplib
import mailbox
import re
import smtplib
import subprocess

import dkim
import pytest

from dnsstub import DnsStub
from sinks import submit
from support import CLIENT_NAME, DOMAIN, HOSTNAME, Postamt, simple_message, uniq, wait_until


def sender_auth_overrides(dns: DnsStub, dmarc: str) -> dict:
    return {
        "listen": {
            "smtp": ["127.0.0.1:0"],
            "submission": ["127.0.0.1:0"],
            "pop3": ["127.0.0.1:0"],
            "imap": ["127.0.0.1:0"],
        },
        "submission": {"allow_plaintext_on_loopback": True},
        "dns": {"nameservers": [dns.addr]},
        "sender_auth": {"verify": True, "dmarc": dmarc},
    }


class Env:
    def __init__(self, srv: Postamt, dns: DnsStub):
        self.srv, self.dns = srv, dns
        self.user, self.password = srv.add_user(uniq("rcpt"))

    @property
    def rcpt(self) -> str:
        return f"{self.user}@{DOMAIN}"


def start_env(postamt_bin, tmp_path_factory, dns: DnsStub, dmarc: str) -> Env:
    srv = Postamt(postamt_bin, tmp_path_factory.mktemp("postamt"), sender_auth_overrides(dns, dmarc))
    srv.start()
    return Env(srv, dns)


@pytest.fixture(scope="module")
def dns():
    stub = DnsStub().start()
    yield stub
    stub.stop()


@pytest.fixture(scope="module")
def honor(postamt_bin, tmp_path_factory, dns):
    env = start_env(postamt_bin, tmp_path_factory, dns, "honor")
    try:
        yield env
        env.srv.stop()
    finally:
        env.srv.kill9()


@pytest.fixture(scope="module")
def report(postamt_bin, tmp_path_factory, dns):
    env = start_env(postamt_bin, tmp_path_factory, dns, "report")
    try:
        yield env
        env.srv.stop()
    finally:
        env.srv.kill9()


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory):
    """An RSA key for signing test mail with dkimpy: (PEM private key, the
    base64 public key for a `p=` tag)."""
    d = tmp_path_factory.mktemp("dkimkey")
    key = d / "key.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(key), "2048"], check=True, capture_output=True, timeout=60)
    der = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True, capture_output=True, timeout=60).stdout
    return key.read_bytes(), base64.b64encode(der).decode()


def new_domain(what: str) -> str:
    return f"{uniq(what)}.example"


def transaction(env: Env, sender: str, data: bytes) -> tuple[tuple[int, bytes], tuple[int, bytes], tuple[int, bytes]]:
    """MAIL, RCPT, DATA on the MX port: the three replies."""
    s = smtplib.SMTP(*env.srv.smtp_addr, local_hostname=CLIENT_NAME, timeout=30)
    try:
        s.ehlo()
        mail = s.mail(sender)
        rcpt = s.rcpt(env.rcpt)
        data_reply = s.data(data) if mail[0] == 250 and rcpt[0] == 250 else (0, b"")
        return mail, rcpt, data_reply
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            s.close()


def deliver(env: Env, sender: str, data: bytes, token: str) -> email.message.Message:
    """Sends on the MX port, expects 250 at every step; the delivered message."""
    mail, rcpt, data_reply = transaction(env, sender, data)
    assert mail[0] == 250 and rcpt[0] == 250, (mail, rcpt)
    assert data_reply[0] == 250, f"end of DATA: {data_reply}"
    return email.message_from_bytes(env.srv.wait_token(env.user, token.encode()))


def our_results(msg: email.message.Message) -> list[str]:
    """Our Authentication-Results values (authserv-id = our hostname), unfolded."""
    out = []
    for v in msg.get_all("Authentication-Results") or []:
        v = " ".join(str(v).split())
        if re.match(rf"{re.escape(HOSTNAME)}\s*;", v, re.I):
            out.append(v)
    return out


def one_result(msg: email.message.Message) -> str:
    res = our_results(msg)
    assert len(res) == 1, f"expected exactly one Authentication-Results of ours, got {res}\nheaders: {msg.items()}"
    return res[0]


def method(result: str, name: str) -> str | None:
    m = re.search(rf"(?:^|;)\s*{name}\s*=\s*([a-z]+)", result)
    return m.group(1) if m else None


def message(sender: str, token: str, extra_headers: str = "") -> bytes:
    return (
        f"{extra_headers}"
        f"From: <{sender}>\r\nTo: <rcpt@{DOMAIN}>\r\nSubject: auth {token}\r\n"
        f"Message-ID: <{token}@{CLIENT_NAME}>\r\n\r\nbody {token}\r\n"
    ).encode()


# --------------------------------------------------------------------------


def test_spf_pass(honor):
    dom = new_domain("spfpass")
    honor.dns.txt(dom, "v=spf1 ip4:127.0.0.1 -all")
    token = uniq("spfpass-")
    msg = deliver(honor, f"writer@{dom}", message(f"writer@{dom}", token), token)
    res = one_result(msg)
    assert method(res, "spf") == "pass", res
    assert f"smtp.mailfrom=writer@{dom}" in res or f"smtp.mailfrom={dom}" in res, res
    # RFC 8601 4.1: ours is the topmost field, above our own Received.
    assert msg.keys()[0].lower() == "authentication-results", msg.keys()[:3]


def test_spf_fail(honor):
    dom = new_domain("spffail")
    honor.dns.txt(dom, "v=spf1 ip4:192.0.2.1 -all")
    token = uniq("spffail-")
    msg = deliver(honor, f"writer@{dom}", message(f"writer@{dom}", token), token)
    res = one_result(msg)
    assert method(res, "spf") == "fail", res
    assert method(res, "dkim") in ("none", None), res  # unsigned


def dmarc_reject_domain(dns: DnsStub) -> str:
    dom = new_domain("dmarcreject")
    dns.txt(dom, "v=spf1 ip4:192.0.2.1 -all")
    dns.txt(f"_dmarc.{dom}", "v=DMARC1; p=reject")
    return dom


def test_dmarc_reject_honored_at_end_of_data(honor):
    dom = dmarc_reject_domain(honor.dns)
    token = uniq("dmarcrej-")
    mail, rcpt, data_reply = transaction(honor, f"writer@{dom}", message(f"writer@{dom}", token))
    assert mail[0] == 250 and rcpt[0] == 250, f"DMARC applies at the end of DATA, not before: {mail} {rcpt}"
    code, text = data_reply
    assert code == 550 and text.startswith(b"5.7.1"), f"expected 550 5.7.1 at the end of DATA, got {data_reply}"
    # Nothing was queued: a later message arrives, this one never does.
    sentinel = uniq("sentinel-")
    honor.srv.send(f"other@{DOMAIN}", [honor.rcpt], simple_message(sentinel, to=honor.rcpt))
    honor.srv.wait_token(honor.user, sentinel.encode())
    assert not [m for m in honor.srv.messages(honor.user) if token.encode() in m], "the rejected message was delivered"


def test_dmarc_reject_only_reported(report):
    dom = dmarc_reject_domain(report.dns)
    token = uniq("dmarcrep-")
    msg = deliver(report, f"writer@{dom}", message(f"writer@{dom}", token), token)
    res = one_result(msg)
    assert method(res, "dmarc") == "fail" and method(res, "spf") == "fail", res
    assert f"header.from={dom}" in res, res


def test_dmarc_passes_with_aligned_dkim(honor, signing_key):
    """SPF fails, but a valid DKIM signature of the From domain passes
    DMARC: the p=reject domain's mail is accepted."""
    pem, pub = signing_key
    dom = dmarc_reject_domain(honor.dns)
    honor.dns.txt(f"sel1._domainkey.{dom}", f"v=DKIM1; k=rsa; p={pub}")
    token = uniq("dkimin-")
    body = message(f"writer@{dom}", token)
    sig = dkim.sign(body, b"sel1", dom.encode(), pem, include_headers=[b"from", b"to", b"subject", b"message-id"])
    msg = deliver(honor, f"writer@{dom}", sig + body, token)
    res = one_result(msg)
    assert method(res, "dkim") == "pass", res
    # RFC 8601 2.7.1: the signing domain as header.d, or header.i (the AUID).
    assert f"header.d={dom}" in res or f"header.i=@{dom}" in res, res
    assert method(res, "dmarc") == "pass", res
    assert method(res, "spf") == "fail", res


def junk_messages(env: Env) -> list[bytes]:
    """Raw messages in the test user's Junk folder (Maildir++ `.Junk`)."""
    path = env.srv.mailbox_path(env.user) / ".Junk"
    if not (path / "new").is_dir():
        return []
    md = mailbox.Maildir(str(path), factory=None, create=False)
    return [md.get_bytes(k) for k in md.keys()]


def test_dmarc_quarantine_marks_and_files_in_junk(honor):
    dom = new_domain("dmarcquar")
    honor.dns.txt(dom, "v=spf1 ip4:192.0.2.1 -all")
    honor.dns.txt(f"_dmarc.{dom}", "v=DMARC1; p=quarantine")
    token = uniq("quar-")
    mail, rcpt, data_reply = transaction(honor, f"writer@{dom}", message(f"writer@{dom}", token))
    assert mail[0] == 250 and rcpt[0] == 250 and data_reply[0] == 250, (mail, rcpt, data_reply)
    raw = wait_until(
        lambda: next((m for m in junk_messages(honor) if token.encode() in m), None),
        30,
        "the quarantined message in Junk",
    )
    msg = email.message_from_bytes(raw)
    assert method(one_result(msg), "dmarc") == "fail"
    marks = msg.get_all("X-Postamt-Quarantine") or []
    assert len(marks) == 1 and dom in marks[0], f"quarantined mail must carry the mark: {marks}"
    assert not any(token.encode() in m for m in honor.srv.messages(honor.user)), "not in the inbox"
    honor.srv.wait_log("delivery", "quarantined message (DMARC p=quarantine) filed")
    # IMAP shows it in Junk.
    with imaplib.IMAP4(*honor.srv.addr("imap")) as im:
        im.login(honor.user, honor.password)
        typ, data = im.select("Junk", readonly=True)
        assert typ == "OK"
        typ, data = im.search(None, "BODY", token)
        assert typ == "OK" and data[0].split(), f"IMAP finds it in Junk: {data}"


def test_forged_results_are_removed(honor):
    dom = new_domain("forger")
    honor.dns.txt(dom, "v=spf1 ip4:192.0.2.1 -all")
    token = uniq("forged-")
    forged = (
        f"Authentication-Results: {HOSTNAME}; spf=pass smtp.mailfrom=writer@{dom}; dmarc=pass header.from={dom}\r\n"
        f"authentication-results:\r\n {HOSTNAME.upper()} ; dkim=pass header.d={dom}\r\n"
        f"Authentication-Results: other.example; spf=pass smtp.mailfrom={dom}\r\n"
        f"X-Postamt-Quarantine: none (forged)\r\n"
    )
    msg = deliver(honor, f"writer@{dom}", message(f"writer@{dom}", token, forged), token)
    res = one_result(msg)  # the forged two are gone, ours is there
    assert method(res, "spf") == "fail", f"our result must be the true one: {res}"
    others = [" ".join(str(v).split()) for v in msg.get_all("Authentication-Results") or [] if "other.example" in str(v)]
    assert others == ["other.example; spf=pass smtp.mailfrom=" + dom], f"another server's results are kept: {others}"
    assert not msg.get_all("X-Postamt-Quarantine"), "a forged quarantine mark survived"
    raw = honor.srv.wait_token(honor.user, token.encode())
    assert b"dkim=pass" not in raw and b"dmarc=pass" not in raw, "a forged result survived somewhere in the message"


def test_forged_results_removed_on_submission(honor):
    """Submission clients are not trusted MTAs either: forged results are
    dropped there too, and no checks run (no results of ours are added)."""
    token = uniq("subforged-")
    sender_user, pw = honor.srv.add_user(uniq("sub"))
    sender = f"{sender_user}@{DOMAIN}"
    data = message(sender, token, f"Authentication-Results: {HOSTNAME}; spf=pass smtp.mailfrom={sender}\r\n")
    submit(honor.srv, sender_user, pw, sender, [honor.rcpt], data)
    msg = email.message_from_bytes(honor.srv.wait_token(honor.user, token.encode()))
    assert our_results(msg) == [], f"forged or unexpected results on a submitted message: {our_results(msg)}"
