"""Leave an orphan that dies soon: it is re-parented to the subreaper, then a zombie.

Forks a child that exits after a short pause, prints its pid, and exits at once.
"""

import os
import sys
import time

pid = os.fork()
if pid == 0:
    time.sleep(0.3)
    os._exit(0)
print(pid, flush=True)
sys.exit(0)
