"""The CLI against a running server: check-config, user and alias CRUD,
and the queue verbs (list, show, hold, release, delete, flush)."""

from __future__ import annotations

import poplib
import re
import time

import pytest

from support import DOMAIN, base_config, run_postamt, simple_message, to_toml, uniq, wait_until


# --------------------------------------------------------------------------
# check-config


def check_config(binary, path):
    return run_postamt(binary, ["--config", str(path), "check-config"], check=False, cwd=path.parent)


def test_check_config_accepts_the_test_config(postamt_bin, tmp_path):
    path = tmp_path / "good.toml"
    path.write_text(to_toml(base_config(tmp_path / "data")))
    res = check_config(postamt_bin, path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_check_config_accepts_the_running_config(server):
    server.cli("check-config")


BAD_CONFIGS = {
    # name: (change to the valid base config, key the error must name)
    "unknown-key": (lambda c: c["limits"].update(max_recipient=5), "limits.max_recipient"),
    "unknown-top-level-key": (lambda c: c.update(hostnme="x.example"), "hostnme"),
    "wrong-type": (lambda c: c["limits"].update(max_recipients="many"), "limits.max_recipients"),
    "bad-duration": (lambda c: c["delivery"].update(give_up_after="5 parsecs"), "delivery.give_up_after"),
    "bad-listen-address": (lambda c: c["listen"].update(smtp=["not-an-address"]), "listen.smtp"),
    "bad-hostname": (lambda c: c.update(hostname="bad host name!"), "hostname"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_check_config_rejects_with_file_and_key(postamt_bin, tmp_path, case):
    change, key = BAD_CONFIGS[case]
    cfg = base_config(tmp_path / "data")
    change(cfg)
    # A neutral file name, so that naming the file never names the key too.
    path = tmp_path / f"cfg{sorted(BAD_CONFIGS).index(case)}.toml"
    path.write_text(to_toml(cfg))
    res = check_config(postamt_bin, path)
    out = res.stdout + res.stderr
    assert res.returncode == 1, f"exit {res.returncode} for a bad config ({case}); output: {out}"
    assert path.name in out, f"error does not name the file {path.name}: {out}"
    assert key in out, f"error does not name the key {key}: {out}"


def test_check_config_syntax_error_names_file(postamt_bin, tmp_path):
    path = tmp_path / "broken-syntax.toml"
    path.write_text('hostname = "mx.test.example"\ndomains = ["example.org"\n')
    res = check_config(postamt_bin, path)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert path.name in out, out


def test_check_config_missing_file(postamt_bin, tmp_path):
    path = tmp_path / "does-not-exist.toml"
    res = check_config(postamt_bin, path)
    assert res.returncode != 0
    assert path.name in res.stdout + res.stderr


# --------------------------------------------------------------------------
# users


def pop3_login_ok(server, user, password) -> bool:
    p = server.pop3()
    try:
        p.user(user)
        p.pass_(password)
        return True
    except poplib.error_proto:
        return False
    finally:
        try:
            p.quit()
        except (poplib.error_proto, OSError):
            p.close()


def listed_users(server) -> list[str]:
    return re.findall(r"[A-Za-z0-9._-]+", server.cli("user", "list").stdout)


def test_user_crud(server):
    name, pw = server.add_user()
    assert name in listed_users(server)
    # Adding it again fails.
    assert server.cli("user", "add", name, "--password-stdin", input="other\n", check=False).returncode != 0
    # The new user receives mail and can log in.
    with server.smtp() as s:
        assert s.mail(f"sender@{DOMAIN}")[0] == 250
        assert s.rcpt(f"{name}@{DOMAIN}")[0] == 250
    assert pop3_login_ok(server, name, pw)
    # passwd: the new password works, the old one no longer does.
    new_pw = pw + "-new"
    server.cli("user", "passwd", name, "--password-stdin", input=new_pw + "\n")
    assert pop3_login_ok(server, name, new_pw)
    assert not pop3_login_ok(server, name, pw)
    # del: gone from the list, and unknown at RCPT.
    server.cli("user", "del", name)
    assert name not in listed_users(server)
    with server.smtp() as s:
        assert s.mail(f"sender@{DOMAIN}")[0] == 250
        code, resp = s.rcpt(f"{name}@{DOMAIN}")
        assert code == 550, (code, resp)


def test_admin_flag_accepted(server):
    name, _ = server.add_user(admin=True)
    assert name in listed_users(server)


@pytest.mark.parametrize("bad", ["../evil", "a/b", "..", ".hidden", "", "x" * 300, "nul\x01"], ids=["dotdot-evil", "slash", "dotdot", "hidden", "empty", "long", "control"])
def test_user_names_that_could_escape_are_refused(server, bad):
    res = server.cli("user", "add", bad, "--password-stdin", input="secret-pw\n", check=False)
    assert res.returncode != 0, f"user name {bad!r} accepted"
    assert not (server.data_dir / "evil").exists()


# --------------------------------------------------------------------------
# aliases


def test_alias_crud(server):
    user, _ = server.add_user()
    other, _ = server.add_user()
    pattern = uniq("crud")
    server.cli("alias", "add", pattern, user, f"{other}@{DOMAIN}")
    listing = server.cli("alias", "list").stdout
    line = next((l for l in listing.splitlines() if pattern in l), "")
    assert user in line and other in line, f"alias list: {listing}"
    server.cli("alias", "del", pattern)
    assert pattern not in server.cli("alias", "list").stdout


# --------------------------------------------------------------------------
# queue


def queue_line(server, qid: str) -> str | None:
    return next((l for l in server.queue_list().splitlines() if qid in l), None)


def stuck_message(server) -> tuple[str, str, str]:
    """A queued message whose delivery fails for now: the user's mailbox
    path is a regular file (works as root too, unlike chmod). Returns
    (user, token, queue id)."""
    user, _ = server.add_user()
    mbox = server.mailbox_path(user)
    mbox.parent.mkdir(parents=True, exist_ok=True)
    mbox.write_text("not a maildir\n")
    token = uniq("stuck-")
    qid = server.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], simple_message(token, to=f"{user}@{DOMAIN}"))
    wait_until(lambda: queue_line(server, qid), 15, f"{qid} in `queue list`")
    # The first attempt has been made (and failed) once delivery.log names
    # the id; only then repairing the mailbox tests what `flush` does.
    server.wait_log("delivery", qid)
    return user, token, qid


def unblock(server, user: str) -> None:
    server.mailbox_path(user).unlink()


def test_queue_list_and_show(server):
    user, token, qid = stuck_message(server)
    line = queue_line(server, qid)
    assert f"sender@{DOMAIN}" in line and f"{user}@{DOMAIN}" in line, f"queue list line: {line!r}"
    # Why it waits: something beyond id, sender and recipient.
    rest = line.replace(qid, "").replace(f"sender@{DOMAIN}", "").replace(f"{user}@{DOMAIN}", "")
    assert re.search(r"[A-Za-z]{3,}", rest), f"queue list does not say why it waits: {line!r}"
    show = server.cli("queue", "show", qid).stdout
    assert qid in show and f"sender@{DOMAIN}" in show and f"{user}@{DOMAIN}" in show, show
    assert server.cli("queue", "show", "0" * 32, check=False).returncode != 0
    assert server.cli("queue", "show", "../../etc/passwd", check=False).returncode != 0
    server.cli("queue", "delete", qid)


def test_queue_flush_delivers_now(server):
    """The retry interval is 10 minutes: only `flush` explains a delivery
    within seconds once the mailbox is repaired."""
    user, token, qid = stuck_message(server)
    unblock(server, user)
    server.cli("queue", "flush")
    server.wait_token(user, token.encode(), timeout=20)
    wait_until(lambda: queue_line(server, qid) is None, 15, f"{qid} gone from the queue after delivery")


def test_queue_hold_and_release(server):
    user, token, qid = stuck_message(server)
    server.cli("queue", "hold", qid)
    line = queue_line(server, qid)
    assert line and re.search(r"hold|held", line, re.I), f"a held message should say so in `queue list`: {line!r}"
    unblock(server, user)
    server.cli("queue", "flush")
    # Held: a flush must not deliver it. A sentinel sent after the flush
    # arrives first; the held one must still be missing then.
    sentinel = uniq("sentinel-")
    server.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], simple_message(sentinel))
    server.wait_token(user, sentinel.encode())
    time.sleep(1.0)
    assert not [m for m in server.messages(user) if token.encode() in m], "a held message was delivered"
    assert queue_line(server, qid), "the held message left the queue"
    server.cli("queue", "release", qid)
    server.cli("queue", "flush")
    server.wait_token(user, token.encode(), timeout=20)


def test_queue_delete(server):
    user, token, qid = stuck_message(server)
    server.cli("queue", "delete", qid)
    assert queue_line(server, qid) is None
    assert server.cli("queue", "show", qid, check=False).returncode != 0
    unblock(server, user)
    server.cli("queue", "flush")
    sentinel = uniq("sentinel-")
    server.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], simple_message(sentinel))
    server.wait_token(user, sentinel.encode())
    time.sleep(1.0)
    assert not [m for m in server.messages(user) if token.encode() in m], "a deleted message was delivered"
