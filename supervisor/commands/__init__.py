"""The one command surface: access levels, audit, the typed results of commands, tail."""
