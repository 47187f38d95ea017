"""Print "run R line N" for N below argv[2], R counting runs in the file argv[1]; then stay."""

import sys
import time
from pathlib import Path

counter = Path(sys.argv[1])
run = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(run))
print("\n".join(f"run {run} line {n}" for n in range(int(sys.argv[2]))), flush=True)
while True:
    time.sleep(60)
