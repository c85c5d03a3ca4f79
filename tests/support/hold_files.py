"""Holds N open files (/dev/null) and one loopback TCP connection on PORT, then prints `ready`
and sleeps until killed: a process with a large fd table, for the owner lookup's budget.

    python3 hold_files.py N PORT
"""

import os
import resource
import socket
import sys
import time

count, port = int(sys.argv[1]), int(sys.argv[2])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
files = [os.open("/dev/null", os.O_RDONLY) for _ in range(min(count, hard - 32))]
listener = socket.socket()
listener.bind(("127.0.0.1", port))
listener.listen(8)
client = socket.create_connection(("127.0.0.1", port))
server, _ = listener.accept()
print("ready", flush=True)
time.sleep(600)
