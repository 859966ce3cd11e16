"""The IMAP side of the servers under test, for the bench's `imap` case.

Postamt: the same `postamt serve` as the other cases, with an `imap`
listener added to its config before it starts (and the per-IP connection cap
raised so that 200 idle connections from 127.0.0.1 fit). Dovecot: a third
instance beside the two POP3 ones (its own config, base_dir and port, IMAP
only), reading the Maildirs Postfix delivers to, with the same passwd-file
(the same argon2id PHC strings as Postamt). Everything stops by pid.

Each side offers `imap` (host, port), `smtp` (host, port: the server's
own SMTP, for the IDLE push part), `cpu_seconds()`, `memory()` (RSS and
PSS in KiB of the server processes: Postamt's one process; for Dovecot every
process of the IMAP instance: master, imap-login, imap, auth, ...),
`new_dir(user)`, `drop_index(user)` and `restart()` (a fresh server
process, so the cold session finds no process-held state: Postamt's whole
`postamt serve`, which serves IMAP; Dovecot's IMAP instance).
"""

import glob
import json
import os
import shutil
import signal
import time

import servers

IMAP_PORT = 1143


def have_dovecot_imap():
    return os.path.exists("/usr/lib/dovecot/imap") and os.path.exists("/usr/lib/dovecot/imap-login")


def install_dovecot_imap(log):
    """apt-get install dovecot-imapd (no prompt) when it is missing."""
    if have_dovecot_imap():
        return
    if os.geteuid() != 0:
        raise servers.SetupError("dovecot-imapd is missing and installing it needs root")
    log("installing dovecot-imapd with apt-get ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "-o", "Dpkg::Options::=--force-confdef",
           "-o", "Dpkg::Options::=--force-confold", "dovecot-imapd"]
    p = servers.run(cmd, timeout=900, check=False, env=env)
    if p.returncode != 0:
        log("apt-get install failed; running apt-get update and trying again")
        servers.run(["apt-get", "update", "-q"], timeout=600, env=env)
        servers.run(cmd, timeout=900, env=env)
    if shutil.which("systemctl") and os.path.isdir("/run/systemd/system"):
        servers.run(["systemctl", "stop", "dovecot"], check=False, timeout=60)
    if not have_dovecot_imap():
        raise servers.SetupError("dovecot-imapd still missing after apt-get install")


def drop_page_cache():
    """sync + drop the kernel's page cache; False when not allowed."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def _status_kib(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_pids(root):
    """`root` and all its live descendants."""
    parent = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = servers._proc_stat(int(name))
            if st is not None:
                parent[int(name)] = st[0]
    if root not in parent:
        return []
    children = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo and len(out) < 100000:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def memory_of(pids):
    """{"rss_kib", "pss_kib", "processes"} summed over `pids`."""
    return {
        "rss_kib": sum(_status_kib(p, "VmRSS") for p in pids),
        "pss_kib": sum(_pss_kib(p) for p in pids),
        "processes": len(pids),
    }


class PostamtImap:
    """The `imap` listener of a `servers.Postamt`."""

    name = "postamt"

    def __init__(self, server):
        self.server = server
        self.imap = None

    def prepare(self):
        """Adds the listener to the config written by `server.setup()`."""
        with open(self.server.cfg) as f:
            text = f.read()
        if 'imap = ["127.0.0.1:0"]' not in text:
            text = text.replace('pop3 = ["127.0.0.1:0"]\n', 'pop3 = ["127.0.0.1:0"]\nimap = ["127.0.0.1:0"]\n', 1)
        # 200 idle IMAP connections come from one address.
        text = text.replace("max_connections_per_ip = 100\n", "max_connections_per_ip = 1000\n", 1)
        with open(self.server.cfg, "w") as f:
            f.write(text)

    def start(self):
        """Reads the bound address once `server.start()` returned."""
        path = os.path.join(self.server.data, "run", "listeners.json")
        with open(path) as f:
            bound = json.load(f)
        addrs = bound.get("imap") or []
        if not addrs:
            raise servers.SetupError("postamt did not bind an imap listener (%s): %s"
                                     % (path, json.dumps(bound)))
        self.imap = servers._hostport(addrs[0])

    def stop(self):
        pass

    @property
    def smtp(self):
        return self.server.smtp

    def restart(self):
        """Stops `postamt serve` (SIGTERM) and starts it again (new ports:
        the listeners are bound to :0). Its output so far is kept in
        serve.out.<n>."""
        self.server.stop()
        out = os.path.join(self.server.dir, "serve.out")
        n = 1
        while os.path.exists("%s.%d" % (out, n)) and n < 1000:
            n += 1
        if os.path.exists(out):
            os.rename(out, "%s.%d" % (out, n))
        # server.start() waits for this file: never read the old one's ports.
        try:
            os.unlink(os.path.join(self.server.data, "run", "listeners.json"))
        except FileNotFoundError:
            pass
        self.server.start()
        self.start()

    def cpu_seconds(self):
        return self.server.cpu_seconds()

    def memory(self):
        proc = self.server.proc
        return memory_of([proc.pid] if proc else [])

    def new_dir(self, user):
        return self.server.new_dir(user)

    def drop_index(self, user):
        """Postamt's index is made at delivery: nothing to drop (the point)."""
        return 0


class DovecotImap:
    """A Dovecot instance serving IMAP over `servers.PostfixDovecot`'s Maildirs."""

    name = "postfix"

    def __init__(self, pf, log, port=IMAP_PORT):
        self.pf = pf
        self.log = log
        self.dir = pf.dir
        self.conf = os.path.join(self.dir, "dovecot-imap.conf")
        self.run_dir = os.path.join(self.dir, "dvi-run")
        self.imap = ("127.0.0.1", port)
        self.started = False

    def prepare(self):
        """Writes the config (after `pf.setup()`, which wrote the users file)."""
        for d in (self.run_dir, os.path.join(self.dir, "dvi-state")):
            os.makedirs(d, exist_ok=True)
        users_file = os.path.join(self.dir, "dovecot-users")
        if not os.path.exists(users_file):
            raise servers.SetupError("%s missing: PostfixDovecot.setup() must run first" % users_file)
        # Stock but for: IMAP only on one loopback port, passwd-file + static
        # userdb (as the POP3 instances), the Maildirs Postfix writes, no SSL
        # (loopback, like Postamt here), and 1000 connections per user and IP
        # (the idle-connection part opens 200 for one user; default 10).
        with open(self.conf, "w") as f:
            f.write(
                """protocols = imap
listen = 127.0.0.1
base_dir = %(run)s
state_dir = %(dir)s/dvi-state
instance_name = postamt-bench-dvi
log_path = %(dir)s/dvi.log
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
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %(port)d
  }
  inet_listener imaps {
    port = 0
  }
}
protocol imap {
  mail_max_userip_connections = 1000
}
"""
                % dict(run=self.run_dir, dir=self.dir, mail=self.pf.mail, domain=servers.DOMAIN,
                       uid=self.pf.vuid, gid=self.pf.vgid, users=users_file, port=self.imap[1])
            )

    def start(self):
        if servers._port_open(*self.imap):
            raise servers.SetupError("%s:%d is already in use" % self.imap)
        self.started = True
        servers.run(["dovecot", "-c", self.conf], timeout=60,
                    daemon_log=os.path.join(self.dir, "dovecot-imap-start.out"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if servers._port_open(*self.imap):
                return
            time.sleep(0.1)
        raise servers.SetupError("dovecot (imap) not listening within 30 s")

    def _pid(self):
        return servers.read_pid(os.path.join(self.run_dir, "master.pid"))

    @property
    def smtp(self):
        return self.pf.smtp

    def restart(self):
        """Stops the IMAP instance (SIGTERM to its master, which ends every
        imap, imap-login and auth process) and starts it again. Postfix,
        which delivers, and the POP3 instances keep running."""
        self.stop()
        # imap-login processes hold the listening socket until they exit.
        deadline = time.monotonic() + 20
        while servers._port_open(*self.imap) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.start()

    def stop(self):
        if not self.started:
            return
        pid = self._pid()
        if pid and servers.pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            if not servers.wait_gone(pid, 20):
                os.kill(pid, signal.SIGKILL)
                servers.wait_gone(pid, 5)
        self.started = False

    def cpu_seconds(self):
        pid = self._pid()
        return servers.tree_cpu_seconds(pid) if pid else None

    def memory(self):
        pid = self._pid()
        return memory_of(tree_pids(pid) if pid else [])

    def new_dir(self, user):
        return self.pf.new_dir(user)

    def drop_index(self, user):
        """Removes Dovecot's index, cache, log and uidlist files of `user`'s
        INBOX (Dovecot rebuilds them at the next SELECT); returns how many."""
        base = os.path.dirname(self.new_dir(user))
        n = 0
        for path in glob.glob(os.path.join(base, "dovecot*")):
            if os.path.isfile(path):
                os.unlink(path)
                n += 1
        return n
