"""The servers under test: Postamt, and Postfix + Dovecot from Debian.

Each is started in its own temporary directory on loopback ports, offers
`smtp`/`submission`/`pop3` (host, port), `new_dir(user)` (the Maildir `new/`
its delivery writes to), `cpu_seconds()` (CPU used by the whole server process
tree, exited children included) and `pop3_targets()` (the POP3 services to
benchmark logins against), and stops by pid only. Mail to other domains is
relayed to `sink_port` on 127.0.0.1 (the bench's SMTP sink) when given.
"""

import concurrent.futures
import json
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import time

DOMAIN = "bench.test"
HOSTNAME = "bench.localdomain"
REMOTE_DOMAIN = "remote.example"  # not local: relayed to the sink
PASSWORD = "bench-Secret-42"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class SetupError(Exception):
    """A server could not be installed, configured or started."""


def run(cmd, timeout=120, input=None, check=True, env=None, daemon_log=None):
    """Runs a command to its end. A command that leaves a daemon behind gets
    `daemon_log` (a path) for its output: a pipe would stay open until the
    daemon exits."""
    if daemon_log is not None:
        with open(daemon_log, "ab") as out:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                               timeout=timeout, env=env)
        if check and p.returncode != 0:
            with open(daemon_log, "rb") as f:
                tail = f.read()[-2000:].decode(errors="replace")
            raise SetupError("%s failed (%d): %s" % (" ".join(map(str, cmd)), p.returncode, tail))
        return p
    p = subprocess.run(
        cmd,
        input=input,
        capture_output=True,
        timeout=timeout,
        env=env,
    )
    if check and p.returncode != 0:
        raise SetupError(
            "%s failed (%d): %s"
            % (" ".join(map(str, cmd)), p.returncode, (p.stderr or p.stdout).decode(errors="replace")[-2000:])
        )
    return p


# --- process accounting -----------------------------------------------------


def _proc_stat(pid):
    """(ppid, utime+stime+cutime+cstime in seconds) of a live process, or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces.
    rest = raw[raw.rfind(b")") + 2 :].split()
    ppid = int(rest[1])
    ticks = sum(int(x) for x in rest[11:15])
    return ppid, ticks / CLK_TCK


def tree_cpu_seconds(root):
    """CPU of `root` and all its live descendants, each with its reaped
    children's CPU (cutime/cstime), so work of exited workers is counted."""
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            s = _proc_stat(int(name))
            if s is not None:
                stats[int(name)] = s
    if root not in stats:
        return None
    children = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total = 0.0
    todo = [root]
    seen = set()
    while todo and len(seen) < 100000:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# --- installation -----------------------------------------------------------


def have_postfix_dovecot():
    return (
        shutil.which("postfix") is not None
        and shutil.which("dovecot") is not None
        and shutil.which("doveadm") is not None
        and os.path.exists("/usr/lib/dovecot/pop3")
    )


def install_postfix_dovecot(log):
    """apt-get install postfix dovecot-pop3d, without prompts; stops any
    system instance the packages' scripts started."""
    if have_postfix_dovecot():
        return
    if os.geteuid() != 0:
        raise SetupError("postfix/dovecot are missing and installing them needs root")
    log("installing postfix and dovecot-pop3d with apt-get ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(
        ["debconf-set-selections"],
        input=b"postfix postfix/main_mailer_type select No configuration\n"
        b"postfix postfix/mailname string bench.localdomain\n",
        env=env,
    )
    cmd = [
        "apt-get",
        "install",
        "-y",
        "-q",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
        "postfix",
        "dovecot-pop3d",
    ]
    p = run(cmd, timeout=900, check=False, env=env)
    if p.returncode != 0:
        log("apt-get install failed; running apt-get update and trying again")
        run(["apt-get", "update", "-q"], timeout=600, env=env)
        run(cmd, timeout=900, env=env)
    # On a systemd machine the packages may have started the system services.
    if shutil.which("systemctl") and os.path.isdir("/run/systemd/system"):
        for svc in ("dovecot", "postfix"):
            run(["systemctl", "stop", svc], check=False, timeout=60)
    if not have_postfix_dovecot():
        raise SetupError("postfix/dovecot still missing after apt-get install")


# --- Postamt ----------------------------------------------------------------


class Postamt:
    name = "postamt"

    def __init__(self, workdir, binary, users, log, sink_port=None):
        self.dir = os.path.join(workdir, "postamt")
        self.data = os.path.join(self.dir, "data")
        self.cfg = os.path.join(self.dir, "postamt.toml")
        self.binary = binary
        self.users = users
        self.log = log
        self.proc = None
        self.logfile = None
        self.smtp = None
        self.submission = None
        self.pop3 = None
        self.sink_port = sink_port

    def setup(self):
        os.makedirs(self.data, exist_ok=True)
        with open(self.cfg, "w") as f:
            f.write(
                'hostname = "%s"\n'
                'domains = ["%s"]\n'
                'data_dir = "%s"\n'
                "\n[listen]\n"
                'smtp = ["127.0.0.1:0"]\n'
                'submission = ["127.0.0.1:0"]\n'
                'pop3 = ["127.0.0.1:0"]\n'
                "\n[limits]\n"
                "max_connections_per_ip = 100\n"
                "\n# Like stock Postfix: no SPF/DKIM/DMARC checks on arrival (they need\n"
                "# DNS, which a loopback benchmark does not have).\n"
                "[sender_auth]\n"
                "verify = false\n"
                "\n# AUTH without TLS from loopback, as Postfix + Dovecot SASL here.\n"
                "[submission]\n"
                "allow_plaintext_on_loopback = true\n"
                "\n# No DNS leaves the machine (the smarthost is an address).\n"
                "[dns]\n"
                'nameservers = ["127.0.0.1:1"]\n' % (HOSTNAME, DOMAIN, self.data)
            )
            if self.sink_port:
                f.write('\n[delivery]\nsmarthost = "127.0.0.1:%d"\n' % self.sink_port)
        # A few at a time: each `user add` is a process and an argon2 hash.
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            for _ in pool.map(self._add_user, self.users):
                pass

    def _add_user(self, user):
        cmd = [self.binary, "--config", self.cfg, "user", "add", user, "--password-stdin"]
        p = run(cmd, input=(PASSWORD + "\n").encode(), timeout=60, check=False)
        if p.returncode != 0:  # e.g. the directory busy: once more, then give up
            time.sleep(0.2)
            run(cmd, input=(PASSWORD + "\n").encode(), timeout=60)

    def password_hash(self, user):
        """The argon2id PHC string Postamt stored for `user`, or None."""
        return self.password_hashes().get(user.lower())

    def password_hashes(self):
        """{user (lowercase): argon2id PHC string} for every account."""
        db = os.path.join(self.data, "directory.sqlite")
        try:
            con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
            try:
                rows = con.execute("SELECT name_lc, password_hash FROM users").fetchall()
            finally:
                con.close()
        except sqlite3.Error:
            return {}
        return {str(n): str(h) for n, h in rows if str(h).startswith("$argon2id$")}

    def pop3_targets(self):
        """[(name, (host, port), cpu function)] for the login benchmark."""
        return [("postamt", self.pop3, self.cpu_seconds)]

    def start(self):
        self.logfile = open(os.path.join(self.dir, "serve.out"), "wb")
        self.proc = subprocess.Popen(
            [self.binary, "--config", self.cfg, "serve"],
            stdin=subprocess.DEVNULL,
            stdout=self.logfile,
            stderr=subprocess.STDOUT,
        )
        path = os.path.join(self.data, "run", "listeners.json")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SetupError("postamt serve exited with %s:\n%s" % (self.proc.returncode, self.tail()))
            try:
                with open(path) as f:
                    bound = json.load(f)
                self.smtp = _hostport(bound["smtp"][0])
                self.submission = _hostport(bound["submission"][0])
                self.pop3 = _hostport(bound["pop3"][0])
                return
            except (OSError, ValueError, KeyError, IndexError):
                time.sleep(0.1)
        raise SetupError("postamt did not write %s within 30 s:\n%s" % (path, self.tail()))

    def tail(self, n=3000):
        try:
            with open(os.path.join(self.dir, "serve.out"), "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def new_dir(self, user):
        return os.path.join(self.data, "mailboxes", user, "new")

    def cpu_seconds(self):
        return tree_cpu_seconds(self.proc.pid) if self.proc else None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(45)
            except subprocess.TimeoutExpired:
                self.log("postamt did not stop on SIGTERM within 45 s; killing pid %d" % self.proc.pid)
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if self.logfile:
            self.logfile.close()
            self.logfile = None


def _hostport(s):
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


# --- Postfix + Dovecot ------------------------------------------------------


class PostfixDovecot:
    name = "postfix"

    def __init__(self, workdir, users, log, smtp_port=2526, pop3_port=1111, pop3_cache_port=1112,
                 hashes=None, sink_port=None):
        self.dir = os.path.join(workdir, "pf")
        self.etc = os.path.join(self.dir, "etc")
        self.spool = os.path.join(self.dir, "spool")
        self.pfdata = os.path.join(self.dir, "data")
        self.mail = os.path.join(self.dir, "mail")
        self.dv_conf = os.path.join(self.dir, "dovecot.conf")
        self.dv_run = os.path.join(self.dir, "dv-run")
        # A second Dovecot, the same but for `auth_cache_size`: it also serves
        # Postfix's SASL AUTH (a cached login, as Postamt's).
        self.dvc_conf = os.path.join(self.dir, "dovecot-cache.conf")
        self.dvc_run = os.path.join(self.dir, "dvc-run")
        self.users = users
        self.log = log
        self.smtp = ("127.0.0.1", smtp_port)
        self.submission = self.smtp  # smtpd with SASL AUTH (the client authenticates on both sides)
        self.pop3 = ("127.0.0.1", pop3_port)
        self.pop3_cache = ("127.0.0.1", pop3_cache_port)
        self.hashes = hashes or {}
        self.sink_port = sink_port
        self.scheme_note = ""
        self.postfix_started = False
        self.dovecot_started = False
        self.dovecot_cache_started = False
        self.vuid = pwd.getpwnam("nobody").pw_uid
        self.vgid = pwd.getpwnam("nobody").pw_gid

    def setup(self):
        for d in (self.etc, self.spool, self.pfdata, self.mail, self.dv_run, self.dvc_run,
                  os.path.join(self.dir, "dv-state"), os.path.join(self.dir, "dvc-state")):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.dir, 0o755)
        shutil.chown(self.pfdata, user="postfix")
        os.chown(self.mail, self.vuid, self.vgid)
        self._postfix_config()
        self._dovecot_config()

    def _postfix_config(self):
        shutil.copy("/etc/postfix/master.cf", self.etc)
        for extra in ("dynamicmaps.cf",):
            src = os.path.join("/etc/postfix", extra)
            if os.path.exists(src):
                shutil.copy(src, self.etc)
        if os.path.isdir("/etc/postfix/dynamicmaps.cf.d"):
            shutil.copytree("/etc/postfix/dynamicmaps.cf.d", os.path.join(self.etc, "dynamicmaps.cf.d"),
                            dirs_exist_ok=True)
        # master.cf: our port for smtpd, and no chroot (the queue is private
        # and temporary; chroot would need copies of /etc files inside it).
        out = []
        with open(os.path.join(self.etc, "master.cf")) as f:
            for line in f.read().split("\n"):
                if line and not line[0].isspace() and not line.startswith("#"):
                    fields = line.split()
                    if len(fields) >= 8:
                        if fields[0] == "smtp" and fields[1] == "inet":
                            fields[0] = "%s:%d" % self.smtp
                        fields[4] = "n"
                        line = " ".join(fields)
                out.append(line)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write("\n".join(out))
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(
                "compatibility_level = 3.6\n"
                "queue_directory = %(spool)s\n"
                "data_directory = %(data)s\n"
                "myhostname = %(host)s\n"
                "mydestination =\n"
                "inet_interfaces = 127.0.0.1\n"
                "inet_protocols = ipv4\n"
                "maillog_file = %(dir)s/postfix.log\n"
                "smtpd_client_connection_count_limit = 100\n"
                "virtual_mailbox_domains = %(domain)s\n"
                "virtual_mailbox_base = %(mail)s\n"
                "virtual_mailbox_maps = texthash:%(etc)s/vmailbox\n"
                "virtual_uid_maps = static:%(uid)d\n"
                "virtual_gid_maps = static:%(gid)d\n"
                "# SASL AUTH through the Dovecot with the auth cache (127.0.0.1 is in\n"
                "# mynetworks as well, the stock relay permission).\n"
                "smtpd_sasl_auth_enable = yes\n"
                "smtpd_sasl_type = dovecot\n"
                "smtpd_sasl_path = %(sasl)s\n"
                % dict(spool=self.spool, data=self.pfdata, host=HOSTNAME, dir=self.dir,
                       domain=DOMAIN, mail=self.mail, etc=self.etc, uid=self.vuid, gid=self.vgid,
                       sasl=os.path.join(self.dvc_run, "auth-postfix"))
            )
            if self.sink_port:
                f.write("relayhost = [127.0.0.1]:%d\n" % self.sink_port)
        with open(os.path.join(self.etc, "vmailbox"), "w") as f:
            for u in self.users:
                f.write("%s@%s %s/%s/\n" % (u, DOMAIN, DOMAIN, u))
        run(["postfix", "-c", self.etc, "check"], timeout=60)

    def _dovecot_config(self):
        hashed = None
        per_user = {}
        pop_hash = self.hashes.get("popper") or next(iter(self.hashes.values()), None)
        if pop_hash:
            candidate = "{ARGON2ID}" + pop_hash
            p = run(["doveadm", "pw", "-t", candidate, "-p", PASSWORD], timeout=60, check=False)
            if p.returncode == 0:
                hashed = candidate
                per_user = {u: "{ARGON2ID}" + h for u, h in self.hashes.items()}
                self.scheme_note = ("ARGON2ID, the same PHC strings (same cost, same salts) Postamt "
                                    "stored: %s" % (pop_hash.split("$")[3] if pop_hash.count("$") >= 4
                                                    else "?"))
            else:
                self.log("doveadm cannot verify Postamt's hash; using doveadm pw instead")
        if not hashed:
            p = run(["doveadm", "pw", "-s", "ARGON2ID", "-p", PASSWORD], timeout=60, check=False)
            if p.returncode == 0 and p.stdout.startswith(b"{ARGON2ID}"):
                hashed = p.stdout.decode().strip()
                self.scheme_note = "ARGON2ID from doveadm pw (its default cost)"
            else:
                hashed = run(["doveadm", "pw", "-s", "SHA512-CRYPT", "-p", PASSWORD]).stdout.decode().strip()
                self.scheme_note = "SHA512-CRYPT (this Dovecot lacks ARGON2ID)"
        users_file = os.path.join(self.dir, "dovecot-users")
        with open(users_file, "w") as f:
            for u in self.users:
                f.write("%s:%s::::::\n" % (u, per_user.get(u.lower(), hashed)))
        os.chmod(users_file, 0o644)
        self._dovecot_file(self.dv_conf, users_file, self.dv_run, "dv", self.pop3[1], cache=False)
        self._dovecot_file(self.dvc_conf, users_file, self.dvc_run, "dvc", self.pop3_cache[1], cache=True)

    def _dovecot_file(self, path, users_file, run_dir, tag, port, cache):
        # Stock but for: POP3 only on one loopback port, passwd-file + static
        # userdb, the Maildirs Postfix writes, no SSL (loopback, like Postamt
        # here), 100 connections per user and IP (Dovecot's default of 10
        # would refuse the 10-session login runs now and then; Postamt allows
        # 100 per IP) and, for the second instance, the auth cache and a
        # socket for Postfix's SASL.
        extra = ""
        if cache:
            extra = """auth_cache_size = 10M
service auth {
  unix_listener auth-postfix {
    mode = 0666
  }
}
"""
        with open(path, "w") as f:
            f.write(
                """protocols = pop3
listen = 127.0.0.1
base_dir = %(run)s
state_dir = %(dir)s/%(tag)s-state
instance_name = postamt-bench-%(tag)s
log_path = %(dir)s/%(tag)s.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:%(mail)s/%(domain)s/%%n
mail_uid = %(uid)d
mail_gid = %(gid)d
first_valid_uid = 1
first_valid_gid = 1
passdb {
  driver = passwd-file
  args = %(users)s
}
userdb {
  driver = static
  args = uid=%(uid)d gid=%(gid)d home=%(mail)s/%(domain)s/%%n
}
service pop3-login {
  inet_listener pop3 {
    address = %(host)s
    port = %(port)d
  }
  inet_listener pop3s {
    port = 0
  }
}
protocol pop3 {
  mail_max_userip_connections = 100
}
%(extra)s"""
                % dict(run=run_dir, dir=self.dir, tag=tag, mail=self.mail, domain=DOMAIN, uid=self.vuid,
                       gid=self.vgid, users=users_file, host="127.0.0.1", port=port, extra=extra)
            )

    def start(self):
        for host, port in (self.smtp, self.pop3, self.pop3_cache):
            if _port_open(host, port):
                raise SetupError("%s:%d is already in use" % (host, port))
        self.postfix_started = True
        run(["postfix", "-c", self.etc, "start"], timeout=120,
            daemon_log=os.path.join(self.dir, "postfix-start.out"))
        self.dovecot_started = True
        run(["dovecot", "-c", self.dv_conf], timeout=60,
            daemon_log=os.path.join(self.dir, "dovecot-start.out"))
        self.dovecot_cache_started = True
        run(["dovecot", "-c", self.dvc_conf], timeout=60,
            daemon_log=os.path.join(self.dir, "dovecot-start.out"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if _port_open(*self.smtp) and _port_open(*self.pop3) and _port_open(*self.pop3_cache):
                return
            time.sleep(0.1)
        raise SetupError("postfix/dovecot not listening within 30 s")

    def _postfix_pid(self):
        return read_pid(os.path.join(self.spool, "pid", "master.pid"))

    def _dovecot_pid(self):
        return read_pid(os.path.join(self.dv_run, "master.pid"))

    def _dovecot_cache_pid(self):
        return read_pid(os.path.join(self.dvc_run, "master.pid"))

    def dovecot_cpu(self):
        pid = self._dovecot_pid()
        return tree_cpu_seconds(pid) if pid else None

    def dovecot_cache_cpu(self):
        pid = self._dovecot_cache_pid()
        return tree_cpu_seconds(pid) if pid else None

    def pop3_targets(self):
        """[(name, (host, port), cpu function)] for the login benchmark."""
        return [("dovecot", self.pop3, self.dovecot_cpu),
                ("dovecot_cache", self.pop3_cache, self.dovecot_cache_cpu)]

    def new_dir(self, user):
        return os.path.join(self.mail, DOMAIN, user, "new")

    def cpu_seconds(self):
        total = 0.0
        for pid in (self._postfix_pid(), self._dovecot_pid(), self._dovecot_cache_pid()):
            if pid:
                total += tree_cpu_seconds(pid) or 0.0
        return total

    def stop(self):
        for flag, pid_of in (("dovecot_started", self._dovecot_pid),
                             ("dovecot_cache_started", self._dovecot_cache_pid)):
            if getattr(self, flag):
                pid = pid_of()
                if pid and pid_alive(pid):
                    os.kill(pid, signal.SIGTERM)
                    if not wait_gone(pid, 20):
                        os.kill(pid, signal.SIGKILL)
                        wait_gone(pid, 5)
                setattr(self, flag, False)
        if self.postfix_started:
            pid = self._postfix_pid()
            run(["postfix", "-c", self.etc, "stop"], timeout=60, check=False)
            if pid and not wait_gone(pid, 20):
                self.log("postfix master %d still running; killing it" % pid)
                os.kill(pid, signal.SIGKILL)
                wait_gone(pid, 5)
            self.postfix_started = False


def _port_open(host, port):
    import socket

    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
