"""A worker for the control tests that fails at once: prints to stderr, exits 3."""

import sys

print("crashing on purpose", file=sys.stderr, flush=True)
sys.exit(3)
