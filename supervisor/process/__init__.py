"""Processes: a slot (program:index) and its life, its state machine, its mailbox, one
run, the restart policy, and the fleet."""
