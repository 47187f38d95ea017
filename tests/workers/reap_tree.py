"""A worker with a process tree, for the reaper tests.

Usage: reap_tree.py [--children N] [--bare] [--daemon] [--ignore-term]
                    [--fork-on-term] [--exit]

--children N    fork N children that wait for signals (same group and session)
--bare          spawn one child with an empty environment (no dsup markers)
--daemon        double-fork a daemon that calls setsid (leaves group and session)
--ignore-term   ignore SIGTERM (in this process and the forked children)
--fork-on-term  on SIGTERM, double-fork a new setsid daemon, then exit
--exit          exit 0 once everything is started (leaving the rest behind)

Prints one line "ready kind=pid ..." once every process is started.
"""

import argparse
import os
import signal
import subprocess
import sys

PAUSE = "import signal\nwhile True:\n    signal.pause()\n"


def pause_forever():
    while True:
        signal.pause()


def double_fork():
    """Start a setsid daemon; return its pid."""
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.close(r)
        os.setsid()
        if os.fork() == 0:
            os.write(w, str(os.getpid()).encode())
            os.close(w)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            pause_forever()
        os._exit(0)
    os.close(w)
    os.waitpid(middle, 0)
    with os.fdopen(r) as f:
        return int(f.read())


def on_term(signum, frame):
    double_fork()
    os._exit(0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--children", type=int, default=0)
    parser.add_argument("--bare", action="store_true")
    parser.add_argument("--daemon", action="store_true")
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--fork-on-term", action="store_true")
    parser.add_argument("--exit", action="store_true")
    args = parser.parse_args()
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    started = []
    for _ in range(args.children):
        pid = os.fork()
        if pid == 0:
            pause_forever()
        started.append(f"child={pid}")
    if args.bare:
        bare = subprocess.Popen([sys.executable, "-c", PAUSE], env={}, stdin=subprocess.DEVNULL)
        started.append(f"bare={bare.pid}")
    if args.daemon:
        started.append(f"daemon={double_fork()}")
    if args.fork_on_term:
        signal.signal(signal.SIGTERM, on_term)
    # One write: under -u, print writes each piece apart, and a launcher sharing
    # this stdout could slip its own line in between.
    os.write(1, (" ".join(["ready", *started]) + "\n").encode())
    if args.exit:
        os._exit(0)
    pause_forever()


main()
