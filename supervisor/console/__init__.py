"""The console of `dsup run`."""
