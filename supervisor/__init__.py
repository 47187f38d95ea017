"""dsup: a process supervisor for legacy scripts and AI-agent workers, bridged to Discord.

Layout (one module per concept; see docs/architecture.md):
  config               typed config and its validation
  config_values        what one config value may be; bot token redaction
  preflight            what `dsup check` warns of: cwd, executable, a stop_signal that cannot stop
  supervisord_import   supervisord.conf -> dsup TOML (reading: supervisord_ini;
                       writing TOML text: toml_text)
  errors               the exception hierarchy
  events               records that flow from children to sinks
  policy               restart and backoff decisions
  child, spawn         one process slot; one run of it (Popen, pidfd, pumps)
  slot_state           a slot's state, counters and StateChanged events
  slot, command_queue  a slot's records (status, shared context); its command queue
  pump, framing, logs  draining pipes, splitting lines, rotating log files
  logread              tail and follow of the log files, across rotations
  reaper               process trees and orphans (the only psutil importer; _reaper_*)
  ledger, statedir     sqlite history and audit (records: ledger_records); the locked state dir
  fleet                the set of programs and their processes
  commands, tailing    the one command surface (access levels, audit); tail and follow
  audit                what an audit row says: outcome, summary, cut details
  access, reports      who may run what; the typed results of commands
  action               what a command does to one process
  control, ctl         the local control socket and ``dsup ctl`` (output: ctl_render;
                       the socket client: ctl_client)
  wire, socketfile     the control protocol's encoding; the socket file on disk
  console, terminal    the terminal view of ``dsup run``
  humanize             durations, sizes and signals for ``ctl`` and the console
  runner, cli          a node's life; the ``dsup`` command line
"""

from __future__ import annotations

__version__ = "0.1.0"
