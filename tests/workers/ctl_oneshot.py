"""A one-shot worker for the control tests: prints "done", exits with argv[1] (default 0)."""

import sys

print("done", flush=True)
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
