"""IMAP load generator for the bench's `imap` case: one SELECT + FETCH
session over a big mailbox, LOGIN/LOGOUT loops on fresh connections, a
set of authenticated idle connections held open, and the IDLE push
latency (one session in IDLE, messages delivered through the server's
own SMTP one at a time, time from the final `250` to `* n EXISTS`).

Plain sockets (Python 3 stdlib only), like loadgen.py, so the client costs
the same against every server. Responses are read with literals honoured
(`{n}` at the end of a line: n bytes of data follow), every read is bounded
by a socket timeout and a size limit, every loop by a count or a deadline.
"""

import random
import socket
import threading
import time

from loadgen import LineReader, ProtocolError, make_body, make_message, smtp_reply

SOCKET_TIMEOUT = 60.0
MAX_LITERAL = 64 * 1024 * 1024
MAX_RESPONSE_LINES = 10_000_000


def _connect(host, port):
    sock = socket.create_connection((host, port), timeout=SOCKET_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_response_line(reader):
    """One response line with its literals folded in (bytes, without the
    final CRLF); the literal data replaces nothing, it is appended."""
    line = reader.readline()
    parts = [line]
    while line.endswith(b"}\r\n"):
        start = line.rfind(b"{")
        if start < 0:
            break
        try:
            n = int(line[start + 1 : -3].rstrip(b"+"))
        except ValueError:
            break
        if n > MAX_LITERAL:
            raise ProtocolError("literal of %d bytes" % n)
        while len(reader.buf) < n:
            reader._fill()
        parts.append(bytes(reader.buf[:n]))
        del reader.buf[:n]
        line = reader.readline()
        parts.append(line)
    return b"".join(parts)


def command(sock, reader, tag, text, on_untagged=None):
    """Sends `tag text` and reads to the tagged reply; calls `on_untagged`
    with each untagged response. Returns the tagged line."""
    sock.sendall(tag + b" " + text + b"\r\n")
    for _ in range(MAX_RESPONSE_LINES):
        line = _read_response_line(reader)
        if line.startswith(tag + b" "):
            return line
        if on_untagged is not None and line.startswith(b"* "):
            on_untagged(line)
    raise ProtocolError("no tagged reply to %r" % text[:40])


def _ok(line, what):
    if b" OK" not in line[:12]:
        raise ProtocolError("%s: %r" % (what, line[:200]))


def login(host, port, user, password):
    """Connects, reads the greeting and logs in; returns (sock, reader)."""
    sock = _connect(host, port)
    try:
        reader = LineReader(sock)
        greeting = reader.readline()
        if not greeting.startswith(b"* OK"):
            raise ProtocolError("greeting: %r" % greeting[:200])
        line = command(sock, reader, b"a1", b"LOGIN %s %s" % (_quote(user), _quote(password)))
        _ok(line, "LOGIN")
        return sock, reader
    except BaseException:
        sock.close()
        raise


def _quote(s):
    return b'"' + s.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def logout(sock, reader):
    try:
        command(sock, reader, b"z9", b"LOGOUT")
    except (ProtocolError, OSError):
        pass
    finally:
        sock.close()


def fetch_session(host, port, user, password, expected, items=b"(FLAGS UID RFC822.SIZE ENVELOPE)"):
    """LOGIN, SELECT INBOX, FETCH 1:* `items`, LOGOUT. Returns login,
    select and fetch seconds, FETCH responses and bytes read."""
    t0 = time.monotonic()
    sock, reader = login(host, port, user, password)
    try:
        t1 = time.monotonic()
        exists = [0]

        def on_select(line):
            if line.endswith(b" EXISTS\r\n"):
                exists[0] = int(line.split()[1])

        _ok(command(sock, reader, b"a2", b"SELECT INBOX", on_select), "SELECT")
        t2 = time.monotonic()
        count = [0, 0]

        def on_fetch(line):
            if b" FETCH (" in line[:24]:
                count[0] += 1
                count[1] += len(line)

        _ok(command(sock, reader, b"a3", b"FETCH 1:* " + items, on_fetch), "FETCH")
        t3 = time.monotonic()
    finally:
        logout(sock, reader)
    return {
        "login_s": t1 - t0,
        "select_s": t2 - t1,
        "fetch_s": t3 - t2,
        "select_fetch_s": t3 - t1,
        "exists": exists[0],
        "fetched": count[0],
        "bytes": count[1],
        "complete": count[0] == expected and exists[0] == expected,
    }


def logins(host, port, shares, password, timeout):
    """One worker per entry of `shares` (user names, one login each, in
    order), all at once: connect + greeting + LOGIN + LOGOUT per login.
    Returns t_start, t_end, ok, refused, failures and client CPU seconds."""
    deadline = time.monotonic() + timeout
    results = []
    failures = []
    lock = threading.Lock()

    def worker(users):
        res = {"ok": 0, "refused": 0, "last": 0.0}
        try:
            for user in users:
                if time.monotonic() > deadline:
                    raise ProtocolError("case deadline passed")
                try:
                    sock, reader = login(host, port, user, password)
                except ProtocolError as e:
                    res["refused"] += 1
                    if res["refused"] >= 10:
                        raise ProtocolError("too many refused logins (last: %s: %s)" % (user, e))
                    continue
                res["ok"] += 1
                res["last"] = time.monotonic()
                logout(sock, reader)
        except (ProtocolError, OSError) as e:
            with lock:
                failures.append("%s: %s" % (type(e).__name__, e))
        with lock:
            results.append(res)

    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in shares]
    cpu0 = time.process_time()
    t_start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + 5.0)
    alive = sum(1 for t in threads if t.is_alive())
    if alive:
        failures.append("%d worker(s) still running at the deadline" % alive)
    with lock:
        ok = sum(r["ok"] for r in results)
        refused = sum(r["refused"] for r in results)
        last = max([r["last"] for r in results] + [t_start])
    return {
        "t_start": t_start,
        "t_end": last,
        "ok": ok,
        "refused": refused,
        "failures": failures,
        "client_cpu_s": time.process_time() - cpu0,
    }


def open_idle(host, port, user, password, n, timeout):
    """Opens `n` connections and logs each in (one after the other); returns
    (connections, failures). The caller closes them with `close_all`."""
    deadline = time.monotonic() + timeout
    conns = []
    failures = []
    for _ in range(n):
        if time.monotonic() > deadline:
            failures.append("deadline passed after %d connections" % len(conns))
            break
        try:
            conns.append(login(host, port, user, password))
        except (ProtocolError, OSError) as e:
            failures.append("%s: %s" % (type(e).__name__, e))
            if len(failures) >= 5:
                break
    return conns, failures


def close_all(conns):
    for sock, reader in conns:
        logout(sock, reader)


class _SmtpSender:
    """One SMTP session kept open; `send` delivers one message without
    pipelining and returns the monotonic time at which the final `250`
    (the reply to the end of DATA) was read."""

    def __init__(self, host, port, rcpt, sender="sender@client.test"):
        self.rcpt = rcpt
        self.sender = sender
        self.sock = _connect(host, port)
        self.reader = LineReader(self.sock)
        try:
            self._expect(None, 220, "greeting")
            self._expect(b"EHLO client.test", 250, "EHLO")
        except BaseException:
            self.sock.close()
            raise

    def _expect(self, line, code, what):
        if line is not None:
            self.sock.sendall(line + b"\r\n")
        got, text = smtp_reply(self.reader)
        if got != code:
            raise ProtocolError("SMTP %s: %r" % (what, text[:200]))

    def send(self, msg):
        self._expect(b"MAIL FROM:<" + self.sender.encode() + b">", 250, "MAIL")
        self._expect(b"RCPT TO:<" + self.rcpt.encode() + b">", 250, "RCPT")
        self._expect(b"DATA", 354, "DATA")
        self.sock.sendall(msg + b".\r\n")
        self._expect(None, 250, "end of DATA")
        return time.monotonic()

    def close(self):
        try:
            self._expect(b"QUIT", 221, "QUIT")
        except (ProtocolError, OSError):
            pass
        finally:
            self.sock.close()


def _wait_exists(sock, reader, count, deadline):
    """Reads untagged lines (IDLE) until `* count EXISTS` (or more);
    returns the monotonic time it was read. Other lines (RECENT, FETCH,
    `* OK Still here`) are skipped."""
    for _ in range(MAX_RESPONSE_LINES):
        left = deadline - time.monotonic()
        if left <= 0:
            raise ProtocolError("no * %d EXISTS in time" % count)
        sock.settimeout(left)
        try:
            line = _read_response_line(reader)
        except socket.timeout:
            raise ProtocolError("no * %d EXISTS in time" % count) from None
        finally:
            sock.settimeout(SOCKET_TIMEOUT)
        parts = line.split()
        if (len(parts) == 3 and parts[0] == b"*" and parts[2] == b"EXISTS" and parts[1].isdigit()
                and int(parts[1]) >= count):
            return time.monotonic()
        if line.startswith(b"* BYE"):
            raise ProtocolError("BYE while idling: %r" % line[:200])
    raise ProtocolError("too many lines while idling")


def idle_push(imap_addr, smtp_addr, user, password, rcpt, repeats, timeout=30.0, seed=6):
    """IDLE push latency. Logs `user` in, SELECTs INBOX and enters IDLE;
    then `repeats` times: waits a random 0.2-0.7 s (so that deliveries
    fall on every phase of a server's polling), sends one small message to
    `rcpt` over one kept-open SMTP session, and times from the final `250`
    to the `* n EXISTS` line. Returns {"latencies_s": [...], "failures":
    [...]}; the caller delivered at least one message to the mailbox
    first, so INBOX exists on every server."""
    rng = random.Random(seed)
    body = make_body(1024)
    latencies, failures = [], []
    sock, reader = login(imap_addr[0], imap_addr[1], user, password)
    smtp = None
    try:
        exists = [0]

        def on_select(line):
            if line.endswith(b" EXISTS\r\n"):
                exists[0] = int(line.split()[1])

        _ok(command(sock, reader, b"a2", b"SELECT INBOX", on_select), "SELECT")
        sock.sendall(b"a3 IDLE\r\n")
        line = reader.readline()
        if not line.startswith(b"+"):
            raise ProtocolError("IDLE: %r" % line[:200])
        smtp = _SmtpSender(smtp_addr[0], smtp_addr[1], rcpt)
        count = exists[0]
        for i in range(repeats):
            time.sleep(rng.uniform(0.2, 0.7))
            msg = make_message(rcpt, i, "idle-push", body)
            try:
                t_250 = smtp.send(msg)
                count += 1
                t_exists = _wait_exists(sock, reader, count, t_250 + timeout)
            except (ProtocolError, OSError) as e:
                failures.append("%d: %s: %s" % (i, type(e).__name__, e))
                break
            latencies.append(t_exists - t_250)
        sock.sendall(b"DONE\r\n")
        for _ in range(MAX_RESPONSE_LINES):
            line = _read_response_line(reader)
            if line.startswith(b"a3 "):
                break
    except (ProtocolError, OSError) as e:
        failures.append("%s: %s" % (type(e).__name__, e))
    finally:
        if smtp is not None:
            smtp.close()
        logout(sock, reader)
    return {"latencies_s": latencies, "failures": failures}
