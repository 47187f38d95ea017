"""The configuration: the TOML contract, its values, `dsup check`'s preflight, and the
supervisord importer."""
