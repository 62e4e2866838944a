"""Caption teachers, one per module, registered by name (see base.py)."""

from __future__ import annotations

import importlib
import pkgutil

from vidcurate.transforms.teachers.base import (
    TEACHERS,
    ClipContext,
    Proposal,
    Teacher,
    TeacherError,
    register,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["TEACHERS", "ClipContext", "Proposal", "Teacher", "TeacherError", "register"]
