"""Mailing lists end to end (issue 5): fan-out to local and remote members
with the list headers, requests by mail to `NAME-request@` with a
confirmation round trip, members-only posting refused at RCPT, and
moderation by the owner.

Remote parties (members, requesters, posters) are SMTP sinks on loopback
addresses, reached through the stub DNS; they write to the server on its
MX port. Each test uses lists, users and domains of its own, so one server
serves the module.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass
from email.message import Message

import pytest

from dnsstub import DnsStub
from sinks import Sink, Transaction, free_port, fresh_ip, remote_overrides
from support import CLIENT_NAME, DOMAIN, Postamt, deep_merge, simple_message, uniq, wait_until

# --------------------------------------------------------------------------
# the environment


@dataclass
class Env:
    srv: Postamt
    dns: DnsStub
    port: int  # the remote_port every sink listens on

    def remote(self, sink_factory, what: str) -> tuple[str, Sink]:
        """A fresh remote domain whose MX is a new sink."""
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


def members(srv: Postamt, name: str) -> list[str]:
    return [l.strip().lower() for l in srv.cli("list", "members", name).stdout.splitlines() if l.strip()]


def wait_members(srv: Postamt, name: str, pred, what: str, timeout: float = 20.0) -> list[str]:
    # Wrapped in a tuple: an empty member list is a valid (falsy) answer.
    got = wait_until(lambda: (lambda m: (m,) if pred(m) else None)(members(srv, name)), timeout, what, interval=0.2)
    return got[0]


def headers_of(data: bytes) -> Message:
    return email.message_from_bytes(data)


def one_header(msg: Message, name: str) -> str:
    values = msg.get_all(name) or []
    assert len(values) == 1, f"expected exactly one {name}: header, got {values!r}"
    return " ".join(str(values[0]).split())


def queue_line(srv: Postamt, qid: str) -> str | None:
    return next((l for l in srv.queue_list().splitlines() if qid in l), None)


def assert_list_headers(msg: Message, name: str, prefix: str, token: str) -> None:
    lid = f"<{name}.{DOMAIN}>".lower()
    assert lid in one_header(msg, "List-Id").lower(), f"List-Id must be {lid}: {msg['List-Id']!r}"
    unsub = one_header(msg, "List-Unsubscribe")
    assert f"mailto:{name}-request@{DOMAIN}".lower() in unsub.lower(), f"List-Unsubscribe: {unsub!r}"
    post = one_header(msg, "List-Post")
    assert f"<mailto:{name}@{DOMAIN}>".lower() in post.lower(), f"List-Post: {post!r}"
    helpv = one_header(msg, "List-Help")
    assert f"mailto:{name}-request@{DOMAIN}".lower() in helpv.lower(), f"List-Help: {helpv!r}"
    assert one_header(msg, "Precedence").lower() == "list", msg["Precedence"]
    subject = one_header(msg, "Subject")
    assert subject.startswith(prefix.strip()) and token in subject, f"subject should carry the prefix {prefix!r}: {subject!r}"


def request_mail(sender: str, rcpt: str, subject: str, body: str, in_reply_to: str | None = None) -> bytes:
    """A plain message as a person's mail program would send it."""
    mid = f"<{uniq('req')}@{CLIENT_NAME}>"
    head = f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n"
    if in_reply_to:
        head += f"In-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n"
    return (head + "\r\n" + body).encode()


def service_mails(sink: Sink, rcpt: str, subject_re: str) -> list[tuple[Transaction, Message]]:
    """Transactions to `rcpt` whose Subject matches `subject_re`."""
    with sink.lock:
        txs = list(sink.transactions)
    out = []
    for tx in txs:
        if rcpt.lower() not in [r.lower() for r in tx.rcpts]:
            continue
        msg = headers_of(tx.data)
        if re.search(subject_re, " ".join(str(msg["Subject"] or "").split())):
            out.append((tx, msg))
    return out


def wait_service_mail(sink: Sink, rcpt: str, subject_re: str, timeout: float = 30.0) -> tuple[Transaction, Message]:
    got = wait_until(
        lambda: service_mails(sink, rcpt, subject_re),
        timeout,
        f"a mail to {rcpt} at {sink.addr} with a Subject matching {subject_re!r} "
        f"(subjects seen: {[headers_of(t.data)['Subject'] for t in sink.transactions]})",
    )
    return got[0]


def assert_from_request_address(tx: Transaction, msg: Message, name: str) -> None:
    request = f"{name}-request@{DOMAIN}".lower()
    assert tx.mail_from == "", f"answers of the request address come from the null sender: {tx.mail_from!r}"
    assert request in (msg["From"] or "").lower(), f"From: {msg['From']!r}"
    assert request in (msg["Reply-To"] or "").lower(), f"Reply-To must be the request address: {msg['Reply-To']!r}"
    assert (msg["Auto-Submitted"] or "").lower().startswith("auto-replied"), msg["Auto-Submitted"]


# --------------------------------------------------------------------------
# fan-out


def test_post_reaches_local_and_remote_members_with_list_headers(env, sink_factory):
    srv = env.srv
    name = uniq("team")
    m1, _ = srv.add_user(uniq("m"))
    m2, _ = srv.add_user(uniq("m"))
    rdom, rsink = env.remote(sink_factory, "member")
    remote_member = f"far{uniq('')}@{rdom}"
    prefix = "[Team] "
    srv.cli("list", "create", name, "--posting", "anyone", "--prefix", prefix, "--reply-to", "list")
    for m in (m1, f"{m2}@{DOMAIN}", remote_member):
        srv.cli("list", "subscribe", name, m)
    assert sorted(members(srv, name)) == sorted([f"{m1}@{DOMAIN}", f"{m2}@{DOMAIN}", remote_member.lower()])

    pdom, psink = env.remote(sink_factory, "poster")
    poster = f"writer@{pdom}"
    token = uniq("post-")
    qid = srv.send(poster, [f"{name}@{DOMAIN}"], simple_message(token, subject="Agenda", sender=poster, to=f"{name}@{DOMAIN}"))

    for user in (m1, m2):
        raw = srv.wait_token(user, token.encode())
        msg = headers_of(raw)
        assert_list_headers(msg, name, prefix, token)
        assert f"{name}@{DOMAIN}".lower() in (msg["Reply-To"] or "").lower(), f"--reply-to list: {msg['Reply-To']!r}"
        assert f"this is {token}." in raw.decode(errors="replace"), "the body must be delivered intact"
        rp = msg.get_all("Return-Path") or []
        if rp:
            assert rp[-1].strip("<> ").lower() == f"{name}-bounces@{DOMAIN}".lower(), f"Return-Path: {rp}"

    [tx] = rsink.wait_token(token)
    assert tx.accepted
    assert tx.mail_from.lower() == f"{name}-bounces@{DOMAIN}".lower(), f"envelope sender at the remote member: {tx.mail_from!r}"
    assert [r.lower() for r in tx.rcpts] == [remote_member.lower()], tx.rcpts
    assert_list_headers(headers_of(tx.data), name, prefix, token)

    # One copy each, and nothing for the poster (not a member).
    wait_until(lambda: queue_line(srv, qid) is None, 30, f"{qid} gone from the queue")
    for user in (m1, m2):
        assert len([m for m in srv.messages(user) if token.encode() in m]) == 1, f"{user} got more than one copy"
    assert len(rsink.with_token(token)) == 1
    assert not psink.with_token(token), "the poster got something back"


# --------------------------------------------------------------------------
# requests by mail


def test_subscribe_by_mail_with_confirmation(env, sink_factory):
    srv = env.srv
    name = uniq("club")
    srv.cli("list", "create", name)
    rdom, rsink = env.remote(sink_factory, "joiner")
    requester = f"{uniq('joe')}@{rdom}"
    request = f"{name}-request@{DOMAIN}"

    srv.send(requester, [request], request_mail(requester, request, "subscribe", "please add me\r\n"))
    tx, conf = wait_service_mail(rsink, requester, r"confirm [a-z0-9]+")
    assert_from_request_address(tx, conf, name)
    subject = " ".join(str(conf["Subject"]).split())
    m = re.search(r"confirm ([a-z0-9]{8,})", subject)
    assert m, subject
    token = m.group(1)
    assert requester.lower() not in members(srv, name), "subscribed before the confirmation"

    # A plain reply (the mail program's "Re: <subject>") confirms.
    srv.send(requester, [request], request_mail(requester, request, f"Re: {subject}", "yes\r\n", in_reply_to=conf["Message-ID"]))
    wait_members(srv, name, lambda ms: requester.lower() in ms, f"{requester} among the members of {name}")
    done_tx, done = wait_service_mail(rsink, requester, r"subscribed")
    assert_from_request_address(done_tx, done, name)
    assert token not in " ".join(str(done["Subject"]).split()), "the result mail reused the token"

    assert members(srv, name) == [requester.lower()], "exactly the requester was subscribed"


def test_unsubscribe_by_mail(env, sink_factory):
    srv = env.srv
    name = uniq("club")
    srv.cli("list", "create", name)
    rdom, rsink = env.remote(sink_factory, "leaver")
    member = f"{uniq('ann')}@{rdom}"
    stays, _ = srv.add_user(uniq("stay"))
    srv.cli("list", "subscribe", name, member)
    srv.cli("list", "subscribe", name, stays)
    request = f"{name}-request@{DOMAIN}"

    # The command as the first line of the body.
    srv.send(member, [request], request_mail(member, request, "a request", "unsubscribe\r\nthanks\r\n"))
    tx, conf = wait_service_mail(rsink, member, r"confirm [a-z0-9]+")
    assert_from_request_address(tx, conf, name)
    subject = " ".join(str(conf["Subject"]).split())
    assert "unsubscribe" in subject.lower(), subject
    assert member.lower() in members(srv, name), "unsubscribed before the confirmation"

    srv.send(member, [request], request_mail(member, request, f"Re: {subject}", "confirmed\r\n", in_reply_to=conf["Message-ID"]))
    wait_members(srv, name, lambda ms: member.lower() not in ms, f"{member} gone from the members of {name}")
    wait_service_mail(rsink, member, r"unsubscribed")
    assert members(srv, name) == [f"{stays}@{DOMAIN}".lower()], "only the requester may leave"


# --------------------------------------------------------------------------
# who may post


def test_non_member_post_to_members_only_list_refused_at_rcpt(env, sink_factory):
    srv = env.srv
    name = uniq("closed")
    member, _ = srv.add_user(uniq("in"))
    srv.cli("list", "create", name, "--posting", "members")
    srv.cli("list", "subscribe", name, member)
    sdom, _ = env.remote(sink_factory, "stranger")
    stranger = f"nobody@{sdom}"
    token = uniq("refused-")
    with srv.smtp() as s:
        code, resp = s.mail(stranger)
        assert code == 250, (code, resp)
        code, resp = s.rcpt(f"{name}@{DOMAIN}")
        assert code == 550 and resp.startswith(b"5.7.1"), f"a non-member post must be refused with 550 5.7.1: {code} {resp!r}"
        s.rset()
        # A member may post (the same session, so the refusal was about the sender).
        code, resp = s.mail(f"{member}@{DOMAIN}")
        assert code == 250, (code, resp)
        code, resp = s.rcpt(f"{name}@{DOMAIN}")
        assert code == 250, f"a member's post must be accepted: {code} {resp!r}"
        code, resp = s.data(simple_message(token, sender=f"{member}@{DOMAIN}", to=f"{name}@{DOMAIN}"))
        assert code == 250, (code, resp)
    raw = srv.wait_token(member, token.encode())
    assert f"<{name}.{DOMAIN}>".lower() in (headers_of(raw)["List-Id"] or "").lower()


def test_moderated_post_held_then_approved_by_owner(env, sink_factory):
    srv = env.srv
    name = uniq("mod")
    owner, _ = srv.add_user(uniq("owner"))
    m1, _ = srv.add_user(uniq("m"))
    m2, _ = srv.add_user(uniq("m"))
    srv.cli("list", "create", name, "--owner", owner, "--posting", "moderated")
    srv.cli("list", "subscribe", name, m1)
    srv.cli("list", "subscribe", name, m2)
    pdom, psink = env.remote(sink_factory, "modposter")
    poster = f"writer@{pdom}"
    token = uniq("held-")
    qid = srv.send(poster, [f"{name}@{DOMAIN}"], simple_message(token, subject="Please post", sender=poster, to=f"{name}@{DOMAIN}"))

    # The owner is asked (the request quotes the post's subject).
    raw = srv.wait_token(owner, token.encode())
    req = headers_of(raw)
    req_subject = " ".join(str(req["Subject"]).split())
    m = re.search(r"moderate ([a-z0-9]{8,})", req_subject)
    assert m, f"the moderation request must carry its token in the Subject: {req_subject!r}"
    assert f"{name}-request@{DOMAIN}".lower() in (req["Reply-To"] or req["From"] or "").lower(), dict(req)

    # The post waits in the queue, held; no member has it.
    line = wait_until(lambda: (lambda l: l if l and "held" in l.lower() else None)(queue_line(srv, qid)), 15,
                      f"{qid} held in `queue list`")
    assert "held" in line.lower(), line
    for user in (m1, m2):
        assert not [x for x in srv.messages(user) if token.encode() in x], f"{user} got a post waiting for approval"

    # The owner answers with a plain reply whose first line is "approve".
    request = f"{name}-request@{DOMAIN}"
    owner_addr = f"{owner}@{DOMAIN}"
    body = "approve\r\n\r\n> A post to the list is waiting for your approval\r\n"
    srv.send(owner_addr, [request], request_mail(owner_addr, request, f"Re: {req_subject}", body, in_reply_to=req["Message-ID"]))
    for user in (m1, m2):
        copy = headers_of(srv.wait_token(user, token.encode()))
        assert f"<{name}.{DOMAIN}>".lower() in (copy["List-Id"] or "").lower(), dict(copy)
        assert f"[{name}]" in " ".join(str(copy["Subject"]).split()), f"default prefix: {copy['Subject']!r}"
    wait_until(lambda: queue_line(srv, qid) is None, 30, f"the approved post {qid} gone from the queue")
    for user in (m1, m2):
        assert len([x for x in srv.messages(user) if token.encode() in x]) == 1
    assert not psink.with_token(token), "an approved post must not bounce to the poster"


def test_moderated_post_rejected_bounces_to_poster(env, sink_factory):
    srv = env.srv
    name = uniq("modrej")
    owner, _ = srv.add_user(uniq("owner"))
    m1, _ = srv.add_user(uniq("m"))
    srv.cli("list", "create", name, "--owner", owner, "--posting", "moderated")
    srv.cli("list", "subscribe", name, m1)
    pdom, psink = env.remote(sink_factory, "rejposter")
    poster = f"writer@{pdom}"
    token = uniq("rej-")
    qid = srv.send(poster, [f"{name}@{DOMAIN}"], simple_message(token, sender=poster, to=f"{name}@{DOMAIN}"))
    req = headers_of(srv.wait_token(owner, token.encode()))
    req_subject = " ".join(str(req["Subject"]).split())
    owner_addr = f"{owner}@{DOMAIN}"
    request = f"{name}-request@{DOMAIN}"
    srv.send(owner_addr, [request], request_mail(owner_addr, request, f"Re: {req_subject}", "reject\r\n", in_reply_to=req["Message-ID"]))
    [bounce] = psink.wait_token(token)
    assert bounce.mail_from == "" and bounce.rcpts == [poster], (bounce.mail_from, bounce.rcpts)
    report = headers_of(bounce.data)
    assert report.get_content_type() == "multipart/report", report.get_content_type()
    assert b"5.7.1" in bounce.data, "the rejection carries 5.7.1"
    wait_until(lambda: queue_line(srv, qid) is None, 30, f"the rejected post {qid} gone from the queue")
    assert not [x for x in srv.messages(m1) if token.encode() in x], "a rejected post reached a member"


def test_moderation_answer_from_someone_else_is_ignored(env, sink_factory):
    srv = env.srv
    name = uniq("modfake")
    owner, _ = srv.add_user(uniq("owner"))
    m1, _ = srv.add_user(uniq("m"))
    srv.cli("list", "create", name, "--owner", owner, "--posting", "moderated")
    srv.cli("list", "subscribe", name, m1)
    pdom, _ = env.remote(sink_factory, "fakeposter")
    poster = f"writer@{pdom}"
    token = uniq("fake-")
    qid = srv.send(poster, [f"{name}@{DOMAIN}"], simple_message(token, sender=poster, to=f"{name}@{DOMAIN}"))
    req = headers_of(srv.wait_token(owner, token.encode()))
    req_subject = " ".join(str(req["Subject"]).split())
    request = f"{name}-request@{DOMAIN}"
    # The poster learns the token somehow and approves their own post.
    aq = srv.send(poster, [request], request_mail(poster, request, f"Re: {req_subject}", "approve\r\n"))
    srv.wait_log("delivery", aq)
    wait_until(lambda: "not from the owner" in "\n".join(l for l in srv.log("delivery").splitlines() if aq in l), 15,
               f"the answer {aq} ignored as not from the owner")
    line = queue_line(srv, qid)
    assert line and "held" in line.lower(), f"the post must stay held: {line!r}"
    assert not [x for x in srv.messages(m1) if token.encode() in x]
    # The owner's own answer still works afterwards (the token was not used up).
    owner_addr = f"{owner}@{DOMAIN}"
    srv.send(owner_addr, [request], request_mail(owner_addr, request, f"Re: {req_subject}", "approve\r\n"))
    srv.wait_token(m1, token.encode())


def test_help_request(env, sink_factory):
    srv = env.srv
    name = uniq("helpme")
    srv.cli("list", "create", name)
    rdom, rsink = env.remote(sink_factory, "helpasker")
    asker = f"curious@{rdom}"
    request = f"{name}-request@{DOMAIN}"
    srv.send(asker, [request], request_mail(asker, request, "help", "\r\n"))
    tx, msg = wait_service_mail(rsink, asker, r"help")
    assert_from_request_address(tx, msg, name)
    body = msg.get_payload(decode=True).decode(errors="replace")
    assert "subscribe" in body and f"{name}-request@{DOMAIN}" in body, body
    assert members(srv, name) == []


def test_list_id_loop_is_not_resent(env, sink_factory):
    """A post that already carries this list's List-Id (it came back to the
    list, e.g. through a member's forward) is not sent out again."""
    srv = env.srv
    name = uniq("loopy")
    m1, _ = srv.add_user(uniq("m"))
    srv.cli("list", "create", name, "--posting", "anyone")
    srv.cli("list", "subscribe", name, m1)
    pdom, _ = env.remote(sink_factory, "looper")
    poster = f"writer@{pdom}"
    token = uniq("again-")
    data = simple_message(token, sender=poster, to=f"{name}@{DOMAIN}")
    data = f"List-Id: <{name}.{DOMAIN}>\r\n".encode() + data
    qid = srv.send(poster, [f"{name}@{DOMAIN}"], data)
    wait_until(lambda: [l for l in srv.log("delivery").splitlines() if qid in l and "loop" in l.lower()], 15,
               f"the loop decision for {qid} in delivery.log")
    wait_until(lambda: queue_line(srv, qid) is None, 30, f"{qid} gone from the queue")
    # A normal post afterwards reaches the member, the looping one never did.
    t2 = uniq("fresh-")
    srv.send(poster, [f"{name}@{DOMAIN}"], simple_message(t2, sender=poster, to=f"{name}@{DOMAIN}"))
    srv.wait_token(m1, t2.encode())
    assert not [x for x in srv.messages(m1) if token.encode() in x], "a post carrying the list's own List-Id was re-sent"


def test_remote_members_of_one_domain_share_a_transaction(env, sink_factory):
    srv = env.srv
    name = uniq("grp")
    rdom, rsink = env.remote(sink_factory, "grouped")
    a, b = f"one@{rdom}", f"two@{rdom}"
    srv.cli("list", "create", name, "--posting", "anyone", "--reply-to", "sender", "--prefix", "")
    srv.cli("list", "subscribe", name, a)
    srv.cli("list", "subscribe", name, b)
    pdom, _ = env.remote(sink_factory, "grpposter")
    poster = f"writer@{pdom}"
    token = uniq("grp-")
    data = simple_message(token, subject="Plain", sender=poster, to=f"{name}@{DOMAIN}")
    data = f"Reply-To: <answers@{pdom}>\r\n".encode() + data
    srv.send(poster, [f"{name}@{DOMAIN}"], data)
    [tx] = rsink.wait_token(token)
    assert sorted(tx.rcpts) == sorted([a, b]), f"one transaction per domain for the remote members: {tx.rcpts}"
    msg = headers_of(tx.data)
    assert (msg.get_all("Reply-To") or []) == [f"<answers@{pdom}>"], f"--reply-to sender keeps the poster's Reply-To: {msg.get_all('Reply-To')}"
    assert " ".join(str(msg["Subject"]).split()) == f"Plain {token}", f"--prefix '' adds none: {msg['Subject']!r}"
    assert f"<{name}.{DOMAIN}>".lower() in (msg["List-Id"] or "").lower()


def test_list_max_size(env, sink_factory):
    srv = env.srv
    name = uniq("small")
    m1, _ = srv.add_user(uniq("m"))
    srv.cli("list", "create", name, "--posting", "anyone", "--max-size", "1000")
    srv.cli("list", "subscribe", name, m1)
    pdom, psink = env.remote(sink_factory, "bigposter")
    poster = f"writer@{pdom}"
    token = uniq("big-")
    data = simple_message(token, sender=poster, to=f"{name}@{DOMAIN}", body=(b"x" * 70 + b"\r\n") * 40)
    with srv.smtp() as s:
        assert s.mail(poster)[0] == 250
        assert s.rcpt(f"{name}@{DOMAIN}")[0] == 250
        code, resp = s.data(data)
    if code == 250:
        # Accepted: then the list refuses it at delivery, with a bounce.
        [bounce] = psink.wait_token(token)
        assert b"5.3.4" in bounce.data, bounce.data[:2000]
    else:
        assert code == 552 and resp.startswith(b"5.3.4"), f"a post above --max-size: {code} {resp!r}"
    small = uniq("small-")
    srv.send(poster, [f"{name}@{DOMAIN}"], simple_message(small, sender=poster, to=f"{name}@{DOMAIN}"))
    srv.wait_token(m1, small.encode())
    assert not [x for x in srv.messages(m1) if token.encode() in x], "a post above --max-size reached a member"
