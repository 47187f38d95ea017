"""A legacy worker that crashes now and then."""

import random
import sys
import time

for i in range(random.randint(3, 8)):
    print(f"working on item {i}")
    time.sleep(1.0)
print("something went wrong: connection reset by peer", file=sys.stderr)
sys.exit(1)
