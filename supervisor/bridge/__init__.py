"""The Discord bridge: the only package that imports ``discord``.

This ``__init__`` imports nothing, so a node without ``[discord]`` (or run with
``--no-discord``) never loads discord.py.
"""
