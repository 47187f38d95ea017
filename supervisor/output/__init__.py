"""A worker's output: draining pipes, framing lines, rotating log files, reading them back."""
