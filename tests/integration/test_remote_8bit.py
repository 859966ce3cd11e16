"""8-bit messages to servers without 8BITMIME, end to end (RFC 6152 §3):
the server converts them to quoted-printable, or bounces them with 5.6.3
when they cannot be converted; a DKIM signature made before the
conversion would break, so signed 8-bit mail is converted first and still
verifies (dkimpy).

The sinks are scripted SMTP servers (`sinks.Sink`) whose EHLO leaves out
8BITMIME (and SMTPUTF8, which needs it) through their `caps` attribute.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from email.message import Message

import dkim
import pytest

from dnsstub import DnsStub
from sinks import DEFAULT_CAPS, fresh_ip, free_port, remote_overrides, submit
from support import DOMAIN, Postamt, uniq

# What a server without 8BITMIME says to EHLO.
NO_8BITMIME = [c for c in DEFAULT_CAPS if c not in ("8BITMIME", "SMTPUTF8")]
SELECTOR = "postamt"


class Env:
    def __init__(self, srv: Postamt, dns: DnsStub, port: int):
        self.srv, self.dns, self.port = srv, dns, port
        self.alice, self.password = srv.add_user(uniq("alice"))

    @property
    def sender(self) -> str:
        return f"{self.alice}@{DOMAIN}"

    def sink(self, sink_factory, eight_bit_mime: bool):
        """A sink of its own domain: (sink, recipient address)."""
        dom = f"{uniq('eightbit')}.example"
        ip = fresh_ip()
        sink = sink_factory(ip, self.port)
        if not eight_bit_mime:
            sink.caps = list(NO_8BITMIME)
        self.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
        return sink, f"bob@{dom}"

    def submit(self, rcpt: str, message: bytes) -> str:
        return submit(self.srv, self.alice, self.password, self.sender, [rcpt], message)


def start_env(postamt_bin, tmp_path_factory, dkim_key: bool):
    dns = DnsStub().start()
    port = free_port("127.0.0.2")
    srv = Postamt(postamt_bin, tmp_path_factory.mktemp("postamt"), remote_overrides(dns, port))
    if dkim_key:
        # Keys load at start: made before it; the record served by the stub.
        out = srv.cli("dkim", "generate", DOMAIN).stdout
        [line] = [l for l in out.splitlines() if f"{SELECTOR}._domainkey.{DOMAIN}." in l and " IN TXT " in l]
        dns.txt(f"{SELECTOR}._domainkey.{DOMAIN}", "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', line.split(" IN TXT ", 1)[1])))
    return srv, dns, port


def running_env(postamt_bin, tmp_path_factory, dkim_key: bool):
    """A started server (and its stub DNS), stopped after the module."""
    srv, dns, port = start_env(postamt_bin, tmp_path_factory, dkim_key=dkim_key)
    try:
        srv.start()
        yield Env(srv, dns, port)
        srv.stop()
    finally:
        srv.kill9()
        dns.stop()


@pytest.fixture(scope="module")
def env(postamt_bin, tmp_path_factory):
    """A server without DKIM keys: the SMTP client itself converts."""
    yield from running_env(postamt_bin, tmp_path_factory, dkim_key=False)


@pytest.fixture(scope="module")
def signing_env(postamt_bin, tmp_path_factory):
    """A server that DKIM-signs mail from DOMAIN."""
    yield from running_env(postamt_bin, tmp_path_factory, dkim_key=True)


TEXT = (
    "Grüße aus Köln, naïve café = schön   \r\n"
    "\r\n"
    ".a line starting with a dot, then trailing tabs\t\t\r\n"
    + "lange Zeile mit Umlauten äöü " * 6 + "Ende\r\n"
    "--not-a-boundary\r\n"
)
ATTACHMENT = bytes(range(256)) * 3


def mime_message(token: str, sender: str, to: str) -> bytes:
    """multipart/mixed: an 8-bit UTF-8 text part, a base64 attachment."""
    import base64

    b64 = base64.encodebytes(ATTACHMENT).replace(b"\n", b"\r\n")
    return (
        f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: 8-bit {token}\r\n"
        f"Message-ID: <{token}@client.test>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="=_b_=42"\r\n\r\n'
        "This is a multi-part message in MIME format.\r\n"
        "--=_b_=42\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        f"{TEXT}"
        f"{token}\r\n"
        "--=_b_=42\r\n"
        'Content-Type: application/octet-stream; name="data.bin"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="data.bin"\r\n\r\n'
    ).encode() + b64 + b"--=_b_=42--\r\n"


def parts(data: bytes) -> tuple[Message, Message]:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/mixed", msg.get_content_type()
    text, attachment = [p for p in msg.iter_parts()]
    return text, attachment


def lf(s: str) -> str:
    return s.replace("\r\n", "\n")


def test_8bit_text_is_converted_to_quoted_printable(env, sink_factory):
    sink, rcpt = env.sink(sink_factory, eight_bit_mime=False)
    token = uniq("qp-")
    original = mime_message(token, env.sender, rcpt)
    env.submit(rcpt, original)
    [tx] = sink.wait_token(token)
    assert tx.accepted
    assert "BODY=8BITMIME" not in tx.mail_params.upper(), tx.mail_params
    high = [i for i, b in enumerate(tx.raw) if b >= 0x80]
    assert not high, f"8-bit bytes sent to a server without 8BITMIME at {high[:10]}: {tx.raw[:2000]!r}"
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in tx.data, tx.data[:2000]
    assert all(len(l) <= 998 for l in tx.data.split(b"\r\n"))
    text, attachment = parts(tx.data)
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    # The line break before a delimiter belongs to the delimiter.
    assert lf(text.get_content()).rstrip("\n") == lf(TEXT + token), f"the decoded text differs:\n{text.get_content()!r}"
    # The attachment's bytes are untouched: the same base64 lines, the same data.
    assert attachment.get_content() == ATTACHMENT
    start = original.index(b'Content-Type: application/octet-stream')
    assert original[start:] in tx.data, "the base64 part was re-serialised"
    # The preamble and the delimiters are kept as they were.
    assert b"\r\n\r\nThis is a multi-part message in MIME format.\r\n--=_b_=42\r\n" in tx.data


def test_8bit_message_unchanged_for_a_server_with_8bitmime(env, sink_factory):
    sink, rcpt = env.sink(sink_factory, eight_bit_mime=True)
    token = uniq("8bm-")
    original = mime_message(token, env.sender, rcpt)
    env.submit(rcpt, original)
    [tx] = sink.wait_token(token)
    assert "BODY=8BITMIME" in tx.mail_params.upper(), tx.mail_params
    assert tx.data.endswith(original), "an 8BITMIME server must get the message as it was submitted"


def test_non_mime_8bit_message_gets_mime_headers(env, sink_factory):
    sink, rcpt = env.sink(sink_factory, eight_bit_mime=False)
    token = uniq("plain-")
    body = f"Hallo,\r\nGrüße von {token}\r\n".encode()
    original = f"From: <{env.sender}>\r\nTo: <{rcpt}>\r\nSubject: plain {token}\r\n\r\n".encode() + body
    env.submit(rcpt, original)
    [tx] = sink.wait_token(token)
    assert all(b < 0x80 for b in tx.raw)
    msg = email.message_from_bytes(tx.data, policy=email.policy.default)
    assert msg["MIME-Version"] == "1.0", tx.data[:1000]
    assert msg.get_content_type() == "text/plain" and msg.get_param("charset") == "unknown-8bit", msg["Content-Type"]
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg.get_payload(decode=True) == body


def delivery_status_blocks(report: Message) -> list[Message]:
    assert report.get_content_type() == "multipart/report", report.get_content_type()
    [ds] = [p for p in report.walk() if p.get_content_type() == "message/delivery-status"]
    blocks = ds.get_payload()
    assert isinstance(blocks, list) and len(blocks) >= 2, blocks
    return blocks[1:]


def test_binary_message_bounces_with_5_6_3(env, sink_factory):
    sink, rcpt = env.sink(sink_factory, eight_bit_mime=False)
    token = uniq("binary-")
    original = (
        f"From: <{env.sender}>\r\nTo: <{rcpt}>\r\nSubject: binary {token}\r\n"
        f"X-Token: {token}\r\nMIME-Version: 1.0\r\n"
        "Content-Type: application/octet-stream\r\n"
        "Content-Transfer-Encoding: binary\r\n\r\n"
    ).encode() + bytes(range(128, 256)) + b"\r\n"
    env.submit(rcpt, original)
    raw = env.srv.wait_token(env.alice, token.encode())
    report = email.message_from_bytes(raw)
    [block] = delivery_status_blocks(report)
    assert rcpt in (block["Final-Recipient"] or ""), dict(block)
    assert (block["Action"] or "").strip().lower() == "failed", dict(block)
    assert (block["Status"] or "").strip() == "5.6.3", dict(block)
    diagnostic = " ".join((block["Diagnostic-Code"] or "").split())
    assert "8BITMIME" in diagnostic and "binary" in diagnostic, dict(block)
    assert not sink.transactions, "nothing may be sent when the message cannot be converted"


# --------------------------------------------------------------------------
# DKIM


def verify(data: bytes, dns: DnsStub) -> tuple[bool, str]:
    """dkimpy's verdict, its log lines for the assertion message."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    log = logging.getLogger(f"dkimpy-{uniq('')}")
    log.setLevel(logging.DEBUG)
    log.addHandler(Collect())
    log.propagate = False

    def lookup(name, timeout=5):
        records = dns.lookup_txt(name.decode() if isinstance(name, bytes) else name)
        return records[0] if records else None

    try:
        ok = dkim.DKIM(data, logger=log, minkey=1024).verify(dnsfunc=lookup)
    except dkim.DKIMException as e:
        lines.append(f"{type(e).__name__}: {e}")
        ok = False
    return bool(ok), "\n".join(lines)


@pytest.mark.parametrize("eight_bit_mime", [False, True], ids=["no-8bitmime", "8bitmime"])
def test_signed_8bit_message_verifies_after_conversion(signing_env, sink_factory, eight_bit_mime):
    env = signing_env
    sink, rcpt = env.sink(sink_factory, eight_bit_mime=eight_bit_mime)
    token = uniq("dkim8-")
    env.submit(rcpt, mime_message(token, env.sender, rcpt))
    [tx] = sink.wait_token(token)
    assert b"DKIM-Signature:" in tx.data, tx.data[:300]
    assert all(b < 0x80 for b in tx.raw), "signed 8-bit mail is converted before signing"
    ok, why = verify(tx.data, env.dns)
    assert ok, f"dkimpy rejects the signature of the converted message:\n{why}\n{tx.data[:2000]!r}"
    text, _ = parts(tx.data)
    assert token in text.get_content()
