"""dsup: a process supervisor for legacy scripts and AI-agent workers, bridged to Discord.

The import name is ``supervisor``, like supervisord's; docs/architecture.md maps its packages.
"""

from __future__ import annotations

__version__ = "0.1.0"
