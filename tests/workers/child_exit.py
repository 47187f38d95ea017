"""Exit with the status argv[1], after sleeping argv[2] seconds (default 0)."""

import sys
import time

print("started", flush=True)
if len(sys.argv) > 2:
    time.sleep(float(sys.argv[2]))
sys.exit(int(sys.argv[1]))
