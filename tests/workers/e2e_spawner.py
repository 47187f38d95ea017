"""A worker that leaves a tree behind: a grandchild and a double-forked daemon.

Writes "pid create_time" lines for itself, the grandchild and the daemon to the file
named in argv[1], then prints ready and sleeps.
"""

import os
import subprocess
import sys
import time

out = sys.argv[1]
sleeper = [sys.executable, "-c", "import time\nwhile True: time.sleep(60)"]
grandchild = subprocess.Popen(sleeper)

read_end, write_end = os.pipe()
if os.fork() == 0:  # first fork: becomes session leader, forks the daemon, exits
    os.setsid()
    daemon = subprocess.Popen(sleeper, start_new_session=True)
    os.write(write_end, f"{daemon.pid}\n".encode())
    os._exit(0)
os.close(write_end)
daemon_pid = int(os.read(read_end, 64).decode())
os.wait()

with open(out + ".tmp", "w") as fh:
    for pid in (os.getpid(), grandchild.pid, daemon_pid):
        fh.write(f"{pid}\n")
os.rename(out + ".tmp", out)
print("ready", flush=True)
while True:
    time.sleep(60)
