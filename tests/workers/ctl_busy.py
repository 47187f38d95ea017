"""A worker that spins one CPU core until it is stopped (for CPU-column tests)."""

while True:
    pass
