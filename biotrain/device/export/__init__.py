"""The captured training step as a C program a device runs.

``export_project`` writes a self-contained C99 project from the same captured step and static
memory plan that ``estimate_step`` reports; ``run_project`` builds and runs it (host, qemu RV32,
GAP SDK) and compares it with PyTorch; ``adapt_on_device`` runs a subject's fine-tuning through it.
See docs/device.md, "The step as a program".

The names are imported on first use: the op table (``device/ops``) imports ``export.l1`` for its
emitters while the cost side loads it, and the project writer imports the op table back.
"""

from importlib import import_module

_HOME = {"adapt_on_device": ".adapt", "export_project": ".project", "TARGETS": ".runner", "ToolMissing": ".runner",
         "missing_tools": ".runner", "run_project": ".runner"}

__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name in _HOME:
        return getattr(import_module(_HOME[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
