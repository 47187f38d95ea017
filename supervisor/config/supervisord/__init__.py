"""`dsup import-supervisord`: reading supervisord.conf and writing dsup TOML."""
