#!/usr/bin/python3
"""Many real, moving flows of many users, for `npm run bench:agent`.

  flowgen.py serve ADDR PORT SECONDS CONNECTIONS
      accept up to CONNECTIONS connections and echo what arrives (run inside the bench's
      netns)
  flowgen.py client ADDR PORT CONNECTIONS FIRST_UID USERS SECONDS
      open CONNECTIONS TCP connections, connection i as uid FIRST_UID + i % USERS,
      then once a second send 64 bytes on each and read the echo, as its uid

One process plays every user by switching its real uid with setresuid (the saved uid
stays 0, so it can switch back): ubia attributes a socket to the uid and process doing
the I/O, so each connection stays with its user. No passwd entries are needed: a uid
without a name is still metered. Bounded: exits after SECONDS.
"""
import os
import resource
import selectors
import socket
import sys
import time

MESSAGE = b"x" * 64


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n + 100:
        sys.exit(f"need {n + 100} open files, the hard limit is {hard}: raise it (ulimit -Hn)")
    if soft < n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, hard))


def as_uid(uid):
    os.setresuid(uid, uid, 0)


def as_root():
    os.setresuid(0, 0, 0)


def serve(addr, port, seconds, connections):
    raise_fd_limit(connections)
    listener = socket.create_server((addr, port), family=socket.AF_INET, backlog=4096)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            sock = key.fileobj
            if sock is listener:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(sock)
                sock.close()
                continue
            sock.send(data)


def client(addr, port, connections, first_uid, users, seconds):
    raise_fd_limit(connections)
    socks = []
    for i in range(connections):
        uid = first_uid + i % users
        as_uid(uid)
        try:
            # no name resolution: the user may not read this Python's files
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect((addr, port))
            s.setblocking(False)
        finally:
            as_root()
        socks.append((uid, s))
    print("ready", flush=True)
    # the sending time starts once all are connected: connecting thousands can take longer
    # than `seconds` on a slow machine (a VM without KVM), and then no one would send
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        for uid, s in socks:
            as_uid(uid)
            try:
                s.send(MESSAGE)
                try:
                    s.recv(65536)
                except BlockingIOError:
                    pass
            finally:
                as_root()
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    for _, s in socks:
        s.close()


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "serve":
        serve(args[0], int(args[1]), float(args[2]), int(args[3]))
    elif mode == "client":
        client(args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4]), float(args[5]))
    else:
        sys.exit(f"unknown mode {mode}: serve or client")
