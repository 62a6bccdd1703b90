"""The captured training step as a C program a device runs.

``export_project`` writes a self-contained C99 project from the same captured step and static
memory plan that ``estimate_step`` reports; ``run_project`` builds and runs it (host, qemu RV32,
GAP SDK) and compares it with PyTorch; ``adapt_on_device`` runs a subject's fine-tuning through it.
See docs/device.md, "The step as a program".
"""

from .adapt import adapt_on_device
from .project import export_project
from .runner import TARGETS, ToolMissing, missing_tools, run_project

__all__ = ["TARGETS", "ToolMissing", "adapt_on_device", "export_project", "missing_tools", "run_project"]
