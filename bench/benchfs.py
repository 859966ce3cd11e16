"""Where the servers under test keep their queues and mailboxes.

By default the benchmark makes a fresh ext4 file system *with a journal*
(Debian's default, what a mail server runs on) in a sparse image file under
/var/tmp, loop-mounts it and puts both servers' work directories on it; it
is unmounted and deleted at the end. fsync on it is real: the loop device
turns every flush into an fsync of the image file on the disk below.

Why not the directory the bench happens to run in: a root file system
without a journal (this project's VMs have one) makes ext4's inode
allocator skip every inode freed in the last 60 s (300 s while its inode
table block is dirty), checking them one by one on *every* new file. The
bench empties a mailbox of thousands of files between runs, and Postfix
unlinks a queue file per message, so each run's file creations cost what
the runs before it deleted (perf: `recently_deleted` and the directory lock
spinning around it took about half of Postamt's CPU). With a journal ext4
has no such scan. `--fs here` keeps the old behaviour for comparison.
"""

import os
import shutil
import subprocess
import tempfile

# Sparse: only what the servers write takes disk space. 100 KiB x 3,000
# messages x 2 servers stay far below it (mailboxes are emptied per run).
IMAGE_SIZE = 16 * 1024 * 1024 * 1024


class FsError(Exception):
    """The journalled file system could not be made or mounted."""


def _run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300, check=False)
    if p.returncode != 0:
        raise FsError("%s: %s" % (" ".join(cmd), p.stdout.decode(errors="replace").strip()[-300:]))


class JournalFs:
    """A loop-mounted ext4 (with journal) in a sparse image under `parent`."""

    def __init__(self, parent, log):
        self.parent = parent
        self.log = log
        self.image = None
        self.mountpoint = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def open(self):
        """Makes and mounts the file system; returns its mount point."""
        if not shutil.which("mkfs.ext4"):
            raise FsError("mkfs.ext4 not found (Debian package e2fsprogs)")
        fd, self.image = tempfile.mkstemp(prefix="postamt-bench-fs.", suffix=".ext4", dir=self.parent)
        os.close(fd)
        os.truncate(self.image, IMAGE_SIZE)
        # Inode tables and journal written now, not by a background thread
        # during the runs.
        _run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", self.image])
        self.mountpoint = tempfile.mkdtemp(prefix="postamt-bench-mnt.", dir=self.parent)
        try:
            _run(["mount", "-o", "loop", self.image, self.mountpoint])
        except FsError:
            os.rmdir(self.mountpoint)
            self.mountpoint = None
            raise
        os.chmod(self.mountpoint, 0o755)
        self.log("work directory on a fresh ext4 with journal: %s (image %s)" % (self.mountpoint, self.image))
        return self.mountpoint

    def close(self):
        if self.mountpoint:
            try:
                _run(["umount", self.mountpoint])
                os.rmdir(self.mountpoint)
            except (FsError, OSError, subprocess.TimeoutExpired) as e:
                self.log("could not unmount %s: %s" % (self.mountpoint, e))
            self.mountpoint = None
        if self.image:
            try:
                os.unlink(self.image)
            except OSError:
                pass
            self.image = None


def describe(path):
    """One line about the file system under `path` (type, journal or not)."""
    try:
        st = os.stat(path)
        dev = "%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev))
        fstype = "?"
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                if parts[2] == dev:
                    sep = parts.index("-")
                    fstype = parts[sep + 1]
                    source = parts[sep + 2]
        if fstype != "ext4":
            return fstype
        name = os.path.basename(os.path.realpath(source))
        journal = os.path.isdir("/proc/fs/jbd2") and any(
            d.startswith(name + "-") for d in os.listdir("/proc/fs/jbd2"))
        return "ext4 %s journal" % ("with" if journal else "WITHOUT")
    except (OSError, ValueError, IndexError, UnboundLocalError):
        return "unknown"
