#!/usr/bin/env python3
"""A sysmgr worker in plain Python (3.8 or later, standard library only). See docs/workers.md.

    GET /           instance {SYSMGR_INSTANCE} pid {PID}
    GET /slow?ms=N  the same after N ms
    GET /health     ok

By hand: `python3 app.py` listens on SYSMGR_DEV_LISTEN or 127.0.0.1:3000.
"""

import os
import select
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ENV = os.environ
INSTANCE = ENV.get("SYSMGR_INSTANCE") or ENV.get("NODE_APP_INSTANCE") or "-"

# The drain budget, as sysmgr-worker computes it: the unit's kill timeout (PM2's kill_timeout)
# less a safety margin, and a grace of at most 500 ms for keep-alive connections that are idle.
KILL_TIMEOUT = int(ENV.get("SYSMGR_KILL_TIMEOUT_MS", "1600")) / 1000
MARGIN = min(max(KILL_TIMEOUT / 10, 0.05), 0.5, KILL_TIMEOUT / 2)
BUDGET = KILL_TIMEOUT - MARGIN
IDLE_GRACE = min(0.5, BUDGET / 2)

DRAINING = threading.Event()
ACTIVE = {"connections": 0}
ACTIVE_CHANGED = threading.Condition()


def listening_socket(name="http"):
    """Duty 1: the socket systemd passes (fd 3 onwards, named by LISTEN_FDNAMES); never bind the
    port under sysmgr. Run by hand, bind SYSMGR_DEV_LISTEN instead."""
    if ENV.get("LISTEN_PID") == str(os.getpid()) and int(ENV.get("LISTEN_FDS", "0")) > 0:
        names = ENV.get("LISTEN_FDNAMES", "").split(":")
        if name not in names:
            sys.exit(f"no socket named `{name}` in LISTEN_FDNAMES `{ENV.get('LISTEN_FDNAMES')}`; "
                     "check the socket name in app.toml")
        # The family (IPv4, IPv6, unix) is read from the fd. Leave its blocking mode alone: with
        # a shared socket it is shared by every instance (sysmgr sets NonBlocking=yes).
        return socket.socket(fileno=3 + names.index(name)), f"fd {3 + names.index(name)}"
    dev = ENV.get("SYSMGR_DEV_LISTEN", "127.0.0.1:3000").split(",")[0]
    dev = dev.split("=", 1)[1] if "=" in dev else dev
    if dev.startswith("/"):
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(dev)
    else:
        host, _, port = dev.rpartition(":")
        host = host.strip("[]")
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
    sock.listen(1024)
    return sock, dev


def notify(state):
    """Duty 2: one sd_notify datagram to NOTIFY_SOCKET (`@name` is an abstract address); a no-op
    outside systemd."""
    address = ENV.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(state.encode(), address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients in front of sysmgr use it

    def setup(self):
        # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm holds
        # the second until the client's delayed ACK, 40 ms per request. (TCP only.)
        self.disable_nagle_algorithm = self.request.family != socket.AF_UNIX
        super().setup()

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/":
            self.reply(200, f"instance {INSTANCE} pid {os.getpid()}\n")
        elif url.path == "/health":
            self.reply(200, "ok\n")
        elif url.path == "/slow":
            try:
                ms = min(int(parse_qs(url.query)["ms"][0]), 60000)
            except (KeyError, ValueError):
                return self.reply(400, "`/slow` needs `ms=N`\n")
            time.sleep(ms / 1000)
            self.reply(200, f"slow {ms}ms instance {INSTANCE} pid {os.getpid()}\n")
        else:
            self.reply(404, "not found\n")

    def reply(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def end_headers(self):
        # Duty 3, part 1: once draining, every response says `Connection: close`, so the client
        # sends its next request on a new connection, to another instance. send_header also sets
        # close_connection, so this connection ends after the response.
        if DRAINING.is_set():
            self.send_header("Connection", "close")
        super().end_headers()

    def handle(self):
        with ACTIVE_CHANGED:
            ACTIVE["connections"] += 1
        try:
            self.close_connection = True
            self.handle_one_request()
            while not self.close_connection and self.wait_for_request():
                self.handle_one_request()
        finally:
            with ACTIVE_CHANGED:
                ACTIVE["connections"] -= 1
                ACTIVE_CHANGED.notify_all()

    def wait_for_request(self):
        """Duty 3, part 2: between two requests, wait for the next one; once draining, give up
        only after the connection stayed quiet for the whole grace, so a request already on its
        way is answered rather than meeting a closed socket."""
        quiet_since = None
        while True:
            if self.buffered():
                return True
            readable, _, _ = select.select([self.connection], [], [], IDLE_GRACE / 4)
            if readable:
                return True  # a request (or the client's close): handle_one_request sees which
            if DRAINING.is_set():
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= IDLE_GRACE:
                    return False

    def buffered(self):
        """Whether bytes of a next (pipelined) request already sit in rfile's buffer."""
        self.connection.setblocking(False)
        try:
            return bool(self.rfile.peek(1))
        except (BlockingIOError, TypeError):
            return False
        finally:
            self.connection.setblocking(True)

    def log_message(self, format, *args):
        pass  # no line per request in the journal


def main():
    sock, where = listening_socket()
    server = ThreadingHTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
    server.socket = sock
    server.daemon_threads = True

    def on_signal(signum, _frame):
        if DRAINING.is_set():
            print(f"app: instance {INSTANCE} pid {os.getpid()} second signal, stopping now",
                  file=sys.stderr)
            os._exit(0)
        DRAINING.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # Python runs a signal handler in the main thread only, but the kernel may hand a signal to
    # any thread that does not block it. Taken by a connection's thread, it only marks the
    # handler as due, and the main thread, asleep in DRAINING.wait() below, never runs it: no
    # drain, SIGKILL at kill_timeout, every keep-alive request in flight cut. So the signals
    # are blocked in every other thread (threads inherit the mask of the thread that starts
    # them: the serving thread here, the connection threads from it) and the main thread alone
    # takes them.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
    # READY only once the server accepts (PM2's process.send('ready') with wait_ready).
    notify("READY=1")
    notify(f"STATUS=serving on {where}")
    print(f"app: instance {INSTANCE} pid {os.getpid()} ready on {where}", file=sys.stderr)

    DRAINING.wait()
    deadline = time.monotonic() + BUDGET
    notify("STOPPING=1")
    # Stop accepting: with a shared socket, the other instances take the queue from here. Only
    # this process's copy of the fd is closed; systemd keeps the socket.
    server.shutdown()
    server.socket.close()
    with ACTIVE_CHANGED:
        while ACTIVE["connections"] > 0 and time.monotonic() < deadline:
            ACTIVE_CHANGED.wait(deadline - time.monotonic())
        left = ACTIVE["connections"]
    print(f"app: instance {INSTANCE} pid {os.getpid()} drained, {left} connections cut at the "
          "deadline", file=sys.stderr)
    # Handler threads are daemons: any still running (cut at the deadline) end with the process.
    sys.exit(0)


if __name__ == "__main__":
    main()
