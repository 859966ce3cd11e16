"""Load generator: SMTP ingest and submission sessions, POP3 retrieval and login loops.

Plain sockets (Python 3 stdlib only), so the client's own cost per message is
small and identical for every server under test. Every wait is bounded by a
socket timeout and every loop by a count or a deadline.
"""

import base64
import os
import socket
import threading
import time

SOCKET_TIMEOUT = 30.0
MAX_REPLY_LINES = 100
MAX_LINE = 8192
MAX_ERRORS_PER_SESSION = 10


class ProtocolError(Exception):
    """The server answered something the load generator cannot go on from."""


class LineReader:
    """Buffered reader over a socket, bounded line length."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ProtocolError("connection closed by server")
        self.buf += chunk

    def readline(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return line
            if len(self.buf) > MAX_LINE:
                raise ProtocolError("reply line too long")
            self._fill()

    def read_until(self, terminator, limit):
        """Reads until `terminator` (inclusive); returns the bytes before it."""
        start = 0
        while True:
            i = self.buf.find(terminator, start)
            if i >= 0:
                data = bytes(self.buf[:i])
                del self.buf[: i + len(terminator)]
                return data
            if len(self.buf) > limit:
                raise ProtocolError("response larger than %d bytes" % limit)
            start = max(0, len(self.buf) - len(terminator) + 1)
            self._fill()


def smtp_reply(reader):
    """Reads one (possibly multi-line) SMTP reply; returns (code, text)."""
    lines = []
    for _ in range(MAX_REPLY_LINES):
        line = reader.readline()
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            break
    else:
        raise ProtocolError("SMTP reply with too many lines")
    first = lines[0]
    try:
        code = int(first[:3])
    except ValueError:
        raise ProtocolError("bad SMTP reply %r" % first[:80])
    return code, b"".join(lines)


def make_body(size):
    """A text body of about `size` bytes: 76-character lines, CRLF, some
    starting with a dot so that dot-stuffing is exercised."""
    line_len = 78  # 76 + CRLF
    lines = []
    total = 0
    i = 0
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    while total < size:
        if i % 50 == 7:
            core = b"." + (alphabet * 2)[i % 64 : i % 64 + 75]
        else:
            core = (alphabet * 2)[i % 64 : i % 64 + 64] + b"%012d" % i
        lines.append(core + b"\r\n")
        total += line_len
        i += 1
    return b"".join(lines)


def dot_stuff(data):
    out = data.replace(b"\r\n.", b"\r\n..")
    if out.startswith(b"."):
        out = b"." + out
    return out


def make_message(rcpt, seq, tag, body, sender="sender@client.test"):
    """One complete message (headers + body), dot-stuffed, ending in CRLF."""
    hdr = (
        "From: Bench Sender <%s>\r\n"
        "To: <%s>\r\n"
        "Subject: bench %s message %d\r\n"
        "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
        "Message-ID: <%s.%d.%d@client.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n" % (sender, rcpt, tag, seq, tag, seq, os.getpid())
    ).encode()
    return dot_stuff(hdr + body)


def _smtp_session(host, port, rcpt, msgs, result, deadline, auth=None,
                  sender="sender@client.test"):
    """One connection: EHLO, AUTH PLAIN when `auth` is (user, password),
    then each message with MAIL/RCPT/DATA pipelined."""
    errors = 0
    sent = 0
    with socket.create_connection((host, port), timeout=SOCKET_TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        r = LineReader(sock)
        code, text = smtp_reply(r)
        if code != 220:
            raise ProtocolError("greeting %r" % text[:200])
        sock.sendall(b"EHLO client.test\r\n")
        code, text = smtp_reply(r)
        if code != 250:
            raise ProtocolError("EHLO %r" % text[:200])
        pipelining = b"PIPELINING" in text.upper()
        if auth is not None:
            token = base64.b64encode(b"\0" + auth[0].encode() + b"\0" + auth[1].encode())
            sock.sendall(b"AUTH PLAIN " + token + b"\r\n")
            code, text = smtp_reply(r)
            if code != 235:
                raise ProtocolError("AUTH %r" % text[:200])
        envelope = (b"MAIL FROM:<" + sender.encode() + b">\r\nRCPT TO:<" + rcpt.encode()
                    + b">\r\nDATA\r\n")
        for msg in msgs:
            if time.monotonic() > deadline:
                raise ProtocolError("case deadline passed")
            if pipelining:
                sock.sendall(envelope)
                codes = [smtp_reply(r)[0] for _ in range(3)]
            else:
                codes = []
                for cmd in envelope.split(b"\r\n")[:3]:
                    sock.sendall(cmd + b"\r\n")
                    codes.append(smtp_reply(r)[0])
                    if codes[-1] >= 400:
                        break
            if codes[:3] != [250, 250, 354]:
                errors += 1
                if codes and codes[-1] == 354:
                    sock.sendall(b".\r\n")
                    smtp_reply(r)
                sock.sendall(b"RSET\r\n")
                smtp_reply(r)
                if errors >= MAX_ERRORS_PER_SESSION:
                    raise ProtocolError("too many refused messages: %r" % codes)
                continue
            sock.sendall(msg + b".\r\n")
            code, text = smtp_reply(r)
            if code != 250:
                errors += 1
                if errors >= MAX_ERRORS_PER_SESSION:
                    raise ProtocolError("too many refused messages: %r" % text[:200])
                continue
            sent += 1
            result["last_ok"] = time.monotonic()
        sock.sendall(b"QUIT\r\n")
        try:
            smtp_reply(r)
        except (ProtocolError, OSError):
            pass
    result["accepted"] += sent
    result["refused"] += errors


def smtp_ingest(host, port, rcpt, count, sessions, size, per_conn, tag, timeout, auth=None,
                sender="sender@client.test"):
    """Sends `count` messages of about `size` bytes to `rcpt` over `sessions`
    concurrent workers, each opening a new connection every `per_conn`
    messages (with AUTH PLAIN on each when `auth` is (user, password)).
    Returns a dict with t_start, t_accepted, accepted, refused, failures
    (exception texts) and client CPU seconds."""
    body = make_body(size)
    # Messages built before timing starts: the client does only I/O while timed.
    msgs = [make_message(rcpt, i, tag, body, sender) for i in range(count)]
    shares = [msgs[i::sessions] for i in range(sessions)]
    deadline = time.monotonic() + timeout
    results = []
    failures = []
    lock = threading.Lock()

    def worker(share):
        res = {"accepted": 0, "refused": 0, "last_ok": 0.0}
        try:
            for j in range(0, len(share), per_conn):
                _smtp_session(host, port, rcpt, share[j : j + per_conn], res, deadline, auth, sender)
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
        failures.append("%d session(s) still running at the deadline" % alive)
    with lock:
        accepted = sum(r["accepted"] for r in results)
        refused = sum(r["refused"] for r in results)
        last = max([r["last_ok"] for r in results] + [t_start])
    return {
        "t_start": t_start,
        "t_accepted": last,
        "accepted": accepted,
        "refused": refused,
        "failures": failures,
        "client_cpu_s": time.process_time() - cpu0,
    }


def count_files(directory):
    try:
        with os.scandir(directory) as it:
            return sum(1 for _ in it)
    except FileNotFoundError:
        return 0


def empty_dir(directory, limit):
    """Removes up to `limit` plain files from `directory`; returns how many."""
    removed = 0
    try:
        with os.scandir(directory) as it:
            for entry in it:
                if removed >= limit:
                    break
                if entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                    removed += 1
    except FileNotFoundError:
        pass
    return removed


def wait_for_files(directory, expected, timeout, interval=0.01):
    """Polls until `directory` holds at least `expected` entries; returns the
    time it did (monotonic) or None at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        n = count_files(directory)
        now = time.monotonic()
        if n >= expected:
            return now
        if now > deadline:
            return None
        time.sleep(interval)


def _pop_ok(reader, what):
    line = reader.readline()
    if not line.startswith(b"+OK"):
        raise ProtocolError("%s: %r" % (what, line[:200]))
    return line


def pop3_retrieve_all(host, port, user, password, expected, timeout):
    """One POP3 session: USER/PASS, then LIST and RETR of every message, then
    QUIT (no DELE). Returns login and retrieval seconds and what was read."""
    max_msg = 64 * 1024 * 1024
    deadline = time.monotonic() + timeout
    t0 = time.monotonic()
    with socket.create_connection((host, port), timeout=SOCKET_TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        r = LineReader(sock)
        _pop_ok(r, "greeting")
        sock.sendall(b"USER " + user.encode() + b"\r\n")
        _pop_ok(r, "USER")
        sock.sendall(b"PASS " + password.encode() + b"\r\n")
        _pop_ok(r, "PASS")
        t1 = time.monotonic()
        sock.sendall(b"LIST\r\n")
        _pop_ok(r, "LIST")
        listing = r.read_until(b"\r\n.\r\n", 16 * 1024 * 1024)
        entries = []
        for ln in listing.split(b"\r\n"):
            if not ln:
                continue
            num, size = ln.split()[:2]
            entries.append((int(num), int(size)))
        if len(entries) > 1_000_000:
            raise ProtocolError("implausible LIST")
        got_bytes = 0
        size_mismatch = 0
        for num, size in entries:
            if time.monotonic() > deadline:
                raise ProtocolError("POP3 deadline passed")
            sock.sendall(b"RETR %d\r\n" % num)
            _pop_ok(r, "RETR %d" % num)
            data = r.read_until(b"\r\n.\r\n", max_msg)
            # Undo dot-stuffing to compare with the size LIST announced.
            data = data.replace(b"\r\n..", b"\r\n.")
            if data.startswith(b".."):
                data = data[1:]
            n = len(data) + 2  # the final CRLF is part of the message
            got_bytes += n
            if n != size:
                size_mismatch += 1
        t2 = time.monotonic()
        sock.sendall(b"QUIT\r\n")
        try:
            r.readline()
        except (ProtocolError, OSError):
            pass
    return {
        "login_s": t1 - t0,
        "retrieve_s": t2 - t1,
        "messages": len(entries),
        "bytes": got_bytes,
        "size_mismatch": size_mismatch,
        "complete": len(entries) == expected,
    }


def _pop3_login_once(host, port, user, password):
    """connect, greeting, USER, PASS, QUIT; returns True when PASS got +OK."""
    with socket.create_connection((host, port), timeout=SOCKET_TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        r = LineReader(sock)
        _pop_ok(r, "greeting")
        sock.sendall(b"USER " + user.encode() + b"\r\n")
        _pop_ok(r, "USER")
        sock.sendall(b"PASS " + password.encode() + b"\r\n")
        ok = r.readline().startswith(b"+OK")
        sock.sendall(b"QUIT\r\n")
        try:
            r.readline()
        except (ProtocolError, OSError):
            pass
    return ok


def pop3_logins(host, port, shares, password, timeout):
    """Runs one worker per entry of `shares` (a list of user names, one login
    each, in order), all at once: connect + USER/PASS + QUIT per login.
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
                if _pop3_login_once(host, port, user, password):
                    res["ok"] += 1
                    res["last"] = time.monotonic()
                else:
                    res["refused"] += 1
                    if res["refused"] >= MAX_ERRORS_PER_SESSION:
                        raise ProtocolError("too many refused logins (last: %s)" % user)
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
