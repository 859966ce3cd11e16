"""Auto-replies (vacation) end to end (issue 5), by RFC 3834: exactly one
reply per sender per period, from the null sender, with
`Auto-Submitted: auto-replied` and `In-Reply-To`/`References`; none to list
mail, bulk mail, automatic mail, the null sender, robot senders, or when
the user is only a blind-copy recipient; the user gets every message.

The senders are remote addresses whose MX is an SMTP sink (through the
stub DNS); they write to the server's MX port. Every "no reply" is
established from the delivery log's decision for that message (logged in
the same attempt that would have queued the reply), then checked against
the sink after a later reply has gone through the same path.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass

import pytest

from dnsstub import DnsStub
from sinks import Sink, free_port, fresh_ip, remote_overrides
from support import CLIENT_NAME, DOMAIN, Postamt, deep_merge, uniq, wait_until

SUBJECT = "Out of office"
BODY = "I am away this week.\nYour message will be read on Monday."


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

    def route(self, dom: str, sink: Sink) -> None:
        """Another domain served by the same sink."""
        self.dns.mx(dom, (10, f"mx.{dom}")).a(f"mx.{dom}", sink.host)


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


def vacation_user(srv: Postamt) -> str:
    user, _ = srv.add_user(uniq("vac"))
    srv.cli("autoreply", "set", user, "--subject", SUBJECT, "--body", BODY)
    return user


def message(token: str, sender: str, to: str, extra: str = "", cc: str | None = None) -> bytes:
    head = (
        f"From: <{sender}>\r\n"
        f"To: <{to}>\r\n"
        + (f"Cc: <{cc}>\r\n" if cc else "")
        + f"Subject: question {token}\r\n"
        f"Message-ID: <{token}@{CLIENT_NAME}>\r\n"
        f"{extra}"
    )
    return (head + "\r\n" + f"Hello,\r\nthis is {token}.\r\n").encode()


def decision(srv: Postamt, qid: str, user: str, timeout: float = 20.0) -> str:
    """The delivery log's auto-reply decision for `qid` and `user`: the
    line saying "auto-reply sent" or "no auto-reply"."""

    def find():
        for line in srv.log("delivery").splitlines():
            if qid in line and re.search(rf"\buser={re.escape(user)}\b", line) and "auto-reply" in line:
                if "auto-reply sent" in line or "no auto-reply" in line:
                    return line
        return None

    try:
        return wait_until(find, timeout, f"the auto-reply decision for {qid} in delivery.log", interval=0.1)
    except AssertionError as e:
        lines = [l for l in srv.log("delivery").splitlines() if qid in l]
        raise AssertionError(f"{e}\ndelivery.log lines for {qid}: {lines}") from None


def replies_to(sink: Sink, rcpt: str) -> list:
    with sink.lock:
        return [t for t in sink.transactions if [r.lower() for r in t.rcpts] == [rcpt.lower()]]


def check_reply(tx, user: str, sender: str, token: str) -> None:
    assert tx.mail_from == "", f"an auto-reply must be sent from the null sender: {tx.mail_from!r}"
    assert tx.rcpts == [sender], tx.rcpts
    msg = email.message_from_bytes(tx.data)
    assert (msg["Auto-Submitted"] or "").strip().lower().startswith("auto-replied"), msg["Auto-Submitted"]
    assert f"<{token}@{CLIENT_NAME}>" in (msg["In-Reply-To"] or ""), f"In-Reply-To: {msg['In-Reply-To']!r}"
    assert f"<{token}@{CLIENT_NAME}>" in (msg["References"] or ""), f"References: {msg['References']!r}"
    assert " ".join(str(msg["Subject"]).split()) == SUBJECT, msg["Subject"]
    assert f"{user}@{DOMAIN}".lower() in (msg["From"] or "").lower(), f"From: {msg['From']!r}"
    assert sender.lower() in (msg["To"] or "").lower(), f"To: {msg['To']!r}"
    body = msg.get_payload(decode=True).decode(errors="replace")
    assert "I am away this week." in body and "read on Monday" in body, body


def test_one_reply_per_sender_per_period(env, sink_factory):
    srv = env.srv
    user = vacation_user(srv)
    dom, sink = env.remote(sink_factory, "asker")
    first, second = f"ann@{dom}", f"ben@{dom}"
    rcpt = f"{user}@{DOMAIN}"

    t1 = uniq("ar1-")
    q1 = srv.send(first, [rcpt], message(t1, first, rcpt))
    [tx] = sink.wait_token(t1)
    check_reply(tx, user, first, t1)
    assert "auto-reply sent" in decision(srv, q1, user)

    # The same sender again: no second reply within the period.
    t2 = uniq("ar2-")
    q2 = srv.send(first, [rcpt], message(t2, first, rcpt))
    line = decision(srv, q2, user)
    assert "no auto-reply" in line and "already answered" in line, line

    # Another sender gets a reply of their own (Cc counts as direct).
    t3 = uniq("ar3-")
    q3 = srv.send(second, [rcpt], message(t3, second, f"someone@{dom}", cc=rcpt))
    [tx3] = sink.wait_token(t3)
    check_reply(tx3, user, second, t3)
    assert "auto-reply sent" in decision(srv, q3, user)

    assert len(replies_to(sink, first)) == 1, f"{first} got {len(replies_to(sink, first))} auto-replies"
    assert len(replies_to(sink, second)) == 1
    assert not sink.with_token(t2), "the second message from the same sender was answered"
    # The user got every message.
    for t in (t1, t2, t3):
        srv.wait_token(user, t.encode())
    assert len(srv.messages(user)) == 3


@pytest.mark.parametrize(
    "case, extra, reason",
    [
        ("list", "List-Id: Some list <some.list.elsewhere.example>\r\n", "list mail"),
        ("bulk", "Precedence: bulk\r\n", "bulk"),
        ("junk", "Precedence: junk\r\n", "bulk"),
        ("auto", "Auto-Submitted: auto-replied\r\n", "auto-submitted"),
        ("autogen", "Auto-Submitted: auto-generated\r\n", "auto-submitted"),
    ],
)
def test_no_reply_to_list_bulk_or_automatic_mail(env, sink_factory, case, extra, reason):
    srv = env.srv
    user = vacation_user(srv)
    dom, sink = env.remote(sink_factory, case)
    sender, control = f"robot@{dom}", f"human@{dom}"
    rcpt = f"{user}@{DOMAIN}"
    token = uniq(f"{case}-")
    qid = srv.send(sender, [rcpt], message(token, sender, rcpt, extra=extra))
    line = decision(srv, qid, user)
    assert "no auto-reply" in line and reason in line, f"expected no auto-reply ({reason}): {line}"
    srv.wait_token(user, token.encode())
    # A plain message afterwards is answered: the path works, and the first got nothing.
    ctoken = uniq("ctl-")
    srv.send(control, [rcpt], message(ctoken, control, rcpt))
    sink.wait_token(ctoken)
    assert not replies_to(sink, sender), f"{case}: an auto-reply was sent to {sender}"
    assert not sink.with_token(token)


def test_no_reply_to_the_null_sender_or_a_robot_sender(env, sink_factory):
    srv = env.srv
    user = vacation_user(srv)
    dom, sink = env.remote(sink_factory, "robots")
    rcpt = f"{user}@{DOMAIN}"
    cases = [
        ("", f"MAILER-DAEMON@{dom}", "null sender"),
        (f"MAILER-DAEMON@{dom}", f"MAILER-DAEMON@{dom}", "automatic sender"),
        (f"owner-stuff@{dom}", f"owner-stuff@{dom}", "automatic sender"),
        (f"stuff-request@{dom}", f"stuff-request@{dom}", "automatic sender"),
        (f"stuff-bounces@{dom}", f"stuff-bounces@{dom}", "automatic sender"),
    ]
    tokens = []
    for env_from, hdr_from, reason in cases:
        token = uniq("robot-")
        tokens.append(token)
        qid = srv.send(env_from, [rcpt], message(token, hdr_from, rcpt))
        line = decision(srv, qid, user)
        assert "no auto-reply" in line and reason in line, f"MAIL FROM:<{env_from}>: expected no auto-reply ({reason}): {line}"
        srv.wait_token(user, token.encode())
    ctoken = uniq("ctl-")
    srv.send(f"human@{dom}", [rcpt], message(ctoken, f"human@{dom}", rcpt))
    sink.wait_token(ctoken)
    for token in tokens:
        assert not sink.with_token(token), f"an auto-reply went out for {token}"
    assert len(sink.transactions) == 1, [t.rcpts for t in sink.transactions]


def test_no_reply_when_only_bcc(env, sink_factory):
    srv = env.srv
    user = vacation_user(srv)
    dom, sink = env.remote(sink_factory, "bcc")
    sender = f"ann@{dom}"
    rcpt = f"{user}@{DOMAIN}"
    token = uniq("bcc-")
    # The envelope names the user; To/Cc do not (a blind copy).
    qid = srv.send(sender, [rcpt], message(token, sender, f"someone@{dom}", cc=f"other@{dom}"))
    line = decision(srv, qid, user)
    assert "no auto-reply" in line and "not a direct recipient" in line, line
    srv.wait_token(user, token.encode())
    # The same sender writing to the user directly is answered: the Bcc
    # did not use up the once-per-period reply either.
    t2 = uniq("direct-")
    srv.send(sender, [rcpt], message(t2, sender, rcpt))
    [tx] = sink.wait_token(t2)
    check_reply(tx, user, sender, t2)
    assert len(replies_to(sink, sender)) == 1


def test_autoreply_off_stops_replies(env, sink_factory):
    srv = env.srv
    user = vacation_user(srv)
    srv.cli("autoreply", "off", user)
    dom, sink = env.remote(sink_factory, "offsender")
    sender = f"ann@{dom}"
    rcpt = f"{user}@{DOMAIN}"
    token = uniq("off-")
    qid = srv.send(sender, [rcpt], message(token, sender, rcpt))
    srv.wait_token(user, token.encode())
    # Switched off: delivered, nothing decided about a reply, nothing sent.
    other = vacation_user(srv)
    ctoken = uniq("ctl-")
    srv.send(sender, [f"{other}@{DOMAIN}"], message(ctoken, sender, f"{other}@{DOMAIN}"))
    sink.wait_token(ctoken)
    assert not sink.with_token(token), "an auto-reply was sent after `autoreply off`"
    assert not [l for l in srv.log("delivery").splitlines() if qid in l and "auto-reply sent" in l]


def test_scheduled_autoreply_is_not_active_yet(env, sink_factory):
    import datetime

    srv = env.srv
    user, _ = srv.add_user(uniq("sched"))
    start = (datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=3)).isoformat()
    srv.cli("autoreply", "set", user, "--subject", SUBJECT, "--body", BODY, "--from", start)
    shown = srv.cli("autoreply", "show", user).stdout
    assert "scheduled" in shown.lower(), shown
    dom, sink = env.remote(sink_factory, "early")
    sender = f"ann@{dom}"
    rcpt = f"{user}@{DOMAIN}"
    token = uniq("early-")
    qid = srv.send(sender, [rcpt], message(token, sender, rcpt))
    srv.wait_token(user, token.encode())
    other = vacation_user(srv)
    ctoken = uniq("ctl-")
    srv.send(sender, [f"{other}@{DOMAIN}"], message(ctoken, sender, f"{other}@{DOMAIN}"))
    sink.wait_token(ctoken)
    assert not sink.with_token(token), "an auto-reply was sent before its --from date"
    assert not [l for l in srv.log("delivery").splitlines() if qid in l and "auto-reply sent" in l]
