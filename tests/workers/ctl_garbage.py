"""A worker that prints escape sequences and control characters, then sleeps."""

import sys
import time

sys.stdout.write("\x1b[31mRED\x1b[0m\x1b]0;title\x07 bell\x07 back\x08 end\n")
sys.stdout.write("plain line\n")
sys.stdout.flush()
time.sleep(60)
