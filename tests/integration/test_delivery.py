"""Local delivery failures: retried on the schedule (visible in `queue
list`), then bounced to the sender as an RFC 3464 multipart/report, with a
copy to the postmaster when `copy_local_failures_to_postmaster` is on."""

from __future__ import annotations

import email
import mailbox
import re
import time
from email.message import Message

from support import DOMAIN, HOSTNAME, simple_message, uniq, wait_until

RETRY = {"delivery": {"retry_intervals": ["1s"], "give_up_after": "4s", "copy_local_failures_to_postmaster": True}}


def delivery_status_blocks(report: Message) -> list[Message]:
    parts = [p for p in report.walk() if p.get_content_type() == "message/delivery-status"]
    assert len(parts) == 1, f"expected one message/delivery-status part, got {[p.get_content_type() for p in report.walk()]}"
    blocks = parts[0].get_payload()
    assert isinstance(blocks, list) and len(blocks) >= 2, f"delivery-status must hold per-message and per-recipient fields: {blocks!r}"
    return blocks


def test_failed_local_delivery_is_retried_then_bounced(postamt_factory):
    srv = postamt_factory(RETRY)
    alice, _ = srv.add_user(uniq("alice"))
    srv.add_user("postmaster")
    broken, _ = srv.add_user(uniq("broken"))
    # The mailbox path is a regular file: delivery fails even as root.
    mbox = srv.mailbox_path(broken)
    mbox.parent.mkdir(parents=True, exist_ok=True)
    mbox.write_text("not a maildir\n")

    token = uniq("fail-")
    original = simple_message(token, sender=f"{alice}@{DOMAIN}", to=f"{broken}@{DOMAIN}")
    t0 = time.monotonic()
    qid = srv.send(f"{alice}@{DOMAIN}", [f"{broken}@{DOMAIN}"], original)

    # Retried, not bounced at once: still queued after the first attempt.
    def listed():
        return next((l for l in srv.queue_list().splitlines() if qid in l), None)

    assert wait_until(listed, 3, f"{qid} in `queue list`")
    while time.monotonic() - t0 < 1.5:
        time.sleep(0.1)
    line = listed()
    assert line, (
        f"{qid} left the queue within 1.5 s although give_up_after is 4 s: the failure was not retried\n"
        f"queue list: {srv.queue_list()}\nalice: {srv.messages(alice)}"
    )

    bounce = srv.wait_messages(alice, 1, timeout=30)[0]
    elapsed = time.monotonic() - t0
    assert elapsed >= 3.0, f"bounced after {elapsed:.1f}s, before give_up_after (4s)"
    wait_until(lambda: listed() is None, 15, f"{qid} gone from the queue after the bounce")

    msg = email.message_from_bytes(bounce)
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert (msg.get_param("report-type") or "").lower() == "delivery-status", msg["Content-Type"]
    assert msg.get_param("boundary"), "multipart/report without a boundary"
    blocks = delivery_status_blocks(msg)
    per_message, per_recipient = blocks[0], blocks[1:]
    assert per_message["Reporting-MTA"] and HOSTNAME in per_message["Reporting-MTA"], dict(per_message)
    rcpt = next((b for b in per_recipient if broken in (b["Final-Recipient"] or "")), None)
    assert rcpt is not None, f"no per-recipient block for {broken}: {[dict(b) for b in per_recipient]}"
    assert (rcpt["Action"] or "").strip().lower() == "failed", dict(rcpt)
    assert re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", (rcpt["Status"] or "").strip().split()[0] if rcpt["Status"] else ""), dict(rcpt)
    # The bounce is addressed to the sender and comes from the system.
    assert alice in (msg["To"] or ""), msg["To"]
    assert msg["From"], "bounce without From"
    # It says which message failed (its headers or the whole message).
    assert token.encode() in bounce, "the bounce does not include the original message or its headers"

    # The postmaster gets a copy naming the failed recipient.
    srv.wait_token("postmaster", broken.encode(), timeout=30)


def test_mailbox_template(postamt_factory, tmp_path):
    root = tmp_path / "boxes"
    srv = postamt_factory({"mailbox_template": f"{root}/%d/%u"})
    user, pw = srv.add_user()
    token = uniq("tmpl-")
    srv.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], simple_message(token, to=f"{user}@{DOMAIN}"))
    box = root / DOMAIN / user
    wait_until(lambda: (box / "new").is_dir() and any((box / "new").iterdir()), 30, f"a message in {box}/new")
    assert not srv.mailbox_path(user).exists(), "delivered to the default path despite mailbox_template"
    md = mailbox.Maildir(str(box), factory=None, create=False)
    assert [m for m in (md.get_bytes(k) for k in md.keys()) if token.encode() in m]
    p = srv.pop3(user, pw)
    try:
        assert p.stat()[0] == 1
    finally:
        p.quit()
