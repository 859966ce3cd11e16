"""Outbound DKIM (issue 4): `postamt dkim generate DOMAIN` makes the key the
server signs with, its TXT record is served by the stub DNS, and an
independent verifier (dkimpy) accepts what a sink receives. Also
`postamt dns-records DOMAIN`.
"""

from __future__ import annotations

import logging
import re

import dkim
import pytest

from dnsstub import DnsStub
from sinks import fresh_ip, free_port, remote_overrides, submit
from support import DOMAIN, Postamt, uniq

SELECTOR = "postamt"


def txt_value(zone_line: str) -> str:
    """The TXT value of a zone-file line: its quoted strings joined."""
    assert " IN TXT " in zone_line, zone_line
    strings = re.findall(r'"((?:[^"\\]|\\.)*)"', zone_line.split(" IN TXT ", 1)[1])
    assert strings, zone_line
    return "".join(strings)


class Env:
    def __init__(self, srv: Postamt, dns: DnsStub, port: int, record_line: str):
        self.srv, self.dns, self.port, self.record_line = srv, dns, port, record_line
        self.alice, self.password = srv.add_user(uniq("alice"))

    @property
    def sender(self) -> str:
        return f"{self.alice}@{DOMAIN}"


@pytest.fixture(scope="module")
def env(postamt_bin, tmp_path_factory):
    dns = DnsStub().start()
    port = free_port("127.0.0.2")
    srv = Postamt(postamt_bin, tmp_path_factory.mktemp("postamt"), remote_overrides(dns, port))
    try:
        # The key must exist before the server starts (keys load at start).
        out = srv.cli("dkim", "generate", DOMAIN).stdout
        lines = [l for l in out.splitlines() if f"{SELECTOR}._domainkey.{DOMAIN}." in l and " IN TXT " in l]
        assert len(lines) == 1, f"`dkim generate` should print one TXT record line:\n{out}"
        assert (srv.data_dir / "dkim" / f"{DOMAIN}.key").is_file(), out
        dns.txt(f"{SELECTOR}._domainkey.{DOMAIN}", txt_value(lines[0]))
        srv.start()
        yield Env(srv, dns, port, lines[0])
        srv.stop()
    finally:
        srv.kill9()
        dns.stop()


def stub_dnsfunc(dns: DnsStub):
    """dkimpy's DNS hook, answered by the stub over the wire."""

    def lookup(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        records = dns.lookup_txt(n)
        return records[0] if records else None

    return lookup


def verify(data: bytes, dns: DnsStub) -> tuple[bool, str]:
    """dkimpy's verdict on the first signature, with its log for messages."""
    log = logging.getLogger(f"dkimpy-{uniq('')}")
    log.setLevel(logging.DEBUG)
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    log.addHandler(Collect())
    log.propagate = False
    d = dkim.DKIM(data, logger=log, minkey=1024)
    try:
        ok = d.verify(dnsfunc=stub_dnsfunc(dns))
    except dkim.DKIMException as e:  # what dkim.verify() turns into False
        lines.append(f"{type(e).__name__}: {e}")
        ok = False
    return bool(ok), "\n".join(lines)


def signature_tags(data: bytes) -> dict[str, str]:
    m = re.search(rb"(?im)^DKIM-Signature:((?:.*\r\n[ \t].*)*.*)\r\n", data)
    assert m, f"no DKIM-Signature header in {data[:800]!r}"
    value = re.sub(rb"\s+", b"", m.group(1)).decode()
    return dict(t.split("=", 1) for t in value.split(";") if "=" in t)


def send_to_sink(env: Env, sink_factory, message: bytes, token: str):
    dom = f"{uniq('dkimdest')}.example"
    ip = fresh_ip()
    sink = sink_factory(ip, env.port)
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
    submit(env.srv, env.alice, env.password, env.sender, [f"bob@{dom}"], message)
    [tx] = sink.wait_token(token)
    return tx


def test_signature_verifies_with_dkimpy(env, sink_factory):
    token = uniq("dkim-")
    message = (
        f"From: Alice Example <{env.sender}>\r\n"
        "To: Bob <bob@dest.example>,\r\n  Carol <carol@dest.example>\r\n"
        f"subject:   Signed   message {token}  \r\n\t folded part\r\n"
        "Date: Mon, 2 Jun 2025 10:00:00 +0000\r\n"
        f"Message-ID: <{token}@client.test.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        f"Hello Bob,\r\n\r\n{token} with trailing spaces   \r\n.a line with a dot\r\nGr\u00fc\u00dfe\r\n"
    ).encode()
    tx = send_to_sink(env, sink_factory, message, token)
    tags = signature_tags(tx.data)
    assert tags.get("d") == DOMAIN and tags.get("s") == SELECTOR, tags
    assert tags.get("c") == "relaxed/simple" and tags.get("a") == "rsa-sha256", tags
    assert "from" in tags.get("h", "").lower().split(":"), tags
    ok, why = verify(tx.data, env.dns)
    assert ok, f"dkimpy rejects the signature:\n{why}\nmessage:\n{tx.data[:3000]!r}"
    # The verdict means something: altered body or signed header fails.
    tampered_body = tx.data.replace(b"Hello Bob", b"Hello Eve")
    assert tampered_body != tx.data
    assert not verify(tampered_body, env.dns)[0], "dkimpy accepts an altered body: the check proves nothing"
    tampered_subject = tx.data.replace(b"Signed   message", b"Forged message")
    assert tampered_subject != tx.data
    assert not verify(tampered_subject, env.dns)[0], "dkimpy accepts an altered Subject"


def test_body_ending_in_whitespace_lines_verifies(env, sink_factory):
    token = uniq("dkimws-")
    message = (
        f"From: <{env.sender}>\r\nTo: <bob@dest.example>\r\nSubject: ws {token}\r\n\r\n"
        f"body {token}\r\n"
        "  \r\n"
        "\t\r\n"
        " \t \r\n"
        "\r\n"
        "\r\n"
    ).encode()
    tx = send_to_sink(env, sink_factory, message, token)
    assert tx.data.endswith(b"body " + token.encode() + b"\r\n  \r\n\t\r\n \t \r\n\r\n\r\n"), (
        f"the body changed on the way: {tx.data[-120:]!r}"
    )
    ok, why = verify(tx.data, env.dns)
    assert ok, f"dkimpy rejects the signature of a body ending in whitespace-only lines:\n{why}\n{tx.data[-600:]!r}"


def test_dns_records(env):
    out = env.srv.cli("dns-records", DOMAIN).stdout
    records = [l for l in out.splitlines() if l and not l.startswith(";")]

    def one(pred, what):
        hits = [l for l in records if pred(l)]
        assert len(hits) == 1, f"expected one {what} record in `dns-records`:\n{out}"
        return hits[0]

    mx = one(lambda l: l.startswith(f"{DOMAIN}. IN MX "), "MX")
    assert re.fullmatch(rf"{re.escape(DOMAIN)}\. IN MX \d+ {re.escape(env.srv.config['hostname'])}\.", mx), mx
    spf = one(lambda l: l.startswith(f"{DOMAIN}. IN TXT ") and "v=spf1" in l, "SPF")
    assert txt_value(spf).startswith("v=spf1 ") and txt_value(spf).endswith("all"), spf
    dkim_line = one(lambda l: l.startswith(f"{SELECTOR}._domainkey.{DOMAIN}. IN TXT "), "DKIM")
    assert txt_value(dkim_line) == txt_value(env.record_line), "dns-records and `dkim generate` disagree on the key"
    assert re.search(r"(^|;\s*)p=[A-Za-z0-9+/=]{300,}", txt_value(dkim_line)), dkim_line
    dmarc = one(lambda l: l.startswith(f"_dmarc.{DOMAIN}. IN TXT "), "DMARC")
    assert txt_value(dmarc).startswith("v=DMARC1;") and "p=" in txt_value(dmarc), dmarc
