"""A fast SMTP sink on loopback: accepts every message and counts it.

Runs in its own process (so its CPU is neither the client's nor a server's)
with an asyncio loop; the count of messages accepted (final `250` after the
dot) is a shared integer the parent reads without talking to the sink.
Every line and message is bounded; sessions are ended by an idle timeout.
"""

import asyncio
import multiprocessing
import os
import signal
import socket
import time

MAX_LINE = 4096
MAX_MESSAGE = 64 * 1024 * 1024
IDLE_TIMEOUT = 60.0
MAX_COMMANDS = 100000  # per session


async def _session(reader, writer, counter):
    async def send(data):
        writer.write(data)
        await writer.drain()

    # Replies go out at once, as from a real MTA (Postfix's smtpd flushes the
    # replies to a pipelined group together): with Nagle's algorithm on, the
    # second reply of a group waits for the client's delayed ACK (~40 ms),
    # and the sink, not the server under test, sets the pace.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
    try:
        await send(b"220 sink.localdomain ESMTP bench sink\r\n")
        in_tx = False
        for _ in range(MAX_COMMANDS):
            line = await asyncio.wait_for(reader.readuntil(b"\n"), IDLE_TIMEOUT)
            if len(line) > MAX_LINE:
                await send(b"500 5.5.2 line too long\r\n")
                return
            verb = line[:4].upper()
            if verb in (b"EHLO",):
                await send(b"250-sink.localdomain\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                           b"250-SIZE 104857600\r\n250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n")
            elif verb == b"HELO":
                await send(b"250 sink.localdomain\r\n")
            elif verb == b"MAIL":
                in_tx = True
                writer.write(b"250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                writer.write(b"250 2.1.5 Ok\r\n" if in_tx else b"503 5.5.1 MAIL first\r\n")
            elif verb == b"DATA":
                if not in_tx:
                    await send(b"503 5.5.1 MAIL first\r\n")
                    continue
                await send(b"354 go ahead\r\n")
                data = await asyncio.wait_for(reader.readuntil(b"\r\n.\r\n"), IDLE_TIMEOUT)
                if len(data) > MAX_MESSAGE:
                    await send(b"552 5.3.4 too big\r\n")
                    return
                in_tx = False
                with counter.get_lock():
                    counter.value += 1
                await send(b"250 2.0.0 Ok: queued\r\n")
            elif verb == b"RSET":
                in_tx = False
                writer.write(b"250 2.0.0 Ok\r\n")
            elif verb == b"NOOP":
                await send(b"250 2.0.0 Ok\r\n")
            elif verb == b"QUIT":
                await send(b"221 2.0.0 Bye\r\n")
                return
            else:
                await send(b"502 5.5.2 not implemented\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
            ConnectionError, OSError):
        pass
    finally:
        writer.close()


def _serve(sock, counter):
    # The fork inherited the bench's handlers: plain termination here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)

    async def main():
        server = await asyncio.start_server(
            lambda r, w: _session(r, w, counter), sock=sock, limit=MAX_MESSAGE + 1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class Sink:
    """`start()` binds 127.0.0.1:0 and forks the sink; `count()` reads the
    counter; `stop()` terminates it by pid."""

    def __init__(self, name):
        self.name = name
        self.port = None
        self.proc = None
        self.counter = multiprocessing.Value("q", 0)

    def start(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(256)
        self.port = sock.getsockname()[1]
        ctx = multiprocessing.get_context("fork")
        self.proc = ctx.Process(target=_serve, args=(sock, self.counter), daemon=True,
                                name="bench-sink-%s" % self.name)
        self.proc.start()
        sock.close()

    def count(self):
        return self.counter.value

    def wait_for(self, expected, timeout, interval=0.005):
        """Polls until the sink has counted `expected` messages; returns the
        time it did (monotonic) or None at the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if self.counter.value >= expected:
                return now
            if now > deadline or (self.proc is not None and not self.proc.is_alive()):
                return None
            time.sleep(interval)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.is_alive():
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.join(10)
            if self.proc.is_alive():
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.join(5)
        self.proc = None
