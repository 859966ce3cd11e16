"""Forwarding end to end (issue 5): with and without a copy in the
mailbox, the forwarded copy intact and sent with an SRS envelope sender at
our primary domain, bounces of forwarded copies reaching the original
sender (both when our server is refused and when a bounce to the SRS
address comes back from outside), forged SRS addresses refused, and a
forwarding loop ending in exactly one bounce.

Original senders and forward destinations are remote addresses whose MX
is an SMTP sink (through the stub DNS); mail enters on the MX port.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass
from email.message import Message

import pytest

from dnsstub import DnsStub
from sinks import Sink, Transaction, free_port, fresh_ip, remote_overrides
from support import DOMAIN, Postamt, deep_merge, simple_message, uniq, wait_until

SRS_RE = re.compile(rf"^SRS0=[^@]+@{re.escape(DOMAIN)}$", re.IGNORECASE)


@dataclass
class Env:
    srv: Postamt
    dns: DnsStub
    port: int

    def remote(self, sink_factory, what: str) -> tuple[str, Sink]:
        dom = f"{uniq(what)}.example"
        ip = fresh_ip()
        sink = sink_factory(ip, self.port)
        self.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", ip)
        return dom, sink


@pytest.fixture(scope="module")
def env(postamt_bin, tmp_path_factory):
    dns = DnsStub().start()
    port = free_port("127.0.0.2")
    cfg = deep_merge(
        remote_overrides(dns, port, retry_intervals=["1s"], give_up_after="1h"),
        {"sender_auth": {"verify": False}},
    )
    srv = Postamt(postamt_bin, tmp_path_factory.mktemp("postamt"), cfg)
    try:
        srv.start()
        yield Env(srv, dns, port)
        srv.stop()
    finally:
        srv.kill9()
        dns.stop()


# --------------------------------------------------------------------------
# helpers


def queue_line(srv: Postamt, qid: str) -> str | None:
    return next((l for l in srv.queue_list().splitlines() if qid in l), None)


def wait_dequeued(srv: Postamt, qid: str, timeout: float = 30.0) -> None:
    wait_until(lambda: queue_line(srv, qid) is None, timeout, f"{qid} gone from `queue list`", interval=0.1)


def with_token(srv: Postamt, user: str, token: str) -> list[bytes]:
    return [m for m in srv.messages(user) if token.encode() in m]


def field(block: Message, name: str) -> str:
    return " ".join((block[name] or "").split())


def dsn_blocks(data: bytes) -> tuple[Message, list[Message]]:
    report = email.message_from_bytes(data)
    assert report.get_content_type() == "multipart/report", f"not a DSN: {report.get_content_type()}\n{data[:1500]!r}"
    parts = [p for p in report.walk() if p.get_content_type() == "message/delivery-status"]
    assert len(parts) == 1, [p.get_content_type() for p in report.walk()]
    blocks = parts[0].get_payload()
    assert isinstance(blocks, list) and len(blocks) >= 2, blocks
    return report, blocks[1:]


def forwarded_tx(sink: Sink, token: str) -> Transaction:
    [tx] = sink.wait_token(token)
    assert tx.accepted
    assert SRS_RE.match(tx.mail_from), f"a forwarded copy leaves with an SRS sender at {DOMAIN}: {tx.mail_from!r}"
    return tx


def dsn(token: str, to: str, original_rcpt: str) -> bytes:
    """A bounce as a remote MTA would send it (RFC 3464)."""
    b = "BOUNDARY-" + token
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@far.example>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: Undelivered Mail Returned to Sender {token}\r\n"
        f"Message-ID: <{token}@far.example>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{b}"\r\n'
        "\r\n"
        f"--{b}\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        f"Your message could not be delivered ({token}).\r\n"
        f"--{b}\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; far.example\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {original_rcpt}\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        "\r\n"
        f"--{b}--\r\n"
    ).encode()


# --------------------------------------------------------------------------
# forwarding


def test_forward_without_copy_uses_srs(env, sink_factory):
    srv = env.srv
    user, _ = srv.add_user(uniq("fw"))
    fdom, fsink = env.remote(sink_factory, "fwdest")
    sdom, ssink = env.remote(sink_factory, "fwsender")
    target, sender = f"me@{fdom}", f"ann@{sdom}"
    srv.cli("forward", "set", user, target)
    token = uniq("fwd-")
    sent = simple_message(token, sender=sender, to=f"{user}@{DOMAIN}")
    qid = srv.send(sender, [f"{user}@{DOMAIN}"], sent)
    tx = forwarded_tx(fsink, token)
    assert tx.rcpts == [target], tx.rcpts
    assert tx.data.endswith(sent), "the message must be forwarded intact (only trace headers added on top)"
    assert tx.data[: len(tx.data) - len(sent)].startswith(b"Received: "), tx.data[:200]
    wait_dequeued(srv, qid)
    assert srv.messages(user) == [], "no copy stays in the mailbox without --keep-copy"
    assert not ssink.transactions, "nothing goes back to the sender"


def test_forward_with_keep_copy(env, sink_factory):
    srv = env.srv
    user, _ = srv.add_user(uniq("fk"))
    fdom, fsink = env.remote(sink_factory, "fkdest")
    sdom, _ = env.remote(sink_factory, "fksender")
    target, sender = f"me@{fdom}", f"bob@{sdom}"
    srv.cli("forward", "set", user, target, "--keep-copy")
    tokens = [uniq("keep-") for _ in range(2)]
    for t in tokens:
        srv.send(sender, [f"{user}@{DOMAIN}"], simple_message(t, sender=sender, to=f"{user}@{DOMAIN}"))
    for t in tokens:
        forwarded_tx(fsink, t)
        srv.wait_token(user, t.encode())
    assert len(srv.messages(user)) == 2, "one copy per message in the mailbox"
    assert len(fsink.transactions) == 2

    # `forward off`: the mailbox only, nothing leaves.
    srv.cli("forward", "off", user)
    t3 = uniq("off-")
    qid = srv.send(sender, [f"{user}@{DOMAIN}"], simple_message(t3, sender=sender, to=f"{user}@{DOMAIN}"))
    srv.wait_token(user, t3.encode())
    wait_dequeued(srv, qid)
    assert not fsink.with_token(t3), "forwarded after `forward off`"


def test_refused_forward_bounces_to_the_original_sender(env, sink_factory):
    """The destination refuses the forwarded copy (550): the original
    sender, not the forwarding user, gets the DSN."""
    srv = env.srv
    user, _ = srv.add_user(uniq("fr"))
    fdom, fsink = env.remote(sink_factory, "frdest")
    fsink.rcpt_reply = "550 5.1.1 <gone>: no such user here"
    sdom, ssink = env.remote(sink_factory, "frsender")
    target, sender = f"gone@{fdom}", f"carol@{sdom}"
    srv.cli("forward", "set", user, target)
    token = uniq("refused-")
    qid = srv.send(sender, [f"{user}@{DOMAIN}"], simple_message(token, sender=sender, to=f"{user}@{DOMAIN}"))
    [bounce] = ssink.wait_token(token)
    assert bounce.mail_from == "", f"a bounce comes from the null sender: {bounce.mail_from!r}"
    assert bounce.rcpts == [sender], bounce.rcpts
    report, blocks = dsn_blocks(bounce.data)
    failed = [b for b in blocks if field(b, "Action").lower() == "failed"]
    assert len(failed) == 1, [dict(b) for b in blocks]
    assert field(failed[0], "Status") == "5.1.1", dict(failed[0])
    assert "no such user here" in field(failed[0], "Diagnostic-Code"), dict(failed[0])
    # The forwarded copy was offered with the SRS sender.
    attempts = [s.commands for s in fsink.sessions]
    mails = [c for cmds in attempts for c in cmds if c.upper().startswith("MAIL FROM:")]
    assert mails and all(SRS_RE.match(c[len("MAIL FROM:"):].split()[0].strip("<>")) for c in mails), mails
    wait_dequeued(srv, qid)
    assert len(ssink.with_token(token)) == 1, "exactly one bounce"
    assert srv.messages(user) == []


def test_bounce_to_srs_address_is_relayed_to_the_original_sender(env, sink_factory):
    """The destination accepts the copy and bounces later: its DSN goes to
    the SRS address (ours), which is reversed and relayed on."""
    srv = env.srv
    user, _ = srv.add_user(uniq("fb"))
    fdom, fsink = env.remote(sink_factory, "fbdest")
    sdom, ssink = env.remote(sink_factory, "fbsender")
    target, sender = f"later@{fdom}", f"dave@{sdom}"
    srv.cli("forward", "set", user, target)
    token = uniq("srsfwd-")
    srv.send(sender, [f"{user}@{DOMAIN}"], simple_message(token, sender=sender, to=f"{user}@{DOMAIN}"))
    srs = forwarded_tx(fsink, token).mail_from

    # The remote MTA bounces to the SRS address through our MX port.
    btoken = uniq("srsbounce-")
    qid = srv.send("", [srs], dsn(btoken, srs, target))
    [relayed] = ssink.wait_token(btoken)
    assert relayed.rcpts == [sender], f"the bounce must reach the original sender: {relayed.rcpts}"
    assert relayed.mail_from == "", f"relayed from the null sender: {relayed.mail_from!r}"
    assert f"Your message could not be delivered ({btoken})".encode() in relayed.data
    wait_dequeued(srv, qid)
    assert len(ssink.with_token(btoken)) == 1
    assert srv.messages(user) == []

    # A forged SRS address (hash changed) is refused at RCPT.
    local, _, dom = srs.partition("@")
    parts = local.split("=")
    parts[1] = "".join("a" if c != "a" else "b" for c in parts[1])
    forged = "=".join(parts) + "@" + dom
    with srv.smtp() as s:
        assert s.mail("")[0] == 250
        code, resp = s.rcpt(forged)
        assert code == 550 and resp.startswith(b"5.1.1"), f"a forged SRS address must be refused: {code} {resp!r}"


def test_forward_loop_refused_at_rcpt(env):
    """a forwards to b (through an alias), b forwards to a. The CLI refuses
    a direct loop when it is set; closing it afterwards by retargeting the
    alias (as an admin could do by mistake) makes the address refuse mail
    at RCPT (the sending MTA then bounces once)."""
    srv = env.srv
    a, _ = srv.add_user(uniq("la"))
    b, _ = srv.add_user(uniq("lb"))
    c, _ = srv.add_user(uniq("lc"))
    via = uniq("via")
    srv.add_alias(via, c)
    srv.cli("forward", "set", a, via)
    srv.cli("forward", "set", b, a)
    refused = srv.cli("forward", "set", a, b, check=False)
    assert refused.returncode != 0 and "loop" in (refused.stdout + refused.stderr).lower(), (
        f"a direct loop must be refused when set: {refused.returncode} {refused.stdout} {refused.stderr}"
    )
    srv.add_alias(via, b)  # now a -> via -> b -> a
    with srv.smtp() as s:
        assert s.mail("someone@elsewhere.example")[0] == 250
        code, resp = s.rcpt(f"{a}@{DOMAIN}")
        assert code == 550 and resp.startswith(b"5.4.6"), f"an address that loops is refused with 5.4.6: {code} {resp!r}"


def test_forward_loop_ends_in_one_bounce(env, sink_factory):
    """A message accepted while the forward still led out (the destination
    defers it), then the forwards close into a loop between two users: the
    next attempt ends in exactly one bounce (5.4.6) to the sender."""
    srv = env.srv
    a, _ = srv.add_user(uniq("la"))
    b, _ = srv.add_user(uniq("lb"))
    via = uniq("via")
    ddom, dsink = env.remote(sink_factory, "loopdefer")
    dsink.rcpt_reply = "451 4.3.0 try again later"
    srv.add_alias(via, f"away@{ddom}")
    srv.cli("forward", "set", a, via)
    srv.cli("forward", "set", b, a)
    sdom, ssink = env.remote(sink_factory, "loopsender")
    sender = f"erin@{sdom}"
    token = uniq("loop-")
    qid = srv.send(sender, [f"{a}@{DOMAIN}"], simple_message(token, sender=sender, to=f"{a}@{DOMAIN}"))
    dsink.wait_connections(1)
    wait_until(lambda: [l for l in srv.log("delivery").splitlines() if qid in l and "deferred" in l], 20,
               f"a deferral of {qid} in delivery.log", interval=0.1)
    srv.add_alias(via, b)  # now a -> via -> b -> a
    out = srv.cli("queue", "flush").stdout
    assert "due now" in out, out
    [bounce] = ssink.wait_token(token)
    assert bounce.mail_from == "" and bounce.rcpts == [sender], (bounce.mail_from, bounce.rcpts)
    _, blocks = dsn_blocks(bounce.data)
    failed = [x for x in blocks if field(x, "Action").lower() == "failed"]
    assert len(failed) == 1, [dict(x) for x in blocks]
    assert field(failed[0], "Status") == "5.4.6", f"a forwarding loop is 5.4.6: {dict(failed[0])}"
    wait_dequeued(srv, qid)
    assert len(ssink.with_token(token)) == 1, "exactly one bounce"
    for u in (a, b):
        assert not with_token(srv, u, token), f"{u} got the looping message"
    assert not [t for t in dsink.transactions if t.accepted]


def test_alias_to_remote_address_uses_srs(env, sink_factory):
    """An alias pointing outside forwards like a user's forward: SRS sender,
    and a bounce to that SRS address finds the original sender."""
    srv = env.srv
    alias = uniq("ext")
    fdom, fsink = env.remote(sink_factory, "aliasdest")
    sdom, ssink = env.remote(sink_factory, "aliassender")
    target, sender = f"someone@{fdom}", f"frank@{sdom}"
    srv.add_alias(alias, target)
    token = uniq("alias-")
    sent = simple_message(token, sender=sender, to=f"{alias}@{DOMAIN}")
    srv.send(sender, [f"{alias}@{DOMAIN}"], sent)
    tx = forwarded_tx(fsink, token)
    assert tx.rcpts == [target] and tx.data.endswith(sent)
    btoken = uniq("aliasbounce-")
    srv.send("", [tx.mail_from], dsn(btoken, tx.mail_from, target))
    [relayed] = ssink.wait_token(btoken)
    assert relayed.rcpts == [sender] and relayed.mail_from == "", (relayed.rcpts, relayed.mail_from)


def test_forward_to_local_user_and_remote(env, sink_factory):
    """A forward to several addresses: a local user (delivered to the
    mailbox) and a remote one (SRS), one copy each."""
    srv = env.srv
    user, _ = srv.add_user(uniq("fm"))
    other, _ = srv.add_user(uniq("fo"))
    fdom, fsink = env.remote(sink_factory, "fmdest")
    sdom, _ = env.remote(sink_factory, "fmsender")
    sender = f"gina@{sdom}"
    srv.cli("forward", "set", user, other, f"me@{fdom}")
    token = uniq("multi-")
    qid = srv.send(sender, [f"{user}@{DOMAIN}"], simple_message(token, sender=sender, to=f"{user}@{DOMAIN}"))
    forwarded_tx(fsink, token)
    srv.wait_token(other, token.encode())
    wait_dequeued(srv, qid)
    assert len(with_token(srv, other, token)) == 1
    assert srv.messages(user) == []
    assert len(fsink.with_token(token)) == 1
