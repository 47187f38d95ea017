"""The local control socket and `dsup ctl`."""
