"""The web admin benchmark (issue 8): how fast the dashboard, the users page
and a message trace answer with 10,000 users, 1,000 aliases and 100,000
logged events.

Setup (untimed), in a temporary data dir:
1. A short real run: a few users made with `postamt user add`, a few
   aliases with `postamt alias add`, some mail sent over SMTP (local
   deliveries, an unknown recipient, a message to a user without a mailbox
   flag...) and a POP3 login, so the three logs hold real lines.
2. The server stops. The bulk goes into the SQLite directory directly
   (argon2 through the CLI would take an hour): 10,000 users carrying the
   argon2id hash of a real user, 1,000 aliases (a few with `*`).
3. 100,000 log events are written, made from the real lines as templates
   (each real message's lines form a story; a story is replayed with a new
   queue id, new addresses and time stamps spread over the last two days).
4. The server starts again; an admin logs in through the login form.

Timed: GET of `/` (dashboard), `/users` and `/trace` (by queue id and by
recipient address), each `REQUESTS` times on one keep-alive connection,
after a few untimed warm-up requests; median, p95 and max of the wall time
of each request (client side, over loopback). Target: under 50 ms each.

Postfix and Dovecot have no web admin: there is no comparison here.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import random
import re
import shutil
import signal
import smtplib
import sqlite3
import poplib
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

HOSTNAME = "mx.bench.test"
DOMAIN = "bench.test"
PASSWORD = "bench-password-1"
ADMIN = "benchadmin"
TARGET_MS = 50.0
FULL = {"users": 10_000, "aliases": 1_000, "events": 100_000, "requests": 20}
QUICK = {"users": 2_000, "aliases": 200, "events": 20_000, "requests": 10}
WARMUP = 3
QUEUE_ID_RE = re.compile(r"\b[0-9a-f]{32}\b")
STAMP_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)")


class AdminBenchError(Exception):
    pass


def _run(cmd, **kw):
    kw.setdefault("timeout", 120)
    kw.setdefault("capture_output", True)
    p = subprocess.run(cmd, **kw)
    if p.returncode != 0:
        raise AdminBenchError("`%s` exited %d: %s" % (" ".join(cmd[:6]), p.returncode,
                                                      (p.stderr or b"")[-500:].decode(errors="replace")))
    return p


class Server:
    """One `postamt serve` with an admin listener on loopback."""

    def __init__(self, workdir, binary, log):
        self.dir = os.path.join(workdir, "admin-bench")
        self.data = os.path.join(self.dir, "data")
        self.cfg = os.path.join(self.dir, "postamt.toml")
        self.binary = binary
        self.log = log
        self.proc = None
        self.out = None
        self.bound = {}

    def setup(self):
        os.makedirs(self.data, exist_ok=True)
        with open(self.cfg, "w") as f:
            f.write(
                'hostname = "%s"\ndomains = ["%s"]\ndata_dir = "%s"\n'
                '\n[listen]\nsmtp = ["127.0.0.1:0"]\npop3 = ["127.0.0.1:0"]\nadmin = ["127.0.0.1:0"]\n'
                "\n[sender_auth]\nverify = false\n"
                '\n[dns]\nnameservers = ["127.0.0.1:1"]\n'
                '\n[delivery]\nretry_intervals = ["10m"]\n'
                "\n[logging]\nreceiver = true\ndelivery = true\nretrieval = true\n"
                % (HOSTNAME, DOMAIN, self.data)
            )

    @property
    def log_dir(self):
        return os.path.join(self.data, "logs")

    @property
    def db(self):
        return os.path.join(self.data, "directory.sqlite")

    def cli(self, *args, stdin=None):
        return _run([self.binary, "--config", self.cfg, *args], input=stdin)

    def start(self):
        listeners = os.path.join(self.data, "run", "listeners.json")
        try:
            os.unlink(listeners)
        except FileNotFoundError:
            pass
        self.out = open(os.path.join(self.dir, "serve.out"), "ab")
        self.proc = subprocess.Popen([self.binary, "--config", self.cfg, "serve"], stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AdminBenchError("postamt serve exited with %s" % self.proc.returncode)
            try:
                with open(listeners) as f:
                    self.bound = json.load(f)
                if self.bound.get("admin") and self.bound.get("smtp"):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise AdminBenchError("postamt did not write %s within 60 s" % listeners)

    def addr(self, service):
        host, _, port = self.bound[service][0].rpartition(":")
        return host.strip("[]"), int(port)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(45)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if self.out:
            self.out.close()
            self.out = None


# --- 1. a short real run -------------------------------------------------------

REAL_USERS = ["alice", "bob", "carol"]


def real_run(srv, log):
    """Real lines in the three logs: local deliveries, an alias, a refused
    recipient, a POP3 login; returns the queue ids of the accepted mail."""
    srv.cli("user", "add", ADMIN, "--password-stdin", "--admin", stdin=(PASSWORD + "\n").encode())
    for u in REAL_USERS:
        srv.cli("user", "add", u, "--password-stdin", stdin=(PASSWORD + "\n").encode())
    srv.cli("alias", "add", "team", "alice", "bob")
    srv.cli("alias", "add", "info*", "carol")
    srv.start()
    host, port = srv.addr("smtp")
    sent = 0
    with smtplib.SMTP(host, port, local_hostname="client.bench.test", timeout=30) as s:
        for i, rcpts in enumerate([["alice@%s" % DOMAIN], ["team@%s" % DOMAIN],
                                   ["info-desk@%s" % DOMAIN, "bob@%s" % DOMAIN], ["carol@%s" % DOMAIN]]):
            msg = ("From: sender%d@example.net\r\nTo: %s\r\nSubject: bench %d\r\n"
                   "Message-ID: <bench-%d-%s@example.net>\r\n\r\nhello\r\n"
                   % (i, ", ".join(rcpts), i, i, uuid.uuid4().hex[:8]))
            s.sendmail("sender%d@example.net" % i, rcpts, msg.encode())
            sent += 1
        try:
            s.sendmail("x@example.net", ["nobody@%s" % DOMAIN], b"Subject: x\r\n\r\nx\r\n")
        except smtplib.SMTPRecipientsRefused:
            pass
    # Wait for the deliveries to be logged.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = _read(os.path.join(srv.log_dir, "delivery.log"))
        if text.count("status=sent") >= 5 or len(set(QUEUE_ID_RE.findall(text))) >= sent:
            break
        time.sleep(0.2)
    time.sleep(0.5)
    p = poplib.POP3(*srv.addr("pop3"), timeout=30)
    p.user("alice")
    p.pass_(PASSWORD)
    p.stat()
    p.quit()
    time.sleep(0.3)
    srv.stop()


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


# --- 2. bulk users and aliases -------------------------------------------------

def bulk_directory(srv, counts, log):
    con = sqlite3.connect(srv.db, timeout=30)
    try:
        row = con.execute("SELECT password_hash FROM users WHERE name_lc = ?", (REAL_USERS[0],)).fetchone()
        if not row or not str(row[0]).startswith("$argon2id$"):
            raise AdminBenchError("no argon2id hash to copy from %s" % REAL_USERS[0])
        phc = row[0]
        now = int(time.time())
        have = con.execute("SELECT COUNT(*) FROM users").fetchone()[0]
        users = [("user%05d" % i, "user%05d" % i, phc, 0, now - i) for i in range(counts["users"] - have)]
        con.executemany("INSERT INTO users (name_lc, name, password_hash, admin, created_at) VALUES (?,?,?,?,?)",
                        users)
        have = con.execute("SELECT COUNT(*) FROM aliases").fetchone()[0]
        aliases, targets = [], []
        for i in range(counts["aliases"] - have):
            wildcard = i % 50 == 0
            pattern = ("dept%03d-*" % i) if wildcard else ("alias%04d" % i)
            aliases.append((pattern, pattern, 1 if wildcard else 0, now))
            targets.append((pattern, 0, "user%05d" % (i * 7 % max(1, len(users)))))
            if i % 3 == 0:
                targets.append((pattern, 1, "ext%d@example.net" % i))
        con.executemany("INSERT INTO aliases (pattern_lc, pattern, wildcard, created_at) VALUES (?,?,?,?)", aliases)
        con.executemany("INSERT INTO alias_targets (pattern_lc, position, target) VALUES (?,?,?)", targets)
        con.commit()
        n_users = con.execute("SELECT COUNT(*) FROM users").fetchone()[0]
        n_aliases = con.execute("SELECT COUNT(*) FROM aliases").fetchone()[0]
    finally:
        con.close()
    return n_users, n_aliases


# --- 3. 100,000 log events -----------------------------------------------------

def stories(log_dir):
    """The real lines grouped per queue id, in time order:
    [[(log, line), ...], ...]; and the lines with no queue id per log."""
    by_id, other = {}, []
    for name in ("receiver", "delivery", "retrieval"):
        for line in _read(os.path.join(log_dir, name + ".log")).splitlines():
            if not STAMP_RE.match(line):
                continue
            ids = QUEUE_ID_RE.findall(line)
            if ids:
                by_id.setdefault(ids[0], []).append((name, line))
            elif (name == "retrieval" or " WARN " in line[:40] or "rejected" in line
                  or "postamt_receiver::connection" in line):
                other.append((name, line))
    out = []
    for qid, lines in by_id.items():
        lines.sort(key=lambda nl: STAMP_RE.match(nl[1]).group(1))
        out.append((qid, lines))
    return out, other


def _unix(stamp):
    """Unix seconds (with the fraction) of a `2026-01-02T03:04:05.123456Z` stamp."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    t = datetime.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() + (float("0." + frac) if frac else 0.0)


def _stamp(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_events(log_dir, total, users, log, seed=8):
    """Appends `total` events to the three logs, oldest first, made from the
    real stories; returns (events written, sample queue ids, sample
    recipient)."""
    real, other = stories(log_dir)
    if not real:
        raise AdminBenchError("the short run logged no message with a queue id")
    rnd = random.Random(seed)
    now = time.time()
    span = 2 * 86400.0
    # Messages first, then lines without an id (logins, refusals) in between.
    per_story = sum(len(lines) for _, lines in real) / len(real)
    n_msgs = int(total * 0.9 / per_story)
    starts = sorted(now - span + rnd.random() * (span - 120) for _ in range(n_msgs))
    out = {"receiver": [], "delivery": [], "retrieval": []}
    samples = []
    written = 0
    real_users = REAL_USERS + ["team", "info-desk", ADMIN]
    for k, t0 in enumerate(starts):
        qid_old, lines = real[k % len(real)]
        qid = uuid.uuid4().hex
        user = users[rnd.randrange(len(users))]
        base = _unix(STAMP_RE.match(lines[0][1]).group(1))
        for name, line in lines:
            stamp = STAMP_RE.match(line).group(1)
            offs = _unix(stamp) - base
            body = line[len(stamp):].replace(qid_old, qid)
            for ru in real_users:
                body = body.replace(ru + "@" + DOMAIN, user + "@" + DOMAIN)
                body = body.replace("dest=" + ru + " ", "dest=" + user + " ")
            body = re.sub(r"sender\d+@example\.net", "s%d@example.net" % rnd.randrange(5000), body)
            body = re.sub(r"bench-\d+-[0-9a-f]{8}@example\.net", "m%s@example.net" % qid[:12], body)
            out[name].append((t0 + offs, body))
            written += 1
        if k % max(1, n_msgs // 5) == 0:
            samples.append((qid, user + "@" + DOMAIN))
    templ = other or [("retrieval", real[0][1][0][1])]
    while written < total:
        name, line = templ[written % len(templ)]
        stamp = STAMP_RE.match(line).group(1)
        body = line[len(stamp):]
        for ru in real_users:
            body = body.replace(ru, users[rnd.randrange(len(users))])
        out[name].append((now - span + rnd.random() * span, body))
        written += 1
    for name, events in out.items():
        events.sort(key=lambda e: e[0])
        path = os.path.join(log_dir, name + ".log")
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            existing = f.read()
        with open(path, "w", encoding="utf-8") as f:
            for t, body in events:
                f.write(_stamp(t) + body + "\n")
            f.write(existing)  # the real run's lines are the newest
    return written, samples


# --- 4. timed requests -----------------------------------------------------------

class Client:
    """Keep-alive HTTP/1.1 to the admin listener with the session cookie."""

    def __init__(self, addr):
        self.addr = addr
        self.conn = http.client.HTTPConnection(*addr, timeout=60)
        self.cookie = None

    def request(self, method, path, body=None, headers=None):
        h = {"Host": "%s:%d" % self.addr}
        if self.cookie:
            h["Cookie"] = self.cookie
        h.update(headers or {})
        try:
            self.conn.request(method, path, body=body, headers=h)
            r = self.conn.getresponse()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection(*self.addr, timeout=60)
            self.conn.request(method, path, body=body, headers=h)
            r = self.conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def login(self, user, password):
        form = urllib.parse.urlencode({"user": user, "password": password, "next": ""}).encode()
        status, hdrs, body = self.request("POST", "/login", form,
                                          {"Content-Type": "application/x-www-form-urlencoded"})
        if status != 303 or "set-cookie" not in hdrs:
            raise AdminBenchError("admin login failed: %d %r" % (status, body[:200]))
        self.cookie = hdrs["set-cookie"].split(";")[0]

    def close(self):
        self.conn.close()


def percentile(values, p):
    v = sorted(values)
    if not v:
        return None
    k = (len(v) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def cpu_seconds(pid):
    """User + system CPU of process `pid` so far (all its threads)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def time_page(client, path, must_contain, n, pid):
    for _ in range(WARMUP):
        status, _, body = client.request("GET", path)
        if status != 200:
            raise AdminBenchError("GET %s: %d %r" % (path, status, body[:300]))
    times = []
    size = 0
    cpu0 = cpu_seconds(pid)
    for _ in range(n):
        t0 = time.perf_counter()
        status, _, body = client.request("GET", path)
        times.append((time.perf_counter() - t0) * 1000)
        if status != 200 or must_contain.encode() not in body:
            raise AdminBenchError("GET %s: %d, %r missing from %r" % (path, status, must_contain, body[:300]))
        size = len(body)
    cpu1 = cpu_seconds(pid)
    cpu_ms = round((cpu1 - cpu0) * 1000 / n, 2) if cpu0 is not None and cpu1 is not None else None
    return {"median_ms": round(percentile(times, 0.5), 2), "p95_ms": round(percentile(times, 0.95), 2),
            "max_ms": round(max(times), 2), "server_cpu_ms": cpu_ms, "requests": n, "bytes": size,
            "ok": percentile(times, 0.5) < TARGET_MS and percentile(times, 0.95) < TARGET_MS,
            "runs_ms": [round(t, 2) for t in times]}


def run(workdir, binary, quick, log):
    """The whole admin benchmark; returns {"meta": ..., "cases": {...}}."""
    counts = QUICK if quick else FULL
    srv = Server(workdir, binary, log)
    srv.setup()
    result = {"counts": counts, "cases": {}}
    try:
        log("admin: short real run for log templates ...")
        real_run(srv, log)
        log("admin: %d users and %d aliases into the directory ..." % (counts["users"], counts["aliases"]))
        n_users, n_aliases = bulk_directory(srv, counts, log)
        con = sqlite3.connect(srv.db)
        try:
            users = [r[0] for r in con.execute("SELECT name FROM users WHERE name LIKE 'user%'")]
        finally:
            con.close()
        log("admin: %d log events ..." % counts["events"])
        events, samples = write_events(srv.log_dir, counts["events"], users, log)
        log_bytes = sum(os.path.getsize(os.path.join(srv.log_dir, n + ".log"))
                        for n in ("receiver", "delivery", "retrieval"))
        result.update({"users": n_users, "aliases": n_aliases, "events": events, "log_bytes": log_bytes})
        srv.start()
        client = Client(srv.addr("admin"))
        try:
            client.login(ADMIN, PASSWORD)
            qid, rcpt = samples[len(samples) // 2]
            pages = [
                ("dashboard", "/", "Dashboard"),
                ("users", "/users", "user0"),
                ("trace_queue_id", "/trace?by=queue_id&key=" + qid, qid),
                ("trace_recipient", "/trace?by=recipient&key=" + urllib.parse.quote(rcpt), rcpt),
            ]
            for case, path, needle in pages:
                r = time_page(client, path, needle, counts["requests"], srv.proc.pid)
                result["cases"][case] = r
                log("admin %s: %s" % (case, json.dumps({k: v for k, v in r.items() if k != "runs_ms"})))
        finally:
            client.close()
        result["server_rss_kib"] = rss_kib(srv.proc.pid)
    finally:
        srv.stop()
    return result


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


LABELS = {
    "dashboard": "GET / (dashboard)",
    "users": "GET /users (page 1 of %(users)s users)",
    "trace_queue_id": "GET /trace by queue id (%(events)s events)",
    "trace_recipient": "GET /trace by recipient (%(events)s events)",
}


def print_table(result, meta):
    print()
    print("Postamt web admin, %s, %s" % (meta["date"], meta["machine"]))
    print("{:,} users, {:,} aliases, {:,} logged events".format(result.get("users") or 0, result.get("aliases") or 0,
                                                            result.get("events") or 0)
          + " (%.1f MiB of logs, 2 days); %d requests per page on one keep-alive "
          "connection after %d warm-up ones;\nwall time per request over loopback; target: under %d ms"
          % ((result.get("log_bytes") or 0) / 1048576, result["counts"]["requests"], WARMUP, TARGET_MS))
    print("No Postfix/Dovecot column: they have no web admin to compare with.")
    print("server CPU = user+system CPU time of the server process per request (less sensitive to other load "
          "on the machine than wall time)")
    fmt = "%-46s %10s %10s %10s %12s %8s"
    print(fmt % ("case", "median ms", "p95 ms", "max ms", "server CPU", "< 50 ms"))
    print("-" * 101)
    for case, r in result["cases"].items():
        label = LABELS.get(case, case) % {k: "{:,}".format(v) if isinstance(v, int) else v
                                          for k, v in result.items() if k in ("users", "events")}
        cpu = "-" if r.get("server_cpu_ms") is None else "%.2f ms" % r["server_cpu_ms"]
        print(fmt % (label, r["median_ms"], r["p95_ms"], r["max_ms"], cpu, "yes" if r["ok"] else "NO"))
    print()


def main_standalone():
    """`python3 bench/admin_bench.py BINARY [--quick]` (bench/run --only-cases admin is the usual way)."""
    binary = sys.argv[1]
    quick = "--quick" in sys.argv
    workdir = tempfile.mkdtemp(prefix="postamt-admin-bench.", dir="/var/tmp")
    try:
        res = run(workdir, binary, quick, lambda m: print("[admin] " + m, file=sys.stderr, flush=True))
    finally:
        if "--keep" in sys.argv:
            print("kept " + workdir, file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(res, {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                      "machine": os.uname().nodename})
    return 0 if all(r["ok"] for r in res["cases"].values()) else 1


if __name__ == "__main__":
    sys.exit(main_standalone())
