"""A shell's job control, no more: ``console_shell.py ARGV...`` (on its controlling terminal).

Runs ARGV as the terminal's foreground job in a process group of its own, as an
interactive shell does, so Ctrl-Z typed on the terminal stops the job unless it
handles SIGTSTP (the job's group has a parent in the session: it is not an
orphaned group, whose stop signals the kernel would discard). Prints
``[job PID in the foreground]`` once the job has the terminal and ``[job PID
stopped]`` if it stops; SIGTERM and SIGCONT are passed on to the job. Exits
with the job's exit code.
"""

import contextlib
import os
import signal
import subprocess
import sys

job = subprocess.Popen(sys.argv[1:], process_group=0)


def forward(signum, _frame):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(job.pid, signum)


for forwarded in (signal.SIGTERM, signal.SIGCONT):
    signal.signal(forwarded, forward)
signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # tcsetpgrp from a background group
os.tcsetpgrp(0, job.pid)
print(f"[job {job.pid} in the foreground]", flush=True)
while True:
    _, status = os.waitpid(job.pid, os.WUNTRACED)
    if os.WIFSTOPPED(status):
        print(f"[job {job.pid} stopped]", flush=True)
        continue
    job.returncode = os.waitstatus_to_exitcode(status)
    sys.exit(job.returncode if job.returncode >= 0 else 128 - job.returncode)
