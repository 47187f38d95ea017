"""A worker whose daemon escapes: fork, setsid, fork, then ``env -i /bin/sh -c``.

Usage: e2e_escaper.py PIDS_FILE [--quiet] [--ignore-term]

The daemon has no dsup markers, its own session and no living parent but
dsup; it ends as ``exec sleep`` under the same pid. With ``--quiet`` it points
its stdout and stderr at /dev/null (it holds none of the worker's pipes); with
``--ignore-term`` it ignores SIGTERM. Writes the worker's and the daemon's pids
to PIDS_FILE, prints ready, then sleeps.
"""

import os
import sys
import time

out = sys.argv[1]
quiet = "--quiet" in sys.argv
ignore_term = "--ignore-term" in sys.argv
daemon_file = out + ".daemon"
script = (
    ("trap '' TERM; " if ignore_term else "")
    + ("exec >/dev/null 2>&1 </dev/null; " if quiet else "")
    + f"echo $$ > {daemon_file}.tmp && mv {daemon_file}.tmp {daemon_file}; exec sleep 1000"
)
child = os.fork()
if child == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/usr/bin/env", ["env", "-i", "/bin/sh", "-c", script])
    os._exit(0)
os.waitpid(child, 0)
deadline = time.monotonic() + 10
while not os.path.exists(daemon_file) and time.monotonic() < deadline:
    time.sleep(0.01)
with open(daemon_file) as fh:
    daemon = int(fh.read())
with open(out + ".tmp", "w") as fh:
    fh.write(f"{os.getpid()}\n{daemon}\n")
os.rename(out + ".tmp", out)
print("ready", flush=True)
while True:
    time.sleep(60)
