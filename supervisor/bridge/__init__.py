"""Discord bridge: the only package that imports discord."""
