"""Print "ready" and the DSUP_* environment as JSON, then sleep until killed.

With argv[1] == "ignore-term", SIGTERM is ignored first.
"""

import json
import os
import signal
import sys
import time

if sys.argv[1:] == ["ignore-term"]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
env = {k: v for k, v in os.environ.items() if k.startswith("DSUP_") or k.startswith("CHILD_")}
env["PYTHONUNBUFFERED"] = os.environ.get("PYTHONUNBUFFERED", "")
print("ready " + json.dumps(env), flush=True)
print("to stderr", file=sys.stderr, flush=True)
while True:
    time.sleep(60)
