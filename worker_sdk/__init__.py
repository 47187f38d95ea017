"""Stdlib-only helpers for workers supervised by dsup."""
