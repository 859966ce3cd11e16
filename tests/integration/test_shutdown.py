"""Graceful shutdown on SIGTERM: idle sessions are told (SMTP 421) and
closed, the process exits 0 promptly, and the spool stays consistent."""

from __future__ import annotations

import socket

from support import DOMAIN, simple_message, uniq


def test_sigterm_with_idle_sessions(postamt_factory):
    srv = postamt_factory()
    smtp = srv.raw_smtp()  # greeted and EHLO'd, then idle
    pop = srv.raw_pop3()  # greeted, idle before login
    try:
        rc = srv.terminate(timeout=20)
        assert rc == 0, f"exit code {rc} after SIGTERM:\n{srv.stderr_tail()}"
        # The idle SMTP client was told before the close (bounded read).
        smtp.sock.settimeout(5)
        code, text = smtp.read_reply()
        assert code == 421, (code, text)
        # The POP3 connection is closed (maybe after a final -ERR line).
        pop.sock.settimeout(5)
        rest = b""
        for _ in range(100):
            chunk = pop.sock.recv(4096)
            if not chunk:
                break
            rest += chunk
        assert rest == b"" or rest.startswith((b"-ERR", b"+OK")), rest
    finally:
        smtp.close()
        pop.close()
    # Nobody listens any more.
    try:
        socket.create_connection(srv.smtp_addr, timeout=2).close()
        raise AssertionError("SMTP port still accepts connections after exit")
    except ConnectionRefusedError:
        pass


def test_message_accepted_before_sigterm_survives_restart(postamt_factory):
    srv = postamt_factory()
    user, _ = srv.add_user()
    token = uniq("term-")
    srv.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], simple_message(token, to=f"{user}@{DOMAIN}"))
    srv.stop()
    srv.start()
    srv.wait_token(user, token.encode())
