"""The Discord bridge: the only package that imports ``discord``.

This ``__init__`` imports nothing, so ``supervisor.bridge`` costs a node without
Discord nothing; ``node`` imports ``supervisor.bridge.bridge`` only when the config
has ``[discord]`` and ``dsup run`` was not given ``--no-discord``.
"""
