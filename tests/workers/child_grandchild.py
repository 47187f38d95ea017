"""Start a grandchild that inherits stdout and sleeps, print its pid, and exit 0."""

import subprocess
import sys

grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(f"grandchild {grandchild.pid}", flush=True)
# Exit without waiting: the grandchild keeps our stdout pipe open.
