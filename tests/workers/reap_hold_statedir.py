"""Open a dsup state dir and hold it until stdin closes.

Usage: reap_hold_statedir.py STATE_DIR
Prints "held <instance_id>" once it holds the lock, or "locked <holder_pid>" if
another process holds it (then exits 3).
"""

import sys
from pathlib import Path

from supervisor.errors import StateDirLocked
from supervisor.state.statedir import open_state_dir

try:
    with open_state_dir(Path(sys.argv[1])) as state:
        print("held", state.instance_id, flush=True)
        sys.stdin.read()
except StateDirLocked as exc:
    print("locked", exc.holder_pid, flush=True)
    sys.exit(3)
