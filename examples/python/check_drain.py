#!/usr/bin/env python3
"""Checks a worker's drain by hand, without systemd: no request may fail while one worker stops.

Binds one listening socket on 127.0.0.1 and passes it, as systemd does in sysmgr's shared-socket
mode, to two copies of the worker command (fd 3, LISTEN_FDS=1, LISTEN_FDNAMES=http, LISTEN_PID
set to each worker's PID). Keep-alive clients send requests back to back (and reconnect on
`Connection: close`, as HTTP clients do); the first worker gets SIGINT and drains while the second
keeps serving. Prints the requests served and failed; exits 1 if any failed or the stopped worker
did not exit 0 within the kill timeout. Bounded: about 3 seconds of load, loopback only.

    python3 examples/python/check_drain.py node examples/node/app.js
    python3 examples/python/check_drain.py python3 examples/python/app.py
    python3 examples/python/check_drain.py target/release/sysmgr-hello
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

CONNECTIONS = 16
KILL_TIMEOUT_MS = 3000


def start_worker(cmd, listener, instance):
    lfd = listener.fileno()
    env = dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES="http", SYSMGR_INSTANCE=str(instance),
               SYSMGR_KILL_TIMEOUT_MS=str(KILL_TIMEOUT_MS))
    env.pop("NOTIFY_SOCKET", None)
    # The shell sets LISTEN_PID to its own PID and execs the worker, which keeps that PID.
    # The socket becomes fd 3 in the child only (here fd 3 may be the event loop's epoll).
    return subprocess.Popen(["sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", *cmd], env=env,
                            pass_fds=(3,), preexec_fn=lambda: os.dup2(lfd, 3))


async def client(port, stop, tally):
    reader = writer = None
    while not stop.is_set() and tally["sent"] < 2_000_000:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: check\r\n\r\n")
            tally["sent"] += 1
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
            if headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size = int((await asyncio.wait_for(reader.readline(), 5)).split(b";")[0], 16)
                    await asyncio.wait_for(reader.readexactly(size + 2), 5)
                    if size == 0:
                        break
            else:
                await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 5)
            if not lines[0].startswith("HTTP/1.1 200"):
                raise RuntimeError(lines[0])
            tally["ok"] += 1
            if headers.get("connection", "").lower() == "close":
                tally["closed"] += 1
                writer.close()
                writer = None
        except Exception as err:  # any way a request can fail counts
            tally["failed"] += 1
            tally["errors"].add(type(err).__name__)
            if writer is not None:
                writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def main(cmd):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    listener.setblocking(False)  # NonBlocking=yes, as sysmgr's units set it
    port = listener.getsockname()[1]
    first = start_worker(cmd, listener, 1)
    await asyncio.sleep(1.0)  # only the first one accepts at first: every client starts on it
    tally = {"sent": 0, "ok": 0, "failed": 0, "closed": 0, "errors": set()}
    stop = asyncio.Event()
    clients = [asyncio.create_task(client(port, stop, tally)) for _ in range(CONNECTIONS)]
    await asyncio.sleep(0.5)
    second = start_worker(cmd, listener, 2)
    await asyncio.sleep(1.0)
    before = tally["ok"]
    t0 = time.monotonic()
    first.send_signal(signal.SIGINT)
    while first.poll() is None and time.monotonic() - t0 < KILL_TIMEOUT_MS / 1000 + 1:
        await asyncio.sleep(0.01)
    took = time.monotonic() - t0
    code = first.poll()
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*clients)
    second.send_signal(signal.SIGINT)
    second.wait(timeout=KILL_TIMEOUT_MS / 1000 + 1)
    if code is None:
        first.kill()
    print(f"{tally['ok']} requests served ({before} before the signal), {tally['failed']} failed "
          f"{sorted(tally['errors'])}, {tally['closed']} answered with Connection: close; "
          f"worker 1 exited with {code} after {took * 1000:.0f} ms")
    return 0 if tally["failed"] == 0 and code == 0 and before > 0 else 1


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(asyncio.run(main(sys.argv[1:])))
