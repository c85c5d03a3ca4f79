"""HTTP peers for tests/integration/culprit.rs, each a process of its own so that twtune can name it.

    http_peers.py server PORT             an HTTP/1.1 server on 127.0.0.1:PORT answering every GET
                                          with 200 after 50 ms of work, keeping the connection open
                                          (keep-alive)
    http_peers.py requests PORT WORKERS   WORKERS threads calling requests.get() in a loop, without a
                                          Session: each call opens a connection and closes it

Each prints "ready" once its listener (or its threads) exist, then runs until killed. The client
mode needs the `requests` package (the test virtual environment has it).
"""

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        # Work long enough for the reads of a sample to see the client's connection live.
        time.sleep(0.05)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "server":
        server = ThreadingHTTPServer(("127.0.0.1", port), Answer)
        server.daemon_threads = True
        print("ready", flush=True)
        server.serve_forever()
    elif mode == "requests":
        import requests

        def loop():
            while True:
                try:
                    requests.get(f"http://127.0.0.1:{port}/", timeout=5)
                except requests.RequestException:
                    time.sleep(0.1)

        for _ in range(int(sys.argv[3])):
            threading.Thread(target=loop, daemon=True).start()
        print("ready", flush=True)
        threading.Event().wait()
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
