"""Reloading the configuration without a restart (SIGHUP, the same path the
web admin's settings pages use): a domain added to "Accept Mail For" is
accepted by the receiver and delivered locally by the delivery agent; a
broken file keeps the running configuration; a setting that needs a restart
is named in the log."""

from __future__ import annotations

import signal
from support import DOMAIN, wait_until

NEW_DOMAIN = "reloaded.example"


def refused(srv, rcpt: str) -> bool:
    with srv.smtp() as s:
        s.ehlo("client.test.example")
        s.mail(f"sender@{DOMAIN}")
        code, _ = s.rcpt(rcpt)
        return code >= 500


def test_sighup_applies_a_new_domain_to_receiver_and_delivery(postamt_factory):
    srv = postamt_factory()
    user, _ = srv.add_user()
    rcpt = f"{user}@{NEW_DOMAIN}"
    assert refused(srv, rcpt), "a domain not yet configured must be refused (no relay)"

    srv.config["domains"] = [DOMAIN, NEW_DOMAIN]
    srv.rewrite_config()
    srv.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: not refused(srv, rcpt), 15, "the new domain accepted after SIGHUP")

    srv.send(f"sender@{DOMAIN}", [rcpt], b"Subject: after reload\r\n\r\nlocal now\r\n")
    got = srv.wait_messages(user, 1)
    assert b"local now" in got[0], "mail for the new domain lands in the local mailbox"


def test_a_broken_file_keeps_the_running_configuration(postamt_factory):
    srv = postamt_factory()
    user, _ = srv.add_user()
    srv.config_path.write_text(srv.config_path.read_text() + "\nthis is not toml = = =\n")
    srv.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "the running configuration stays" in log_text(srv), 15,
               "the refused reload in the log")
    # Still serving, with the old settings.
    srv.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], b"Subject: still\r\n\r\nserving\r\n")
    srv.wait_messages(user, 1)
    assert refused(srv, f"{user}@{NEW_DOMAIN}")


def test_a_setting_needing_a_restart_is_named(postamt_factory):
    srv = postamt_factory()
    srv.config.setdefault("delivery", {})["smarthost"] = "127.0.0.1:2"
    srv.rewrite_config()
    srv.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "restart is needed for" in log_text(srv) and "delivery" in log_text(srv), 15,
               "the restart notice in the log")


def log_text(srv) -> str:
    """What the server wrote: its stderr and its log files."""
    text = srv.stderr_tail(50000)
    logs = srv.root / "data" / "logs"
    if logs.is_dir():
        for f in logs.iterdir():
            try:
                text += f.read_text(errors="replace")
            except OSError:
                pass
    return text
