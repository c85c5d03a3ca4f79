"""HTTP peers for tests/integration/culprit.rs, each a process of its own so that twtune can name it.

    http_peers.py server PORT             an HTTP/1.1 server on 127.0.0.1:PORT answering every GET
                                          with 200 after 50 ms of work, keeping the connection open
                                          (keep-alive)
    http_peers.py requests PORT WORKERS   WORKERS threads calling requests.get() in a loop, without a
                                          Session: each call opens a connection and closes it
    http_peers.py backend PORT            as server, but keeping the connection open even when the
                                          request asks to close it (Connection: close, HTTP/1.0), so
                                          that the client (nginx) is the one that closes
    http_peers.py session PORT WORKERS    WORKERS threads sharing one requests.Session (keep-alive):
                                          load that reuses its connections
    http_peers.py aiohttp PORT WORKERS    WORKERS tasks each making an aiohttp.ClientSession per
                                          request: each request opens a connection and closes it

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


class Lingering(Answer):
    def handle_one_request(self):
        super().handle_one_request()
        # Keep the connection for the client to close, whatever the request asked.
        if self.raw_requestline:
            self.close_connection = False


def session(port, workers):
    import requests

    shared = requests.Session()
    shared.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=workers))

    def loop():
        while True:
            try:
                shared.get(f"http://127.0.0.1:{port}/", timeout=5).content
            except requests.RequestException:
                time.sleep(0.1)

    for _ in range(workers):
        threading.Thread(target=loop, daemon=True).start()


def per_request_sessions(port, workers):
    import asyncio

    import aiohttp

    async def loop():
        while True:
            try:
                async with aiohttp.ClientSession() as client:
                    async with client.get(f"http://127.0.0.1:{port}/") as response:
                        await response.read()
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)

    async def run():
        tasks = [asyncio.create_task(loop()) for _ in range(workers)]
        print("ready", flush=True)
        await asyncio.gather(*tasks)

    asyncio.run(run())


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode in ("server", "backend"):
        server = ThreadingHTTPServer(("127.0.0.1", port), Answer if mode == "server" else Lingering)
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
    elif mode == "session":
        session(port, int(sys.argv[3]))
        print("ready", flush=True)
        threading.Event().wait()
    elif mode == "aiohttp":
        per_request_sessions(port, int(sys.argv[3]))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
