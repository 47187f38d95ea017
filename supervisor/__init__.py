"""dsup: a process supervisor for legacy scripts and AI-agent workers, bridged to Discord.

Layout (one module per concept; see docs/architecture.md):
  config    typed config, validation, supervisord import
  errors    the exception hierarchy
  events    records that flow from children to sinks
  policy    restart and backoff decisions
  child     one child process: spawn, drain, stop
  reaper    process trees and orphans (the only psutil importer)
  fleet     the set of programs and their processes
  cli       the ``dsup`` command line
"""

from __future__ import annotations

__version__ = "0.1.0"
