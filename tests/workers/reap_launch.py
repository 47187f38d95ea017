"""Start reap_tree.py in a new session and exit at once, orphaning it.

Usage: reap_launch.py INSTANCE RUN_ID [reap_tree.py options...]

Simulates a dsup that died: the worker keeps running with its markers but its
parent is gone. The worker inherits this process's stdout, so the caller reads
its "ready" line; this process prints "pid N" first.
"""

import os
import subprocess
import sys
from pathlib import Path

instance, run_id, *args = sys.argv[1:]
env = dict(os.environ, DSUP_INSTANCE=instance, DSUP_RUN_ID=run_id, DSUP_PROCESS="w:0")
worker = subprocess.Popen(
    [sys.executable, "-u", str(Path(__file__).with_name("reap_tree.py")), *args],
    env=env,
    stdin=subprocess.DEVNULL,
    start_new_session=True,
)
os.write(1, f"pid {worker.pid}\n".encode())  # one write: the worker shares this stdout
os._exit(0)
