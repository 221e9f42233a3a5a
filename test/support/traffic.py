#!/usr/bin/env python3
"""The one traffic generator of ubia's tests and benchmarks: known, bounded traffic.
Each command prints one JSON line with what it really moved (bytes as the system calls
returned them), so tests compare the meter against facts, not against intentions. Every
socket has a timeout; servers that serve many connections stop after SECONDS."""
import errno
import fcntl
import json
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import termios
import threading
import time

TIMEOUT = 20


def family(host):
    return socket.AF_INET6 if ':' in host else socket.AF_INET


def out(**kw):
    print(json.dumps(kw), flush=True)


def listen(host, port):
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(8)
    s.settimeout(TIMEOUT)
    out(listening=port, pid=os.getpid())
    return s


def connect(host, port):
    c = socket.create_connection((host, port), timeout=TIMEOUT)
    return c


def read_all(s):
    n = 0
    while True:
        b = s.recv(1 << 16)
        if not b:
            return n
        n += len(b)


def send_bytes(s, total, chunk=1 << 16):
    buf = b'u' * min(chunk, total)
    sent = 0
    while sent < total:
        sent += s.send(buf[: min(len(buf), total - sent)])
    return sent


def retransmitted_once_acked(s):
    """Bytes TCP sent again (tcp_info.tcpi_bytes_retrans, Linux 4.19+), once everything
    written is acknowledged: they cross the wire twice, so wire counts exceed payload
    plus headers by them."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        unsent = struct.unpack('i', fcntl.ioctl(s, termios.TIOCOUTQ, b'\0' * 4))[0]
        if unsent == 0:
            break
        time.sleep(0.01)
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
    return struct.unpack_from('Q', info, 208)[0]  # tcpi_bytes_retrans


def tcp_sink(host, port):
    """accept one connection, read to EOF"""
    s = listen(host, int(port))
    a, _ = s.accept()
    a.settimeout(TIMEOUT)
    out(received=read_all(a), pid=os.getpid())


def tcp_source(host, port, nbytes):
    """accept one connection, send nbytes, close"""
    s = listen(host, int(port))
    a, _ = s.accept()
    a.settimeout(TIMEOUT)
    out(sent=send_bytes(a, int(nbytes)), pid=os.getpid())
    a.close()


def tcp_send(host, port, nbytes, close_now='0'):
    c = connect(host, int(port))
    sent = send_bytes(c, int(nbytes), 1 << 20 if close_now == '1' else 1 << 16)
    lport = c.getsockname()[1]
    if close_now == '1':
        c.close()  # the kernel is still sending what was written
        out(sent=sent, pid=os.getpid(), lport=lport)
        return
    retransmitted = retransmitted_once_acked(c)
    c.close()
    out(sent=sent, pid=os.getpid(), lport=lport, retransmitted=retransmitted)


def tcp_send_on_signal(host, port, first, second):
    """sends FIRST bytes, says `ready` and waits (60 s at most) for SIGUSR1, then sends
    SECOND bytes and closes: the test moves the process (another cgroup) in between"""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    c = connect(host, int(port))
    sent = send_bytes(c, int(first))
    out(ready=sent, pid=os.getpid())
    if signal.sigtimedwait({signal.SIGUSR1}, 60) is None:
        raise SystemExit('no SIGUSR1 within 60 s')
    sent += send_bytes(c, int(second))
    c.close()
    out(sent=sent, pid=os.getpid())


def tcp_recv(host, port):
    c = connect(host, int(port))
    n = read_all(c)
    out(received=n, pid=os.getpid(), lport=c.getsockname()[1])
    c.close()


def tcp_send_slow(host, port, chunks, chunk, delay_ms):
    """a long-running upload: chunks of chunk bytes, delay_ms apart"""
    c = connect(host, int(port))
    sent = 0
    for _ in range(int(chunks)):
        sent += send_bytes(c, int(chunk))
        time.sleep(int(delay_ms) / 1000)
    lport = c.getsockname()[1]
    c.close()
    out(sent=sent, pid=os.getpid(), lport=lport)


def udp_echo(host, port, count):
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.bind((host, int(port)))
    s.settimeout(TIMEOUT)
    out(listening=int(port), pid=os.getpid())
    n = 0
    for _ in range(int(count)):
        data, peer = s.recvfrom(65535)
        n += s.sendto(data, peer)
    out(echoed=n, pid=os.getpid())


def udp_ping(host, port, count, size):
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.settimeout(5)
    s.connect((host, int(port)))
    sent = received = 0
    for i in range(int(count)):
        sent += s.send(bytes([i % 256]) * int(size))
        received += len(s.recv(65535))
    lport = s.getsockname()[1]
    s.close()
    out(sent=sent, received=received, pid=os.getpid(), lport=lport)


def udp_peers(host, ports, count, sizes):
    """an unconnected UDP socket (sendto() without connect(), as resolvers and QUIC
    servers do) sends COUNT datagrams to each port of PORTS on HOST, of the size SIZES
    gives that port (both comma-separated), and reads each echo"""
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.settimeout(5)
    sent = received = 0
    for port, size in zip(ports.split(','), sizes.split(',')):
        for i in range(int(count)):
            sent += s.sendto(bytes([i % 256]) * int(size), (host, int(port)))
            received += len(s.recvfrom(65535)[0])
    lport = s.getsockname()[1]
    s.close()
    out(sent=sent, received=received, pid=os.getpid(), lport=lport)


def fork_send(host, port, parent_bytes, child_bytes):
    """a child process inherits the connected socket and writes on it too"""
    c = connect(host, int(port))
    pid = os.fork()
    if pid == 0:
        send_bytes(c, int(child_bytes))
        os._exit(0)
    os.waitpid(pid, 0)
    sent = send_bytes(c, int(parent_bytes))
    c.close()
    out(parent=os.getpid(), child=pid, parentSent=sent, childSent=int(child_bytes))


def peek_read(host, port):
    """MSG_PEEK first, then the real reads: the bytes must count once"""
    c = connect(host, int(port))
    peeked = len(c.recv(4096, socket.MSG_PEEK | socket.MSG_WAITALL))
    n = read_all(c)
    out(peeked=peeked, received=n, pid=os.getpid())
    c.close()


def tcp_hold(host, port, seconds):
    """accept one connection and do not read for a while (fills the sender's buffers)"""
    s = listen(host, int(port))
    a, _ = s.accept()
    time.sleep(float(seconds))
    a.settimeout(TIMEOUT)
    out(received=read_all(a), pid=os.getpid())


def send_until_eagain(host, port):
    c = connect(host, int(port))
    c.setblocking(False)
    buf = b'e' * 65536
    sent = failures = 0
    deadline = time.time() + 10
    while failures < 50 and time.time() < deadline:
        try:
            sent += c.send(buf)
        except BlockingIOError:
            failures += 1
            time.sleep(0.01)
    c.setblocking(True)
    c.settimeout(TIMEOUT)
    c.close()
    out(sent=sent, eagain=failures, pid=os.getpid())


def pass_fd(host, port, uid_a, gid_a, uid_b, gid_b, nbytes):
    """user A connects, hands the socket to user B over a unix socket; B writes on it"""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a = os.fork()
    if a == 0:
        os.setgroups([])
        os.setresgid(int(gid_a), int(gid_a), int(gid_a))
        os.setresuid(int(uid_a), int(uid_a), int(uid_a))
        c = connect(host, int(port))
        socket.send_fds(left, [b'fd'], [c.fileno()])
        os._exit(0)
    b_r, b_w = os.pipe()
    b = os.fork()
    if b == 0:
        os.setgroups([])
        os.setresgid(int(gid_b), int(gid_b), int(gid_b))
        os.setresuid(int(uid_b), int(uid_b), int(uid_b))
        sent = -1
        try:
            _, fds, _, _ = socket.recv_fds(right, 16, 1)
            c = socket.socket(fileno=fds[0])
            c.settimeout(TIMEOUT)  # the fd arrives non-blocking (A's timeout socket)
            sent = send_bytes(c, int(nbytes))
            c.close()
        finally:
            os.write(b_w, str(sent).encode())
            os._exit(0)
    os.waitpid(a, 0)
    os.waitpid(b, 0)
    out(senderPid=b, connectorPid=a, sent=int(os.read(b_r, 64)))


def become(uid, gid):
    os.setgroups([])
    os.setresgid(int(gid), int(gid), int(gid))
    os.setresuid(int(uid), int(uid), int(uid))


def inetd_send(host, port, uid, gid, nbytes, seconds, root_seconds='0', parent_keeps='0'):
    """root listens and accepts; a child setuid()s to the user and serves the connection
    (the inetd/sshd pattern): sends nbytes spread over `seconds`, then closes. The child
    first holds the connection as root for `root_seconds` (sshd's child works as root
    before it drops privileges). With `parent_keeps`, root keeps its copy until that long
    after the child has ended (sshd's monitor outlives the session child)"""
    s = listen(host, int(port))
    c, _ = s.accept()
    child = os.fork()
    if child == 0:
        s.close()
        time.sleep(float(root_seconds))
        become(uid, gid)
        steps = max(1, int(float(seconds) / 0.1))
        per, sent = int(nbytes) // steps, 0
        for i in range(steps):
            sent += send_bytes(c, per if i < steps - 1 else int(nbytes) - sent)
            time.sleep(float(seconds) / steps)
        c.close()
        os._exit(0)
    if float(parent_keeps) == 0:
        c.close()
    os.waitpid(child, 0)
    time.sleep(float(parent_keeps))
    c.close()
    out(sent=int(nbytes), child=child, pid=os.getpid())


def activated_sink(host, port, uid, gid):
    """socket activation: root creates the listener and keeps it (as systemd does); a
    service process running as the user accepts and reads everything"""
    s = listen(host, int(port))
    r, w = os.pipe()
    service = os.fork()
    if service == 0:
        become(uid, gid)
        c, _ = s.accept()
        c.settimeout(TIMEOUT)
        os.write(w, str(read_all(c)).encode())
        c.close()
        os._exit(0)
    os.waitpid(service, 0)
    s.close()
    out(received=int(os.read(r, 64)), service=service, pid=os.getpid())


def sink(host, port, seconds='1800'):
    """serve every connection until SECONDS pass: each sends an 8-byte big-endian reply
    size, then data until it half-closes, and is answered with that many bytes (so payload
    sizes are known exactly on both sides)"""
    s = listen(host, int(port))
    s.settimeout(1)
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            a, _ = s.accept()
        except socket.timeout:
            continue
        threading.Thread(target=answer, args=(a,), daemon=True).start()


def answer(a):
    a.settimeout(TIMEOUT)
    with a:
        head = b''
        while len(head) < 8:
            b = a.recv(8 - len(head))
            if not b:
                return
            head += b
        read_all(a)
        send_bytes(a, struct.unpack('>Q', head)[0])


def sink_client(host, port, nbytes, reply, ms, pause_ms='0'):
    """to a sink: asks for REPLY bytes, sends NBYTES in even chunks over MS milliseconds,
    half-closes, waits PAUSE_MS (the answer and the sink's FIN arrive: the socket reaches
    CLOSE with the answer unread) and reads the answer to the end"""
    c = connect(host, int(port))
    c.sendall(struct.pack('>Q', int(reply)))
    steps = max(1, round(int(ms) / 50))
    left = int(nbytes)
    for i in range(steps):
        n = left if i == steps - 1 else int(nbytes) // steps
        left -= n
        send_bytes(c, n)
        time.sleep(int(ms) / steps / 1000)
    lport = c.getsockname()[1]
    c.shutdown(socket.SHUT_WR)
    time.sleep(int(pause_ms) / 1000)
    received = read_all(c)
    c.close()
    out(received=received, pid=os.getpid(), lport=lport)


# Many real, moving flows of many users (the agent benchmark, the meter's scale test). One
# process plays every user by switching its real uid with setresuid (the saved uid stays 0,
# so it can switch back): ubia attributes a socket to the uid and process doing the I/O, so
# each connection stays with its user. No passwd entries are needed: a uid without a name
# is still metered.

MESSAGE = b'x' * 64


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n + 100:
        sys.exit(f'need {n + 100} open files, the hard limit is {hard}: raise it (ulimit -Hn)')
    if soft < n + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, hard))


def echo_many(host, port, seconds, connections):
    """accept up to CONNECTIONS connections and echo what arrives, for SECONDS"""
    raise_fd_limit(int(connections))
    listener = socket.create_server((host, int(port)), family=family(host), backlog=4096)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    out(listening=int(port), pid=os.getpid())
    deadline = time.monotonic() + float(seconds)
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


def as_uid(uid):
    os.setresuid(uid, uid, 0)


def many_flows(host, port, connections, first_uid, users, seconds):
    """open CONNECTIONS TCP connections, connection i as uid FIRST_UID + i % USERS, then
    once a second send 64 bytes on each and read the echo, as its uid, for SECONDS"""
    connections, first_uid, users = int(connections), int(first_uid), int(users)
    raise_fd_limit(connections)
    socks = []
    for i in range(connections):
        uid = first_uid + i % users
        as_uid(uid)
        try:
            # no name resolution: the user may not read this Python's files
            s = socket.socket(family(host), socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect((host, int(port)))
            s.setblocking(False)
        finally:
            as_uid(0)
        socks.append((uid, s))
    out(ready=len(socks))
    # the sending time starts once all are connected: connecting thousands can take longer
    # than SECONDS on a slow machine (a VM without KVM), and then no one would send
    deadline = time.monotonic() + float(seconds)
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
                as_uid(0)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    for _, s in socks:
        s.close()
    out(connections=len(socks))


# Steady streams for quota enforcement: what a throttle lets through and when a block
# stops a running transfer, measured where the bytes arrive. Sockets time out after a
# second and the stream goes on until SECONDS pass: a blocked stream shows as stalled
# samples, not as an error.

def samples_reader(s, seconds):
    """reads until EOF or SECONDS pass; cumulative bytes every ~100 ms since the start
    (and the start's wall-clock time, to place other events on the same time line)"""
    s.settimeout(1)
    start, started = time.monotonic(), time.time()
    deadline, n, samples, next_at = start + float(seconds), 0, [], start + 0.1
    last = start  # when the latest byte arrived: a sample is [that time, bytes by then]
    while time.monotonic() < deadline:
        try:
            b = s.recv(1 << 16)
        except (socket.timeout, ConnectionError):
            b = None
        if b == b'':
            break
        if b:
            n += len(b)
            last = time.monotonic()
        if last >= next_at:
            samples.append([round(last - start, 3), n])
            next_at = last + 0.1
    samples.append([round(last - start, 3), n])
    return n, samples, started


def samples_writer(s, seconds):
    """writes until SECONDS pass or the peer is gone; bytes the calls took"""
    s.settimeout(1)
    buf = b'q' * (1 << 16)
    deadline, n = time.monotonic() + float(seconds), 0
    while time.monotonic() < deadline:
        try:
            n += s.send(buf)
        except socket.timeout:
            continue
        except OSError:
            break
    return n


def congestion_control(s):
    """TCP_CC in the environment picks the sending socket's congestion control
    (benchmarks; an unprivileged user may pick only net.ipv4.tcp_allowed_congestion_control)"""
    cc = os.environ.get('TCP_CC')
    if cc:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())


def stream_server(host, port, seconds):
    """accepts one connection; its first byte asks: 'u' (it uploads: read and sample) or
    'd' (it downloads: send) for SECONDS"""
    s = listen(host, int(port))
    a, _ = s.accept()
    a.settimeout(TIMEOUT)
    mode = a.recv(1)
    if mode == b'u':
        n, samples, started = samples_reader(a, seconds)
        out(received=n, samples=samples, started=started)
    else:
        congestion_control(a)
        out(sent=samples_writer(a, seconds))
    a.close()


def stream(host, port, mode, seconds):
    """to a stream server: uploads ('u': send for SECONDS) or downloads ('d': read and
    sample for SECONDS)"""
    c = connect(host, int(port))
    c.sendall(mode.encode())
    out(ready=1)
    if mode == 'u':
        congestion_control(c)
        out(sent=samples_writer(c, seconds))
    else:
        n, samples, started = samples_reader(c, seconds)
        out(received=n, samples=samples, started=started)
    c.close()


def try_send(proto, host, port):
    """one TCP connect() or one UDP sendto(): the errno name it failed with, or null"""
    s = socket.socket(family(host), socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM)
    s.settimeout(5)
    try:
        if proto == 'tcp':
            s.connect((host, int(port)))
        else:
            s.sendto(b'x', (host, int(port)))
        out(error=None)
    except OSError as e:
        out(error=errno.errorcode.get(e.errno, str(e)) if e.errno else type(e).__name__)
    finally:
        s.close()


if __name__ == '__main__':
    cmd, args = sys.argv[1].replace('-', '_'), sys.argv[2:]
    globals()[cmd](*args)
