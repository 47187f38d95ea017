"""Write argv[1] lines of noise to stderr at once, then die of an uncaught exception."""

import sys

noise = "".join(f"noise {n:07d} {'z' * 40}\n" for n in range(int(sys.argv[1])))
sys.stderr.write(noise)
sys.stderr.flush()


def fetch() -> None:
    raise RuntimeError("disk full: the real cause")


fetch()
