"""Ways a terminal goes away under `twtune watch`, each on a pseudo-terminal of its own.

    terminal.py SCENARIO TWTUNE [ARGS...]

runs TWTUNE ARGS (`watch ...`) on a new pseudo-terminal, in a session of its own whose leader (this
script's child) ignores SIGHUP and stays, so that twtune is told of a hang-up by its terminal alone,
never by a signal. Once the first frame is drawn, SCENARIO happens; then one line of JSON says what
twtune did: {"ended": seconds until it ended or null, "cpu": its CPU seconds over the 2 s after
(when it still ran), "state": its state then, "drew": whether it drew a frame after the scenario,
"asked": whether it ever asked the terminal a question (ESC [ 6 n)}.

Scenarios: close (the terminal closes: its master side), cont-close (a SIGCONT, which redraws, and
the terminal closing at once), stop-close-cont (stopped, the terminal closes, continued), storm (50
SIGTSTP and SIGCONT, then continued), stopped (one SIGTSTP), term (SIGTERM), stopped-term (SIGTSTP,
then SIGTERM and SIGCONT as a shell's kill sends them), eio (twtune in a background process group
that ignores SIGTTIN, where reading the terminal fails with EIO: a key is typed).
"""

import fcntl
import json
import os
import pty
import select
import signal
import sys
import termios
import time

HZ = os.sysconf("SC_CLK_TCK")


def stat(pid):
    """(state, CPU seconds) of pid, or None once it has ended (or is a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] in "ZX":
        return None
    return fields[0], (int(fields[11]) + int(fields[12])) / HZ


def spawn(argv, background):
    """twtune on a new terminal: the master's fd and twtune's pid (the leader's child)."""
    master, slave = pty.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, b"\x18\x00\x50\x00\x00\x00\x00\x00")  # 24 x 80
    ready_r, ready_w = os.pipe()
    leader = os.fork()
    if leader == 0:
        os.close(master)
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        child = os.fork()
        if child == 0:
            if background:
                os.setpgid(0, 0)
                signal.signal(signal.SIGTTIN, signal.SIG_IGN)
                signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            os.execv(argv[0], argv)
        os.write(ready_w, f"{child}\n".encode())
        while True:
            signal.pause()
    os.close(slave)
    pid = int(os.read(ready_r, 64).decode())
    return master, pid, leader


class Screen:
    """What twtune wrote, read as it comes so that it never waits to write."""

    def __init__(self, master):
        self.master = master
        self.seen = b""
        self.asked = False

    def read(self, seconds):
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0 and self.master is not None:
            if select.select([self.master], [], [], left)[0]:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    data = b""
                if not data:
                    return
                self.seen += data
                self.asked |= b"\x1b[6n" in self.seen
                self.seen = self.seen[-65536:]

    def wait_for(self, text, seconds=20):
        end = time.monotonic() + seconds
        while text not in self.seen:
            if time.monotonic() > end:
                raise SystemExit(f"no {text!r} within {seconds} s: {self.seen[-500:]!r}")
            self.read(0.1)

    def close(self):
        os.close(self.master)
        self.master = None


def ended_within(pid, seconds):
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if stat(pid) is None:
            return round(time.monotonic() - start, 3)
        time.sleep(0.01)
    return None


def scenario(name, screen, pid):
    """Does `name` to twtune; returns whether a frame is expected afterwards."""
    if name == "close":
        screen.close()
    elif name == "cont-close":
        os.kill(pid, signal.SIGCONT)
        screen.read(0.05)
        screen.close()
    elif name == "stop-close-cont":
        os.kill(pid, signal.SIGSTOP)
        time.sleep(0.2)
        screen.close()
        time.sleep(0.2)
        os.kill(pid, signal.SIGCONT)
    elif name == "storm":
        for _ in range(50):
            os.kill(pid, signal.SIGTSTP)
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.3)
        os.kill(pid, signal.SIGCONT)
        return True
    elif name == "stopped":
        os.kill(pid, signal.SIGTSTP)
    elif name == "term":
        os.kill(pid, signal.SIGTERM)
    elif name == "stopped-term":
        os.kill(pid, signal.SIGTSTP)
        time.sleep(0.3)
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)
    elif name == "eio":
        os.write(screen.master, b"x")
    else:
        raise SystemExit(f"unknown scenario {name}")
    return False


def main():
    name, argv = sys.argv[1], sys.argv[2:]
    master, pid, leader = spawn(argv, background=name == "eio")
    screen = Screen(master)
    try:
        screen.wait_for(b"TWRecycled")
        screen.seen = b""
        redraw = scenario(name, screen, pid)
        if redraw:
            screen.wait_for(b"TWRecycled", 5)
        ended = ended_within(pid, 1.0)
        result = {"ended": ended, "drew": redraw, "asked": screen.asked}
        if ended is None:
            before = stat(pid)
            screen.read(2.0) if screen.master is not None else time.sleep(2.0)
            after = stat(pid)
            result["cpu"] = round(after[1] - before[1], 3) if before and after else 0.0
            result["state"] = after[0] if after else "ended"
        print(json.dumps(result), flush=True)
    finally:
        for p in (pid, leader):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.waitpid(leader, 0)


if __name__ == "__main__":
    main()
