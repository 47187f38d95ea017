"""A chatty worker: prints ``talk N`` about 200 times a second until it is stopped."""

import itertools
import time

for n in itertools.count():
    print(f"talk {n}", flush=True)
    time.sleep(0.005)  # pacing, not synchronisation
