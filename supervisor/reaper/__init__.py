"""Process trees, stop escalation, stats and orphans: the only importer of psutil."""
