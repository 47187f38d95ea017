"""A legacy worker: prints progress forever, one line a second."""

import time

step = 0
while True:
    step += 1
    print(f"processed batch {step} ({step * 100} items)")
    time.sleep(1.0)
