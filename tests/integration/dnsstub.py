"""A stub DNS server for the end-to-end tests: authoritative for whatever
the test puts in it, on one loopback port over UDP and TCP (dnslib builds and
parses the packets).

Names it does not know answer NXDOMAIN at once, known names without the
asked type answer NOERROR with no records (NODATA), names marked `servfail`
answer SERVFAIL. Every negative answer carries an SOA with a 1 s minimum so
that resolvers cache it for a second at most; records have a 1 s TTL. A UDP
answer larger than the client's buffer (512 bytes, or its EDNS size) is
sent truncated (TC), so the client retries over TCP.

Every question is recorded (`queries`) so tests can tell what was asked.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from dnslib import AAAA, MX, QTYPE, RCODE, RR, SOA, TXT, A, DNSRecord

TTL = 1
MAX_TCP_MESSAGE = 65535


def norm(name: str) -> str:
    """Lowercase, without the trailing dot."""
    return str(name).rstrip(".").lower()


def txt_strings(text: str | bytes) -> list[bytes]:
    """A TXT value split into character-strings of at most 255 bytes."""
    data = text.encode() if isinstance(text, str) else text
    return [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]


class DnsStub:
    """Start with `start()` (or as a context manager); `addr` is
    `"127.0.0.1:<port>"` for `[dns] nameservers`."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self._lock = threading.Lock()
        # (name, qtype name) -> list of RDATA objects
        self._records: dict[tuple[str, str], list] = {}
        self._servfail: set[str] = set()
        self._silent: set[str] = set()
        self.queries: list[tuple[str, str, str]] = []  # (name, qtype, transport)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.udp: socket.socket | None = None
        self.tcp: socket.socket | None = None
        self.port = 0

    # ---- zone editing (thread-safe; takes effect at once)

    def _add(self, name: str, qtype: str, rdata) -> None:
        with self._lock:
            self._records.setdefault((norm(name), qtype), []).append(rdata)

    def a(self, name: str, *ips: str) -> "DnsStub":
        for ip in ips:
            self._add(name, "AAAA" if ":" in ip else "A", AAAA(ip) if ":" in ip else A(ip))
        return self

    def mx(self, domain: str, *hosts: tuple[int, str]) -> "DnsStub":
        """MX records (preference, exchange); the exchange "." is a null MX."""
        for pref, host in hosts:
            self._add(domain, "MX", MX(host if host != "." else ".", pref))
        return self

    def null_mx(self, domain: str) -> "DnsStub":
        return self.mx(domain, (0, "."))

    def txt(self, name: str, text: str | bytes) -> "DnsStub":
        self._add(name, "TXT", TXT(txt_strings(text)))
        return self

    def exists(self, name: str) -> "DnsStub":
        """The name exists (answers NODATA rather than NXDOMAIN)."""
        with self._lock:
            self._records.setdefault((norm(name), "_exists"), [])
        return self

    def servfail(self, name: str) -> "DnsStub":
        with self._lock:
            self._servfail.add(norm(name))
        return self

    def silent(self, name: str) -> "DnsStub":
        """Questions about `name` are never answered (a resolver timeout)."""
        with self._lock:
            self._silent.add(norm(name))
        return self

    def remove(self, name: str) -> "DnsStub":
        """Forgets everything about `name` (then NXDOMAIN)."""
        n = norm(name)
        with self._lock:
            for k in [k for k in self._records if k[0] == n]:
                del self._records[k]
            self._servfail.discard(n)
            self._silent.discard(n)
        return self

    def lookup_txt(self, name: str) -> list[bytes]:
        """The TXT records of `name` as the stub serves them, asked over the
        wire (UDP, TCP on truncation): each record's strings joined."""
        q = DNSRecord.question(norm(name) + ".", "TXT")
        raw = q.send(self.host, self.port, tcp=False, timeout=5)
        reply = DNSRecord.parse(raw)
        if reply.header.tc:
            reply = DNSRecord.parse(q.send(self.host, self.port, tcp=True, timeout=5))
        out = []
        for rr in reply.rr:
            if rr.rtype == QTYPE.TXT:
                out.append(b"".join(rr.rdata.data))
        return out

    def asked(self, name: str, qtype: str | None = None) -> int:
        """How many questions about `name` (of `qtype`) arrived."""
        n = norm(name)
        with self._lock:
            return sum(1 for q in self.queries if q[0] == n and (qtype is None or q[1] == qtype))

    # ---- answering

    def answer(self, request: DNSRecord) -> DNSRecord | None:
        reply = request.reply()  # copies id and question, sets QR, AA, RD
        q = request.q
        name, qtype = norm(q.qname), QTYPE.get(q.qtype, str(q.qtype))
        with self._lock:
            if name in self._silent:
                return None
            if name in self._servfail:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            known = any(k[0] == name for k in self._records)
            rdatas = list(self._records.get((name, qtype), []))
        if not known:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self._soa())
            return reply
        for rd in rdatas:
            reply.add_answer(RR(q.qname, QTYPE.reverse[qtype], rdata=rd, ttl=TTL))
        if not rdatas:
            reply.add_auth(self._soa())
        return reply

    @staticmethod
    def _soa() -> RR:
        return RR(
            "test.",
            QTYPE.SOA,
            rdata=SOA("ns.test.", "hostmaster.test.", (1, 60, 60, 60, 1)),
            ttl=TTL,
        )

    def _handle(self, data: bytes, transport: str) -> bytes | None:
        try:
            request = DNSRecord.parse(data)
        except Exception:
            return None
        with self._lock:
            self.queries.append((norm(request.q.qname), QTYPE.get(request.q.qtype, str(request.q.qtype)), transport))
        reply = self.answer(request)
        if reply is None:
            return None
        packed = reply.pack()
        if transport == "udp":
            limit = 512
            for ar in request.ar:
                if ar.rtype == QTYPE.OPT:
                    limit = max(512, ar.rclass)
            if len(packed) > limit:
                trunc = request.reply()
                trunc.header.tc = 1
                packed = trunc.pack()
        return packed

    # ---- servers

    def start(self) -> "DnsStub":
        # One port for both transports: retry until UDP and TCP both bind.
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((self.host, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((self.host, port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(64)
            break
        else:
            raise RuntimeError("no port free for both UDP and TCP")
        udp.settimeout(0.2)
        tcp.settimeout(0.2)
        self.udp, self.tcp, self.port = udp, tcp, port
        for target in (self._udp_loop, self._tcp_loop):
            t = threading.Thread(target=target, daemon=True, name=f"dnsstub-{target.__name__}")
            t.start()
            self._threads.append(t)
        return self

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def _udp_loop(self) -> None:
        assert self.udp is not None
        while not self._stop.is_set():
            try:
                data, peer = self.udp.recvfrom(4096)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            out = self._handle(data, "udp")
            if out is not None:
                try:
                    self.udp.sendto(out, peer)
                except OSError:
                    pass

    def _tcp_loop(self) -> None:
        assert self.tcp is not None
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            threading.Thread(target=self._tcp_conn, args=(conn,), daemon=True).start()

    def _tcp_conn(self, conn: socket.socket) -> None:
        conn.settimeout(10)

        def read_exact(n: int) -> bytes | None:
            buf = b""
            while len(buf) < n:
                chunk = conn.recv(n - len(buf))
                if not chunk:
                    return None
                buf += chunk
            return buf

        try:
            for _ in range(100):  # bounded number of questions per connection
                head = read_exact(2)
                if head is None:
                    return
                (length,) = struct.unpack("!H", head)
                data = read_exact(length)
                if data is None:
                    return
                out = self._handle(data, "tcp")
                if out is None:
                    continue
                conn.sendall(struct.pack("!H", len(out)) + out[:MAX_TCP_MESSAGE])
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        for s in (self.udp, self.tcp):
            if s is not None:
                s.close()
        deadline = time.monotonic() + 2
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> "DnsStub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
