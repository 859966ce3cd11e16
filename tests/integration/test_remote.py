"""Remote delivery end to end (issue 4): the real server delivers to scripted
SMTP sinks on loopback addresses, routed by a stub DNS server.

Mail enters through the submission port (AUTH in plaintext, allowed on
loopback by `[submission] allow_plaintext_on_loopback`) as a local user, so
bounces and delay warnings land in a Maildir we can read, or on the MX port
through an alias pointing outside. Every test uses a destination domain and
loopback addresses of its own, so one server serves most of them.

Covered: MX preference and fallback (refused connection, 421 greeting,
next address of one host), implicit MX, IPv6, null MX, NXDOMAIN, SERVFAIL,
an MX that is ourselves; 4xx then `queue flush`, 5xx at RCPT and at the end
of data (RFC 3464 bounces), per-recipient results, SIZE and SMTPUTF8 the
peer cannot take, delay warning, give_up_after; smarthost with AUTH over
STARTTLS (never in clear, never to an unverified server) and over implicit
TLS; opportunistic STARTTLS and `tls_required_domains`; a silent sink, an
endless EHLO reply, a hang-up at the end of data, kill -9 while the peer
holds its answer; several recipients in one transaction; the bytes on the
wire (no bare CR/LF, dot-stuffing); relaying after STARTTLS/implicit-TLS
submission; bounces to remote senders and failed bounces to the postmaster.
"""

from __future__ import annotations

import email
import re
import time
from dataclasses import dataclass
from email.message import Message

import pytest

from dnsstub import DnsStub
from sinks import bare_cr_or_lf, free_port, fresh_ip, make_ca_and_cert, remote_overrides, submit
from support import (
    CLIENT_NAME,
    DOMAIN,
    HOSTNAME,
    Postamt,
    RawClient,
    simple_message,
    smtp_auth_plain,
    uniq,
    wait_until,
)

# --------------------------------------------------------------------------
# the environment


@dataclass
class Env:
    srv: Postamt
    dns: DnsStub
    port: int  # the remote_port every sink listens on
    alice: str
    password: str
    # A CA trusted through tls_ca_file and a certificate for mx.<TLS_REQUIRED>.
    certs: tuple[str, str, str] | None = None

    @property
    def sender(self) -> str:
        return f"{self.alice}@{DOMAIN}"

    def submit(self, rcpts: list[str], token: str, body: bytes | None = None, to: str | None = None) -> str:
        msg = simple_message(token, sender=self.sender, to=to or rcpts[0], body=body)
        return submit(self.srv, self.alice, self.password, self.sender, rcpts, msg)


def make_env(srv: Postamt, dns: DnsStub, port: int) -> Env:
    alice, pw = srv.add_user(uniq("alice"))
    return Env(srv, dns, port, alice, pw)


# Mail for this domain must leave over verified TLS (`tls_required_domains`).
TLS_REQUIRED = "tlsrequired.example"


@pytest.fixture(scope="module")
def env(postamt_bin, tmp_path_factory):
    dns = DnsStub().start()
    port = free_port("127.0.0.2")
    certs = make_ca_and_cert(tmp_path_factory.mktemp("certs"), hostname=f"mx.{TLS_REQUIRED}")
    overrides = remote_overrides(dns, port, tls_required_domains=[TLS_REQUIRED], tls_ca_file=certs[0])
    srv = Postamt(postamt_bin, tmp_path_factory.mktemp("postamt"), overrides)
    try:
        srv.start()
        e = make_env(srv, dns, port)
        e.certs = certs
        yield e
        srv.stop()
    finally:
        srv.kill9()
        dns.stop()


@pytest.fixture
def own_env(postamt_bin, tmp_path_factory):
    """Makes a server of the test's own (config overrides on top of the
    remote ones) with its own stub DNS: `make(**delivery)`."""
    made: list[tuple[Postamt, DnsStub]] = []

    def make(extra: dict | None = None, **delivery) -> Env:
        from support import deep_merge

        dns = DnsStub().start()
        port = free_port("127.0.0.2")
        cfg = deep_merge(remote_overrides(dns, port, **delivery), extra or {})
        srv = Postamt(postamt_bin, tmp_path_factory.mktemp("postamt"), cfg)
        made.append((srv, dns))
        srv.start()
        return make_env(srv, dns, port)

    yield make
    errors = []
    for srv, dns in made:
        try:
            srv.stop()
        except AssertionError as e:
            errors.append(str(e))
        finally:
            srv.kill9()
            dns.stop()
    assert not errors, "\n".join(errors)


def new_domain(what: str) -> str:
    return f"{uniq(what)}.example"


# --------------------------------------------------------------------------
# reading what the server did


def attempt_lines(srv: Postamt, qid: str, status: str | None = None) -> list[str]:
    """delivery.log lines about `qid` that record an attempt's outcome."""
    out = []
    for line in srv.log("delivery").splitlines():
        if qid in line and "status=" in line and (status is None or re.search(rf"\bstatus=\"?{status}\b", line)):
            out.append(line)
    return out


def wait_attempt(srv: Postamt, qid: str, status: str, timeout: float = 30.0) -> list[str]:
    try:
        return wait_until(lambda: attempt_lines(srv, qid, status), timeout, f"a status={status} line for {qid} in delivery.log", interval=0.1)
    except AssertionError as e:
        raise AssertionError(f"{e}\ndelivery.log lines for {qid}: {[l for l in srv.log('delivery').splitlines() if qid in l]}") from None


def queue_line(srv: Postamt, qid: str) -> str | None:
    return next((l for l in srv.queue_list().splitlines() if qid in l), None)


def wait_dequeued(srv: Postamt, qid: str, timeout: float = 30.0) -> None:
    wait_until(lambda: queue_line(srv, qid) is None, timeout, f"{qid} gone from `queue list`")


def flush(srv: Postamt) -> None:
    out = srv.cli("queue", "flush").stdout
    assert "due now" in out, out


def delivery_status(report: Message) -> tuple[Message, list[Message]]:
    """The per-message and per-recipient field blocks of the one
    message/delivery-status part."""
    assert report.get_content_type() == "multipart/report", f"not a multipart/report: {report.get_content_type()}"
    assert (report.get_param("report-type") or "").lower() == "delivery-status", report["Content-Type"]
    parts = [p for p in report.walk() if p.get_content_type() == "message/delivery-status"]
    assert len(parts) == 1, f"expected one message/delivery-status part: {[p.get_content_type() for p in report.walk()]}"
    blocks = parts[0].get_payload()
    assert isinstance(blocks, list) and len(blocks) >= 2, f"delivery-status needs per-message and per-recipient fields: {blocks!r}"
    return blocks[0], blocks[1:]


def recipient_block(report: Message, rcpt: str) -> Message:
    per_message, per_rcpt = delivery_status(report)
    assert HOSTNAME in (per_message["Reporting-MTA"] or ""), dict(per_message)
    block = next((b for b in per_rcpt if rcpt.lower() in (b["Final-Recipient"] or "").lower()), None)
    assert block is not None, f"no per-recipient block for {rcpt}: {[dict(b) for b in per_rcpt]}"
    return block


def wait_report(env: Env, token: str, timeout: float = 30.0) -> Message:
    """The DSN in alice's mailbox that quotes `token` (from the original)."""
    raw = env.srv.wait_token(env.alice, token.encode(), timeout=timeout)
    msg = email.message_from_bytes(raw)
    assert msg.get_content_type() == "multipart/report", f"expected a DSN, got {msg.get_content_type()}:\n{raw[:1500]!r}"
    assert env.alice in (msg["To"] or ""), msg["To"]
    return msg


def field(block: Message, name: str) -> str:
    return " ".join((block[name] or "").split())


# --------------------------------------------------------------------------
# routing


def test_mx_preference_order(env, sink_factory):
    dom = new_domain("pref")
    ip_primary, ip_backup = fresh_ip(), fresh_ip()
    primary = sink_factory(ip_primary, env.port)
    backup = sink_factory(ip_backup, env.port)
    # The answer lists the backup first: the order must come from the preference.
    env.dns.mx(dom, (20, f"backup.{dom}"), (10, f"primary.{dom}"))
    env.dns.a(f"backup.{dom}", ip_backup).a(f"primary.{dom}", ip_primary)
    tokens = [uniq("pref-") for _ in range(3)]
    qids = [env.submit([f"bob@{dom}"], t) for t in tokens]
    for t, qid in zip(tokens, qids):
        [tx] = primary.wait_token(t)
        assert tx.rcpts == [f"bob@{dom}"] and tx.mail_from == env.sender, tx
        assert tx.accepted
        line = wait_attempt(env.srv, qid, "sent")[0]
        assert f"primary.{dom}" in line and f"{ip_primary}:{env.port}" in line, f"log line should name the MX host and address: {line}"
        assert f"bob@{dom}" in line and re.search(r"\breply=\"?250", line) and re.search(r"\bdelay=\d", line), (
            f"log line should give the recipient, the remote reply and the delay: {line}"
        )
        wait_dequeued(env.srv, qid)
    assert backup.connections == 0, f"the backup MX (preference 20) was contacted: {backup.sessions}"


def test_fallback_when_first_mx_refuses_connections(env, sink_factory):
    dom = new_domain("refused")
    ip_dead, ip_backup = fresh_ip(), fresh_ip()  # nothing listens on ip_dead
    backup = sink_factory(ip_backup, env.port)
    env.dns.mx(dom, (10, f"dead.{dom}"), (20, f"backup.{dom}"))
    env.dns.a(f"dead.{dom}", ip_dead).a(f"backup.{dom}", ip_backup)
    token = uniq("refused-")
    qid = env.submit([f"bob@{dom}"], token)
    [tx] = backup.wait_token(token)
    assert tx.rcpts == [f"bob@{dom}"]
    line = wait_attempt(env.srv, qid, "sent")[0]
    assert f"backup.{dom}" in line, line
    wait_dequeued(env.srv, qid)


def test_fallback_when_first_mx_answers_421(env, sink_factory):
    dom = new_domain("busy")
    ip_busy, ip_backup = fresh_ip(), fresh_ip()
    busy = sink_factory(ip_busy, env.port)
    busy.refuse_greeting = "421 4.3.2 Service not available, closing channel"
    backup = sink_factory(ip_backup, env.port)
    env.dns.mx(dom, (10, f"busy.{dom}"), (20, f"backup.{dom}"))
    env.dns.a(f"busy.{dom}", ip_busy).a(f"backup.{dom}", ip_backup)
    token = uniq("busy-")
    qid = env.submit([f"bob@{dom}"], token)
    [tx] = backup.wait_token(token)
    assert tx.accepted
    assert busy.connections >= 1, "the preferred MX was never tried"
    assert not busy.transactions
    line = wait_attempt(env.srv, qid, "sent")[0]
    assert f"backup.{dom}" in line, line


def test_implicit_mx(env, sink_factory):
    """No MX records: the domain's own address record is the mail host."""
    dom = new_domain("implicit")
    ip = fresh_ip()
    sink = sink_factory(ip, env.port)
    env.dns.a(dom, ip)
    token = uniq("implicit-")
    qid = env.submit([f"bob@{dom}"], token)
    [tx] = sink.wait_token(token)
    assert tx.rcpts == [f"bob@{dom}"]
    assert env.dns.asked(dom, "MX") >= 1, "the MX records were never asked for"
    wait_attempt(env.srv, qid, "sent")


def test_null_mx_bounces_at_once(env):
    dom = new_domain("nullmx")
    env.dns.null_mx(dom)
    token = uniq("nullmx-")
    qid = env.submit([f"bob@{dom}"], token)
    report = wait_report(env, token)
    block = recipient_block(report, f"bob@{dom}")
    assert field(block, "Action").lower() == "failed", dict(block)
    assert field(block, "Status") == "5.1.10", f"null MX (RFC 7505) must bounce with 5.1.10: {dict(block)}"
    wait_attempt(env.srv, qid, "bounced")
    wait_dequeued(env.srv, qid)
    assert env.dns.asked(f"{dom}", "A") == 0, "a null MX domain must not be delivered to by address"


def test_nxdomain_bounces(env):
    dom = new_domain("nxdomain")  # unknown to the stub: NXDOMAIN
    token = uniq("nx-")
    qid = env.submit([f"bob@{dom}"], token)
    report = wait_report(env, token)
    block = recipient_block(report, f"bob@{dom}")
    assert field(block, "Action").lower() == "failed", dict(block)
    assert field(block, "Status") == "5.1.2", dict(block)
    wait_dequeued(env.srv, qid)


def test_servfail_stays_queued(env):
    dom = new_domain("servfail")
    env.dns.servfail(dom)
    token = uniq("servfail-")
    qid = env.submit([f"bob@{dom}"], token)
    line = wait_attempt(env.srv, qid, "deferred")[0]
    assert f"bob@{dom}" in line, line
    listed = queue_line(env.srv, qid)
    assert listed and f"bob@{dom}" in listed, f"a SERVFAIL must leave the message queued:\n{env.srv.queue_list()}"
    show = env.srv.cli("queue", "show", qid).stdout
    assert re.search(r"last error: 4\.\d+\.\d+", show), f"queue show should give the temporary error:\n{show}"
    assert not [m for m in env.srv.messages(env.alice) if token.encode() in m], "a SERVFAIL must not bounce"
    assert not attempt_lines(env.srv, qid, "bounced")


# --------------------------------------------------------------------------
# replies of the remote server


def test_4xx_then_flush_delivers_once(env, sink_factory):
    dom = new_domain("tempfail")
    ip = fresh_ip()
    sink = sink_factory(ip, env.port)
    sink.rcpt_reply = "451 4.3.0 Try again later"
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
    token = uniq("tempfail-")
    qid = env.submit([f"bob@{dom}"], token)
    line = wait_attempt(env.srv, qid, "deferred")[0]
    assert "451" in line, f"the deferral should carry the remote reply: {line}"
    assert queue_line(env.srv, qid), env.srv.queue_list()
    assert not [t for t in sink.transactions if t.accepted], "nothing may be accepted while RCPT answers 451"
    sink.rcpt_reply = "250 2.1.5 Ok"
    flush(env.srv)
    [tx] = sink.wait_token(token)
    assert tx.accepted and tx.rcpts == [f"bob@{dom}"]
    wait_attempt(env.srv, qid, "sent")
    wait_dequeued(env.srv, qid)
    flush(env.srv)  # nothing left to send: a flush must not deliver again
    time.sleep(1.0)
    assert len(sink.with_token(token)) == 1, f"delivered more than once: {sink.with_token(token)}"


def test_5xx_bounce_is_a_delivery_status_report(env, sink_factory):
    dom = new_domain("reject")
    ip = fresh_ip()
    sink = sink_factory(ip, env.port)
    sink.rcpt_reply = lambda addr: f"550 5.1.1 <{addr}>: Recipient address rejected: no such user"
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
    token = uniq("reject-")
    qid = env.submit([f"nobody@{dom}"], token)
    report = wait_report(env, token)
    block = recipient_block(report, f"nobody@{dom}")
    assert field(block, "Action").lower() == "failed", dict(block)
    assert field(block, "Status") == "5.1.1", dict(block)
    diag = field(block, "Diagnostic-Code")
    assert diag.lower().startswith("smtp;") and "550" in diag and "Recipient address rejected" in diag, (
        f"Diagnostic-Code must carry the remote reply: {dict(block)}"
    )
    assert f"mx.{dom}" in field(block, "Remote-MTA"), f"Remote-MTA must name the host: {dict(block)}"
    # The original's headers come back, and the bounce uses the null sender.
    assert token in report.as_string()
    assert (report["Auto-Submitted"] or "").startswith("auto-replied"), report["Auto-Submitted"]
    wait_attempt(env.srv, qid, "bounced")
    wait_dequeued(env.srv, qid)
    assert not sink.transactions, "no DATA after the only recipient was refused"


def test_delay_warning(own_env, sink_factory):
    env = own_env(retry_intervals=["1s"], give_up_after="1h", delay_warning_after="2s")
    dom = new_domain("delay")
    ip = fresh_ip()
    sink = sink_factory(ip, env.port)
    sink.rcpt_reply = "451 4.7.1 Greylisted, try again later"
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
    token = uniq("delay-")
    qid = env.submit([f"bob@{dom}"], token)
    report = wait_report(env, token, timeout=30)
    assert "delayed mail" in (report["Subject"] or "").lower(), report["Subject"]
    block = recipient_block(report, f"bob@{dom}")
    assert field(block, "Action").lower() == "delayed", dict(block)
    assert field(block, "Status").startswith("4."), dict(block)
    assert "451" in field(block, "Diagnostic-Code"), dict(block)
    # Still retried, and warned only once.
    assert queue_line(env.srv, qid), "the message must stay queued after a delay warning"
    attempts = len(attempt_lines(env.srv, qid, "deferred"))
    wait_until(lambda: len(attempt_lines(env.srv, qid, "deferred")) >= attempts + 2, 20, "two more retries")
    dsns = [m for m in env.srv.messages(env.alice) if token.encode() in m]
    assert len(dsns) == 1, f"expected one delay warning, got {len(dsns)}"


@pytest.mark.parametrize("service", ["submission", "submissions"])
def test_relay_after_tls_submission(env, sink_factory, service):
    """The usual way in: STARTTLS (587) or implicit TLS (465), AUTH, then
    a remote recipient."""
    dom = new_domain("tlssub")
    ip = fresh_ip()
    sink = sink_factory(ip, env.port)
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
    token = uniq("tlssub-")
    s = env.srv.submission(env.alice, env.password, service)
    try:
        from support import send_on

        qid = send_on(s, env.sender, [f"bob@{dom}"], simple_message(token, sender=env.sender, to=f"bob@{dom}"))
    finally:
        s.quit()
    [tx] = sink.wait_token(token)
    assert tx.mail_from == env.sender and tx.rcpts == [f"bob@{dom}"]
    assert b"ESMTPSA" in tx.data.split(b"\r\n\r\n", 1)[0], "our Received: should say ESMTPSA"
    wait_attempt(env.srv, qid, "sent")


# --------------------------------------------------------------------------
# the smarthost


def test_smarthost_auth_over_starttls(own_env, sink_factory, tmp_path):
    ca, cert, key = make_ca_and_cert(tmp_path / "certs")
    from sinks import server_context

    port = free_port()
    user, password = "relayuser", uniq("pw")
    sink = sink_factory("127.0.0.1", port, auth=True, credentials=(user, password))
    env = own_env(
        smarthost=f"127.0.0.1:{port}",
        smarthost_user=user,
        smarthost_password=password,
        smarthost_tls="starttls",
        tls_ca_file=ca,
    )
    dom = new_domain("viasmarthost")  # no DNS at all: the smarthost takes it
    # First without STARTTLS on offer: the credentials must not travel in clear.
    token = uniq("smart-")
    qid = env.submit([f"bob@{dom}"], token)
    wait_attempt(env.srv, qid, "deferred")
    assert all(s.auth is None for s in sink.sessions), f"AUTH sent without TLS: {[s.commands for s in sink.sessions]}"
    assert not sink.transactions
    # With TLS from a CA we do not trust: still no credentials.
    _, bad_cert, bad_key = make_ca_and_cert(tmp_path / "other-ca")
    sink.tls_context = server_context(bad_cert, bad_key)
    flush(env.srv)
    wait_until(lambda: len(attempt_lines(env.srv, qid, "deferred")) >= 2, 20, "a second deferral")
    assert [s for s in sink.sessions if "STARTTLS" in s.commands], "STARTTLS was never tried"
    assert all(s.auth is None for s in sink.sessions), "credentials sent to a server whose certificate does not verify"
    assert not sink.transactions
    # Then with TLS (certificate from our CA, trusted through tls_ca_file).
    sink.tls_context = server_context(cert, key)
    flush(env.srv)
    [tx] = sink.wait_token(token)
    assert tx.tls, "the transaction did not run inside TLS"
    assert tx.auth is not None and tx.auth[1:] == (user, password), f"credentials seen by the smarthost: {tx.auth}"
    assert tx.auth[0] in ("PLAIN", "LOGIN")
    session = next(s for s in sink.sessions if s.auth)
    cmds = [c.split()[0].upper() for c in session.commands]
    assert cmds.index("STARTTLS") < cmds.index("AUTH"), f"AUTH before STARTTLS: {session.commands}"
    assert tx.helo == HOSTNAME, f"EHLO should name our hostname: {tx.helo!r}"
    assert tx.rcpts == [f"bob@{dom}"] and tx.mail_from == env.sender
    line = wait_attempt(env.srv, qid, "sent")[0]
    assert re.search(r"\btls=true\b", line), f"the log should say TLS was used: {line}"
    assert env.dns.asked(dom) == 0, "with a smarthost the destination's MX must not be looked up"


def test_smarthost_implicit_tls(own_env, sink_factory, tmp_path):
    ca, cert, key = make_ca_and_cert(tmp_path / "certs")
    from sinks import server_context

    port = free_port()
    sink = sink_factory("127.0.0.1", port, tls_context=server_context(cert, key), implicit_tls=True,
                        auth=True, credentials=("u1", "p1"))
    env = own_env(smarthost=f"127.0.0.1:{port}", smarthost_user="u1", smarthost_password="p1",
                  smarthost_tls="tls", tls_ca_file=ca)
    token = uniq("smarttls-")
    qid = env.submit([f"carol@{new_domain('implicittls')}"], token)
    [tx] = sink.wait_token(token)
    assert tx.tls and tx.auth is not None and tx.auth[1:] == ("u1", "p1"), tx
    session = next(s for s in sink.sessions if s.auth)
    assert "STARTTLS" not in [c.upper() for c in session.commands], "implicit TLS must not use STARTTLS"
    wait_attempt(env.srv, qid, "sent")


# --------------------------------------------------------------------------
# hostile or broken peers


def test_silent_sink_times_out_then_delivered(env, sink_factory):
    dom = new_domain("silent")
    ip = fresh_ip()
    silent = sink_factory(ip, env.port)
    silent.silent = True
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
    token = uniq("silent-")
    qid = env.submit([f"bob@{dom}"], token)
    line = wait_attempt(env.srv, qid, "deferred", timeout=20)[0]
    assert "time" in line.lower(), f"the deferral should say it timed out: {line}"
    assert silent.connections >= 1 and queue_line(env.srv, qid)
    silent.stop()
    working = sink_factory(ip, env.port)
    flush(env.srv)
    [tx] = working.wait_token(token)
    assert tx.accepted
    wait_attempt(env.srv, qid, "sent")
    wait_dequeued(env.srv, qid)


@pytest.mark.parametrize("shape", ["10000-lines", "1MB-line"])
def test_endless_ehlo_reply(env, sink_factory, shape):
    dom = new_domain("chatty")
    ip = fresh_ip()
    chatty = sink_factory(ip, env.port)
    if shape == "10000-lines":
        chatty.ehlo_lines = 10_000
    else:
        chatty.ehlo_line_bytes = 1024 * 1024
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
    token = uniq("chatty-")
    qid = env.submit([f"bob@{dom}"], token)
    wait_attempt(env.srv, qid, "deferred", timeout=20)
    assert queue_line(env.srv, qid)
    assert not chatty.transactions
    # Still healthy: the server answers and delivers other mail.
    assert env.srv.running()
    dom2 = new_domain("afterchatty")
    ip2 = fresh_ip()
    ok = sink_factory(ip2, env.port)
    env.dns.mx(dom2, (10, f"mx.{dom2}")).a(f"mx.{dom2}", ip2)
    token2 = uniq("healthy-")
    env.submit([f"bob@{dom2}"], token2)
    ok.wait_token(token2)
    # And the first message goes once the peer behaves.
    chatty.ehlo_lines = chatty.ehlo_line_bytes = 0
    flush(env.srv)
    chatty.wait_token(token)
    wait_dequeued(env.srv, qid)


def test_three_recipients_one_transaction(env, sink_factory):
    dom = new_domain("multi")
    ip = fresh_ip()
    sink = sink_factory(ip, env.port)
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
    rcpts = [f"r{i}@{dom}" for i in range(3)]
    token = uniq("multi-")
    qid = env.submit(rcpts, token)
    wait_dequeued(env.srv, qid)
    txs = sink.with_token(token)
    assert len(txs) == 1, f"expected one transaction, got {len(txs)}: {[t.rcpts for t in txs]}"
    assert sorted(txs[0].rcpts) == sorted(rcpts), txs[0].rcpts
    # Log lines reach the file within moments of the event (batched writer).
    wait_until(lambda: len(attempt_lines(env.srv, qid, "sent")) == 3, 10, "three status=sent lines")
    assert len(attempt_lines(env.srv, qid, "sent")) == 3


def test_kill9_during_end_of_data_loses_nothing(own_env, sink_factory):
    env = own_env(data_timeout="60s")
    dom = new_domain("crash")
    ip = fresh_ip()
    sink = sink_factory(ip, env.port)
    sink.eod_delay = 60.0  # holds the reply to the end of data
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
    token = uniq("crash-")
    qid = env.submit([f"bob@{dom}"], token)
    sink.wait_token(token, 1, timeout=20)
    env.srv.kill9()
    sink.eod_delay = 0.0
    env.srv.start()
    txs = sink.wait_token(token, 2, timeout=30)
    assert all(t.rcpts == [f"bob@{dom}"] for t in txs)
    wait_attempt(env.srv, qid, "sent")
    wait_dequeued(env.srv, qid)


def test_wire_bytes_dot_stuffed_without_bare_cr_or_lf(env, sink_factory):
    """The spool keeps bare CR/LF as received; on the wire every line ends in
    CRLF, and every line starting with a dot is stuffed, so the sink reads
    back exactly the lines, and the smuggling-shaped content stays one
    message."""
    dom = new_domain("wire")
    ip = fresh_ip()
    sink = sink_factory(ip, env.port)
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
    token = uniq("wire-")
    content = (
        f"From: <{env.sender}>\r\nTo: <bob@{dom}>\r\nSubject: wire {token}\r\n\r\n"
        ".leading dot\r\n"
        "..two dots\r\n"
        ". \r\n"
        "bare lf\n.\nMAIL FROM:<smuggler@evil.example>\r\n"
        "bare cr\r.\rRCPT TO:<victim@evil.example>\r\n"
        "mixed\r\n.\nDATA\r\n"
        f"end {token}\r\n"
    ).encode()
    stored = b"\r\n".join(l[1:] if l.startswith(b".") else l for l in content.split(b"\r\n"))
    expected = re.sub(rb"\r\n|\r|\n", b"\r\n", stored)
    c = RawClient(env.srv.addr("submission"), timeout=15)
    try:
        c.expect(220)
        c.command(b"EHLO " + CLIENT_NAME.encode(), 250)
        code, text = smtp_auth_plain(c, env.alice, env.password)
        assert code == 235, (code, text)
        c.command(f"MAIL FROM:<{env.sender}>".encode(), 250)
        c.command(f"RCPT TO:<bob@{dom}>".encode(), 250)
        c.command(b"DATA", 354)
        c.send(content + b".\r\n")
        c.expect(250)
        c.send(b"QUIT\r\n")
    finally:
        c.close()
    [tx] = sink.wait_token(f"end {token}")
    assert bare_cr_or_lf(tx.raw) == [], f"bare CR/LF on the wire at offsets {bare_cr_or_lf(tx.raw)[:10]}"
    assert tx.data.endswith(expected), (
        "the sink did not read back the message lines (dot-stuffing or line ends wrong):\n"
        f"got tail {tx.data[-len(expected) - 20:]!r}\nexpected {expected!r}"
    )
    head = tx.data[: len(tx.data) - len(expected)]
    assert head.startswith(b"Received: "), f"only our trace header may precede the message: {head!r}"
    # Every wire line starting with a dot is stuffed.
    for line in tx.raw.split(b"\r\n"):
        if line.startswith(b"."):
            assert line.startswith(b".."), f"unstuffed dot line on the wire: {line!r}"
    time.sleep(0.5)
    mails = [c for s in sink.sessions for c in s.commands if c.upper().startswith("MAIL")]
    assert len(mails) == 1, f"the content was split into several transactions: {mails}"


# --------------------------------------------------------------------------
# mail from the MX port that leaves again


def test_alias_forward_and_bounce_to_remote_sender(env, sink_factory):
    """A remote sender writes to a local alias that points to two remote
    addresses: one accepts (the copy leaves through the sink), the other
    refuses with 550, and the bounce goes back to the remote sender's MX
    from the null sender."""
    fwd = uniq("fwd")
    ok_dom, bad_dom, sender_dom = new_domain("fwdok"), new_domain("fwdbad"), new_domain("sender")
    ok_ip, bad_ip, sender_ip = fresh_ip(), fresh_ip(), fresh_ip()
    ok_sink = sink_factory(ok_ip, env.port)
    bad_sink = sink_factory(bad_ip, env.port)
    bad_sink.rcpt_reply = "550 5.1.1 mailbox unavailable"
    sender_mx = sink_factory(sender_ip, env.port)
    for d, ip in ((ok_dom, ok_ip), (bad_dom, bad_ip), (sender_dom, sender_ip)):
        env.dns.mx(d, (10, f"mx.{d}")).a(f"mx.{d}", ip)
    env.srv.add_alias(fwd, f"someone@{ok_dom}", f"gone@{bad_dom}")
    token = uniq("fwd-")
    sender = f"writer@{sender_dom}"
    env.srv.send(sender, [f"{fwd}@{DOMAIN}"], simple_message(token, sender=sender, to=f"{fwd}@{DOMAIN}"))
    [tx] = ok_sink.wait_token(token)
    assert tx.rcpts == [f"someone@{ok_dom}"], tx.rcpts
    assert b"Authentication-Results: " + HOSTNAME.encode() in tx.data, "mail from the MX port carries our Authentication-Results"
    [bounce] = sender_mx.wait_token(token)
    assert bounce.mail_from == "", f"a bounce must use the null sender: {bounce.mail_from!r}"
    assert bounce.rcpts == [sender], bounce.rcpts
    report = email.message_from_bytes(bounce.data)
    _, blocks = delivery_status(report)
    # Final-Recipient may name the alias (what the sender wrote to) or the
    # target it expanded to (RFC 3464 2.3.2 allows the transformed address).
    failed = [b for b in blocks if field(b, "Action").lower() == "failed"]
    assert len(failed) == 1, f"exactly one failed destination: {[dict(b) for b in blocks]}"
    block = failed[0]
    assert any(a in field(block, "Final-Recipient") for a in (f"{fwd}@{DOMAIN}", f"gone@{bad_dom}")), dict(block)
    assert field(block, "Status") == "5.1.1" and "mailbox unavailable" in field(block, "Diagnostic-Code"), dict(block)
    assert f"mx.{bad_dom}" in field(block, "Remote-MTA"), dict(block)
    assert f"someone@{ok_dom}" not in field(block, "Final-Recipient")


# --------------------------------------------------------------------------
# more routing, per-recipient results, capabilities, TLS policy


def test_next_address_of_the_same_mx(env, sink_factory):
    """An MX host with two addresses: the first refuses, the second takes it."""
    dom = new_domain("twoaddr")
    ip_dead, ip_live = fresh_ip(), fresh_ip()
    sink = sink_factory(ip_live, env.port)
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip_dead, ip_live)
    token = uniq("twoaddr-")
    qid = env.submit([f"bob@{dom}"], token)
    sink.wait_token(token)
    line = wait_attempt(env.srv, qid, "sent")[0]
    assert f"{ip_live}:{env.port}" in line, line


def test_ipv6_mx(env, sink_factory):
    import socket

    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", env.port))
        probe.close()
    except OSError as e:
        pytest.skip(f"cannot listen on [::1]:{env.port}: {e}")
    dom = new_domain("six")
    sink = sink_factory("::1", env.port)
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", "::1")  # AAAA only
    token = uniq("six-")
    qid = env.submit([f"bob@{dom}"], token)
    [tx] = sink.wait_token(token)
    assert tx.rcpts == [f"bob@{dom}"]
    wait_attempt(env.srv, qid, "sent")


def test_per_recipient_results(env, sink_factory):
    """One transaction, three answers: delivered, deferred, bounced. The
    retry sends to the deferred recipient only."""
    dom = new_domain("mixed")
    ip = fresh_ip()
    sink = sink_factory(ip, env.port)
    answers = {f"ok@{dom}": "250 2.1.5 Ok", f"later@{dom}": "452 4.2.2 Mailbox full", f"gone@{dom}": "550 5.1.1 No such user"}
    sink.rcpt_reply = lambda addr: answers.get(addr, "550 5.1.1 unexpected")
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
    token = uniq("mixed-")
    qid = env.submit(list(answers), token)
    [tx] = sink.wait_token(token)
    assert tx.rcpts == [f"ok@{dom}"] and sorted(tx.rcpt_attempts) == sorted(answers), tx
    report = wait_report(env, token)
    _, blocks = delivery_status(report)
    failed = [b for b in blocks if field(b, "Action").lower() == "failed"]
    assert len(failed) == 1 and f"gone@{dom}" in field(failed[0], "Final-Recipient"), [dict(b) for b in blocks]
    assert field(failed[0], "Status") == "5.1.1", dict(failed[0])
    assert not [b for b in blocks if f"ok@{dom}" in field(b, "Final-Recipient")], "the delivered recipient is in the bounce"
    listed = queue_line(env.srv, qid)
    assert listed and f"later@{dom}" in listed and f"ok@{dom}" not in listed and f"gone@{dom}" not in listed, (
        f"only the deferred recipient may still be pending:\n{env.srv.queue_list()}"
    )
    answers[f"later@{dom}"] = "250 2.1.5 Ok now"
    flush(env.srv)
    txs = sink.wait_token(token, 2)
    assert txs[1].rcpt_attempts == [f"later@{dom}"], f"the retry must be for the deferred recipient only: {txs[1].rcpt_attempts}"
    wait_dequeued(env.srv, qid)


def test_5xx_at_end_of_data_bounces(env, sink_factory):
    dom = new_domain("eodreject")
    ip = fresh_ip()
    sink = sink_factory(ip, env.port)
    sink.eod_reply = "554 5.6.0 Content rejected by policy"
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
    token = uniq("eodrej-")
    qid = env.submit([f"bob@{dom}", f"carol@{dom}"], token)
    report = wait_report(env, token)
    _, blocks = delivery_status(report)
    assert sorted(field(b, "Final-Recipient").split(";")[-1].strip() for b in blocks) == sorted([f"bob@{dom}", f"carol@{dom}"]), [dict(b) for b in blocks]
    for b in blocks:
        assert field(b, "Status") == "5.6.0" and "Content rejected" in field(b, "Diagnostic-Code"), dict(b)
    wait_dequeued(env.srv, qid)
    assert len(sink.with_token(token)) == 1


def test_message_larger_than_remote_size_bounces(env, sink_factory):
    dom = new_domain("small")
    ip = fresh_ip()
    sink = sink_factory(ip, env.port)
    sink.caps = ["PIPELINING", "8BITMIME", "SIZE 1000", "ENHANCEDSTATUSCODES"]
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
    token = uniq("big-")
    qid = env.submit([f"bob@{dom}"], token, body=(b"x" * 70 + b"\r\n") * 80)
    report = wait_report(env, token)
    block = recipient_block(report, f"bob@{dom}")
    assert field(block, "Status").startswith("5.3.4"), dict(block)
    wait_dequeued(env.srv, qid)
    assert not sink.transactions, "the message was sent although the server's SIZE is smaller"


def test_smtputf8_needed_but_not_offered(env, sink_factory):
    import smtplib

    dom = new_domain("ascii")
    ip = fresh_ip()
    sink = sink_factory(ip, env.port)
    sink.caps = ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"]  # no SMTPUTF8
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
    token = uniq("utf8-")
    rcpt = f"j\u00fcrgen@{dom}"
    s = smtplib.SMTP(*env.srv.addr("submission"), local_hostname=CLIENT_NAME, timeout=30)
    try:
        s.ehlo()
        assert s.has_extn("smtputf8"), "submission must offer SMTPUTF8"
        s.login(env.alice, env.password)
        assert s.mail(env.sender, ["SMTPUTF8"])[0] == 250
        code, resp = s.rcpt(rcpt)
        assert code == 250, (code, resp)
        code, resp = s.data(simple_message(token, sender=env.sender, to=f"x@{dom}"))
        assert code == 250, (code, resp)
    finally:
        s.quit()
    report = wait_report(env, token)
    _, blocks = delivery_status(report)
    assert len(blocks) == 1 and field(blocks[0], "Status") == "5.6.7", [dict(b) for b in blocks]
    assert not sink.transactions


def test_opportunistic_starttls(env, sink_factory, tmp_path):
    """MX delivery uses STARTTLS when offered, whatever the certificate
    (RFC 7435); a failed handshake falls back to plaintext."""
    from sinks import server_context
    from support import make_cert

    cert, key = make_cert(tmp_path, "untrusted", hostname="somewhere.else")
    dom = new_domain("oppo")
    ip = fresh_ip()
    sink = sink_factory(ip, env.port, tls_context=server_context(str(cert), str(key)))
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
    token = uniq("oppo-")
    qid = env.submit([f"bob@{dom}"], token)
    [tx] = sink.wait_token(token)
    assert tx.tls, "STARTTLS was offered but the message went in plaintext"
    assert re.search(r"\btls=true\b", wait_attempt(env.srv, qid, "sent")[0])

    # The server keeps a finished connection open for a few seconds to reuse
    # it for the next message to this host; wait until it has said QUIT so
    # the next message needs a fresh connection (and handshake).
    deadline = time.monotonic() + 20
    while not all("QUIT" in sess.commands for sess in sink.sessions):
        assert time.monotonic() < deadline, [sess.commands for sess in sink.sessions]
        time.sleep(0.2)
    sink.tls_broken = True
    token2 = uniq("oppobroken-")
    qid2 = env.submit([f"bob@{dom}"], token2)
    [tx2] = sink.wait_token(token2)
    assert not tx2.tls
    starttls_sessions = [s.commands for s in sink.sessions if "STARTTLS" in s.commands]
    assert len(starttls_sessions) >= 2, f"the failed handshake was never tried: {[s.commands for s in sink.sessions]}"
    wait_attempt(env.srv, qid2, "sent")


def test_tls_required_domain(env, sink_factory, tmp_path):
    """`tls_required_domains`: no STARTTLS, or a certificate that does not
    verify, defers; a verified certificate delivers."""
    from sinks import server_context

    ca, cert, key = env.certs
    ip = fresh_ip()
    sink = sink_factory(ip, env.port)  # no STARTTLS
    env.dns.remove(TLS_REQUIRED).remove(f"mx.{TLS_REQUIRED}")
    env.dns.mx(TLS_REQUIRED, (10, f"mx.{TLS_REQUIRED}")).a(f"mx.{TLS_REQUIRED}", ip)
    token = uniq("tlsreq-")
    qid = env.submit([f"bob@{TLS_REQUIRED}"], token)
    wait_attempt(env.srv, qid, "deferred")
    assert not sink.transactions, "mail for a TLS-required domain went in plaintext"
    # A certificate for the right name, from a CA we do not trust.
    _, bad_cert, bad_key = make_ca_and_cert(tmp_path / "other-ca", hostname=f"mx.{TLS_REQUIRED}")
    sink.tls_context = server_context(bad_cert, bad_key)
    flush(env.srv)
    deferrals = wait_until(lambda: (lambda l: l if len(l) >= 2 else None)(attempt_lines(env.srv, qid, "deferred")), 20, "a second deferral")
    assert "4.7." in deferrals[-1], f"the deferral should be a TLS failure (4.7.x): {deferrals[-1]}"
    assert [s for s in sink.sessions if "STARTTLS" in s.commands], "STARTTLS was never tried"
    assert not sink.transactions, "mail for a TLS-required domain went to an unverified server"
    sink.tls_context = server_context(cert, key)
    flush(env.srv)
    [tx] = sink.wait_token(token)
    assert tx.tls
    wait_attempt(env.srv, qid, "sent")


def test_failed_bounce_goes_to_postmaster(env, sink_factory):
    """A message from the null sender that fails is reported to the
    postmaster, never bounced to anyone."""
    env.srv.add_user("postmaster")
    fwd = uniq("nullfwd")
    dom = new_domain("nullrej")
    ip = fresh_ip()
    sink = sink_factory(ip, env.port)
    sink.rcpt_reply = "550 5.1.1 No such user"
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
    env.srv.add_alias(fwd, f"gone@{dom}")
    token = uniq("nullsender-")
    qid = env.srv.send("", [f"{fwd}@{DOMAIN}"], simple_message(token, sender="MAILER-DAEMON@elsewhere.example", to=f"{fwd}@{DOMAIN}"))
    env.srv.wait_token("postmaster", token.encode())
    wait_dequeued(env.srv, qid)
    assert not [t for t in sink.transactions if t.accepted]


def test_give_up_after(own_env, sink_factory):
    env = own_env(retry_intervals=["1s"], give_up_after="3s")
    dom = new_domain("giveup")
    ip = fresh_ip()
    sink = sink_factory(ip, env.port)
    sink.rcpt_reply = "451 4.3.0 Not today"
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
    token = uniq("giveup-")
    t0 = time.monotonic()
    qid = env.submit([f"bob@{dom}"], token)
    report = wait_report(env, token, timeout=30)
    # The queue keeps whole seconds: giving up may come up to 1 s early.
    assert time.monotonic() - t0 >= 2.0, "bounced before give_up_after"
    block = recipient_block(report, f"bob@{dom}")
    assert field(block, "Action").lower() == "failed", dict(block)
    assert "451" in field(block, "Diagnostic-Code"), dict(block)
    wait_dequeued(env.srv, qid)
    assert len(attempt_lines(env.srv, qid, "deferred")) >= 2, "retried at least twice before giving up"


def test_connection_lost_at_end_of_data_is_retried(env, sink_factory):
    """The peer closes instead of answering the end of data: no answer is
    not a refusal, so the message stays queued (a duplicate is allowed,
    a loss is not)."""
    dom = new_domain("hangup")
    ip = fresh_ip()
    sink = sink_factory(ip, env.port)
    sink.eod_close = True
    env.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
    token = uniq("hangup-")
    qid = env.submit([f"bob@{dom}"], token)
    sink.wait_token(token)
    wait_attempt(env.srv, qid, "deferred")
    assert queue_line(env.srv, qid), "the message left the queue without an answer from the peer"
    assert not attempt_lines(env.srv, qid, "bounced")
    sink.eod_close = False
    flush(env.srv)
    sink.wait_token(token, 2)
    wait_attempt(env.srv, qid, "sent")
    wait_dequeued(env.srv, qid)


def test_mx_pointing_to_us_bounces_as_loop(env):
    dom = new_domain("loop")
    env.dns.mx(dom, (10, HOSTNAME))
    token = uniq("loop-")
    qid = env.submit([f"bob@{dom}"], token)
    report = wait_report(env, token)
    block = recipient_block(report, f"bob@{dom}")
    assert field(block, "Status") == "5.4.6", f"an MX that is ourselves is a mail loop: {dict(block)}"
    wait_dequeued(env.srv, qid)
