"""TCP peers for the namespace tests, each a process of its own so that twtune can name it.

    peers.py server PORT              accept, read until the client closes, then close (the client
                                      closes first: TIME_WAIT on the client side)
    peers.py hold PORT N              open N connections to 127.0.0.1:PORT and keep them
    peers.py churn PORT WORKERS MS    WORKERS loops: connect, send a request, wait for the answer,
                                      hold MS milliseconds, close (no reuse; the client closes)
    peers.py pool PORT N              N long-lived connections, a request on each every 20 ms
    peers.py closed PORT N            N connections, each used for a request and closed (the client
                                      closes first), one after the other
    peers.py fill PORT                connect (1 s timeout) and keep each connection until one
                                      fails; print how many succeeded, then hold them
    peers.py silent PORT              accept and read, never answer (a server slower than any timeout)
    peers.py slow PORT MS             accept, and answer each request MS milliseconds after it came
    peers.py closing PORT             accept, answer one request, then close at once (the server
                                      closes first: the peer closing, as the client sees it)
    peers.py timeout PORT WORKERS MS  WORKERS loops: connect, send a request, wait MS milliseconds for
                                      the answer, and on that timeout close the connection (the
                                      client of the story: it closes instead of pooling)
    peers.py per-request PORT RATE MS RATE times a second: connect, one request, MS milliseconds of
                                      work on the answer, close
    peers.py rapid PORT RATE          RATE times a second, in one thread: connect, one request,
                                      close at once (connections that live well under a millisecond)
    peers.py servers PORTS            `server` on each port of the comma-separated PORTS
    peers.py mix PORTS HELD CLOSED    toward each of PORTS: CLOSED connections, each used for a
                                      request and closed (the client closes first), then HELD kept
    peers.py patient PORTS SECONDS    toward each of PORTS at once, one connect at a time with a
                                      SECONDS timeout (waiting through SYN retransmissions), each
                                      connection kept, until one fails; print "PORT ADMITTED SLOW"
                                      per port on one line (SLOW: connects that took 0.9 s or more,
                                      their first SYN lost), then hold them
    peers.py fail-connect PORT        connect and keep each connection until one fails with
                                      EADDRNOTAVAIL; then, for each number N read on stdin, make N
                                      connects, each of which must fail so, and print "failed N"
                                      (PEER_LISTEN=1: with a listener of its own on PORT)
    peers.py fail-bind PORT ADDR      bind (ADDR, 0) and connect, keeping each connection, until
                                      bind fails with EADDRINUSE; then, for each N read on stdin,
                                      make N such binds, each of which must fail so; "failed N"

Each prints "ready" once its connections (or listener) exist, then runs until killed. The address
is 127.0.0.1, or PEER_HOST from the environment.
"""

import errno
import os

import socket
import sys
import threading
import time


HOST = os.environ.get("PEER_HOST", "127.0.0.1")


def listening(port):
    """A listener on HOST:port, said ready."""
    listener = socket.socket(socket.AF_INET6 if ":" in HOST else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, port))
    listener.listen(1024)
    print("ready", flush=True)
    return listener


def threaded(port, handle, listener=None):
    """Accepts on HOST:port for ever, each connection handled by handle(conn) in a thread."""
    listener = listener or listening(port)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def serve(port, listener=None):
    def answer(conn):
        with conn:
            while True:
                data = conn.recv(64)
                if not data:
                    return
                conn.sendall(b"ok")

    threaded(port, answer, listener)


def silent(port):
    def drain(conn):
        with conn:
            while conn.recv(64):
                pass

    threaded(port, drain)


def slow(port, delay):
    def answer(conn):
        with conn:
            while conn.recv(64):
                time.sleep(delay)
                conn.sendall(b"ok")

    threaded(port, answer)


def closing(port):
    listener = listening(port)
    while True:
        conn, _ = listener.accept()
        with conn:
            if conn.recv(64):
                conn.sendall(b"ok")


def rapid(port, rate):
    print("ready", flush=True)
    start, made = time.monotonic(), 0
    while True:
        time.sleep(max(0.0, start + made / rate - time.monotonic()))
        made += 1
        conn = socket.create_connection((HOST, port))
        request(conn)
        conn.close()


def request(conn):
    conn.sendall(b"GET")
    conn.recv(2)


def listening_quietly(port):
    listener = socket.socket(socket.AF_INET6 if ":" in HOST else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, port))
    listener.listen(1024)
    return listener


def fail(port, local):
    """Holds connections to HOST:port until the ports run out, then fails on demand (see above)."""
    expected = errno.EADDRINUSE if local else errno.EADDRNOTAVAIL

    def attempt():
        conn = socket.socket()
        try:
            if local:
                conn.bind((local, 0))
            conn.connect((HOST, port))
        except OSError as e:
            conn.close()
            if e.errno != expected:
                raise
            return None
        return conn

    # PEER_LISTEN=1: the listener is this process's own (a namespace with no other peer).
    listener = listening_quietly(port) if os.environ.get("PEER_LISTEN") else None
    held = [listener] if listener else []
    while True:
        conn = attempt()
        if conn is None:
            break
        held.append(conn)
    print("ready", flush=True)
    for line in sys.stdin:
        n = int(line)
        for _ in range(n):
            assert attempt() is None, "a call succeeded"
        print("failed", n, flush=True)
    while held:
        time.sleep(3600)


def ports(text):
    return [int(p) for p in text.split(",")]


def mix(targets, held, closed):
    kept = []
    for port in targets:
        for _ in range(closed):
            conn = socket.create_connection((HOST, port))
            request(conn)
            conn.close()
        kept.extend(socket.create_connection((HOST, port)) for _ in range(held))
    print("ready", flush=True)
    while kept:
        time.sleep(3600)


def patient(targets, seconds):
    results, kept = {}, []

    def fill(port):
        admitted, slow = 0, 0
        while True:
            started = time.monotonic()
            try:
                kept.append(socket.create_connection((HOST, port), timeout=seconds))
            except OSError:
                break
            admitted += 1
            slow += time.monotonic() - started >= 0.9
        results[port] = (admitted, slow)

    threads = [threading.Thread(target=fill, args=(port,)) for port in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(" ".join(f"{p}:{results[p][0]}:{results[p][1]}" for p in targets), flush=True)
    while kept:
        time.sleep(3600)


def main():
    if sys.argv[1] == "servers":
        listeners = [(port, listening_quietly(port)) for port in ports(sys.argv[2])]
        print("ready", flush=True)
        for port, listener in listeners:
            threading.Thread(target=serve, args=(port, listener), daemon=True).start()
        while True:
            time.sleep(3600)
    if sys.argv[1] == "mix":
        mix(ports(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    if sys.argv[1] == "patient":
        patient(ports(sys.argv[2]), float(sys.argv[3]))
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "server":
        serve(port)
    elif mode == "hold":
        held = [socket.create_connection((HOST, port)) for _ in range(int(sys.argv[3]))]
        print("ready", flush=True)
        while held:
            time.sleep(3600)
    elif mode == "churn":
        workers, hold = int(sys.argv[3]), int(sys.argv[4]) / 1000.0

        def loop():
            while True:
                conn = socket.create_connection((HOST, port))
                request(conn)
                time.sleep(hold)
                conn.close()

        for _ in range(workers):
            threading.Thread(target=loop, daemon=True).start()
        print("ready", flush=True)
        while True:
            time.sleep(3600)
    elif mode == "pool":
        pool = [socket.create_connection((HOST, port)) for _ in range(int(sys.argv[3]))]
        print("ready", flush=True)
        while True:
            for conn in pool:
                request(conn)
            time.sleep(0.02)
    elif mode == "closed":
        for _ in range(int(sys.argv[3])):
            conn = socket.create_connection((HOST, port))
            request(conn)
            conn.close()
        time.sleep(0.2)
        print("ready", flush=True)
        while True:
            time.sleep(3600)
    elif mode == "fill":
        held = []
        while True:
            try:
                held.append(socket.create_connection((HOST, port), timeout=1.0))
            except OSError:
                break
        print(len(held), flush=True)
        while held:
            time.sleep(3600)
    elif mode == "silent":
        silent(port)
    elif mode == "slow":
        slow(port, int(sys.argv[3]) / 1000.0)
    elif mode == "closing":
        closing(port)
    elif mode == "rapid":
        rapid(port, int(sys.argv[3]))
    elif mode == "timeout":
        workers, timeout = int(sys.argv[3]), int(sys.argv[4]) / 1000.0

        def loop():
            while True:
                conn = socket.create_connection((HOST, port))
                conn.settimeout(timeout)
                try:
                    request(conn)
                except socket.timeout:
                    pass
                conn.close()

        for _ in range(workers):
            threading.Thread(target=loop, daemon=True).start()
        print("ready", flush=True)
        while True:
            time.sleep(3600)
    elif mode == "per-request":
        rate, work = int(sys.argv[3]), int(sys.argv[4]) / 1000.0

        def once():
            conn = socket.create_connection((HOST, port))
            request(conn)
            time.sleep(work)
            conn.close()

        print("ready", flush=True)
        start, made = time.monotonic(), 0
        while True:
            time.sleep(max(0.0, start + made / rate - time.monotonic()))
            made += 1
            threading.Thread(target=once, daemon=True).start()
    elif mode == "fail-connect":
        fail(port, None)
    elif mode == "fail-bind":
        fail(port, sys.argv[3])
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
