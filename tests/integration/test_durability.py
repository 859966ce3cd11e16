"""Nothing accepted is lost: 300 messages from 20 concurrent sessions,
`kill -9` right after the last 250, restart on the same data dir, and every
message reaches the mailbox (at least once, byte for byte)."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import threading
import time

from support import CLIENT_NAME, DOMAIN, send_on, simple_message, split_received, uniq, wait_until

SESSIONS = 20
PER_SESSION = 15
TOTAL = SESSIONS * PER_SESSION
TOKEN_RE = re.compile(rb"X-Token: (dur-[0-9]+-[0-9a-f]+)\r\n")


def test_kill9_after_last_250_loses_nothing(postamt_factory):
    srv = postamt_factory()
    user, _ = srv.add_user(uniq("dura"))
    rcpt = f"{user}@{DOMAIN}"
    run = uniq("")
    sent: dict[str, bytes] = {}
    for i in range(TOTAL):
        token = f"dur-{i}-{run}"
        sent[token] = simple_message(token, to=rcpt, body=f"message {i}\r\n".encode() + os.urandom(64).hex().encode() + b"\r\n")
    tokens = list(sent)

    lock = threading.Lock()
    accepted: list[str] = []
    errors: list[str] = []
    pid = srv.proc.pid
    killed = threading.Event()
    host, port = srv.smtp_addr

    def worker(k: int) -> None:
        mine = tokens[k * PER_SESSION:(k + 1) * PER_SESSION]
        try:
            s = smtplib.SMTP(host, port, local_hostname=CLIENT_NAME, timeout=60)
            s.ehlo()
            for token in mine:
                send_on(s, f"sender@{DOMAIN}", [rcpt], sent[token])
                with lock:
                    accepted.append(token)
                    if len(accepted) == TOTAL:
                        os.kill(pid, signal.SIGKILL)  # right after the last 250
                        killed.set()
            s.close()  # no QUIT: the server may already be gone
        except Exception as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append(f"session {k}: {e!r}")

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(SESSIONS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 150
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"sending did not finish in time; accepted {len(accepted)}"
    assert not errors, "\n".join(errors[:5])
    assert len(accepted) == TOTAL and killed.is_set()
    srv.kill9()  # reap the killed process
    before_restart = sum(
        len(os.listdir(srv.mailbox_path(user) / sub))
        for sub in ("new", "cur")
        if (srv.mailbox_path(user) / sub).is_dir()
    )
    print(f"{before_restart} of {TOTAL} messages were in the mailbox when the server was killed")

    srv.start()
    seen: dict[str, int] = {}
    checked: set[str] = set()
    md_new = srv.mailbox_path(user)

    def all_there():
        for sub in ("new", "cur"):
            d = md_new / sub
            if not d.is_dir():
                continue
            for name in os.listdir(d):
                if name in checked:
                    continue
                data = (d / name).read_bytes()
                found = TOKEN_RE.findall(data)
                assert len(found) == 1, f"{d / name} holds {len(found)} tokens: {data[:400]!r}"
                token = found[0].decode()
                split_received(data, sent[token])
                seen[token] = seen.get(token, 0) + 1
                checked.add(name)
        return len(seen) == TOTAL

    try:
        wait_until(all_there, 90, f"all {TOTAL} messages in {md_new}", interval=0.5)
    except AssertionError:
        missing = sorted(set(tokens) - set(seen))
        raise AssertionError(
            f"{len(missing)} of {TOTAL} accepted messages lost after kill -9 and restart, e.g. {missing[:5]}\n"
            f"queue list: {srv.queue_list()[:2000]}"
        ) from None
