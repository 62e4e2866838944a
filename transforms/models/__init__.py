"""The one guarded place where heavy model libraries are imported.

torchvision wheels on PyPI are built against CUDA torch; next to the CPU build of
torch their native operators (nms, roi_align) fail to register and `import
torchvision` raises ``RuntimeError: operator torchvision::nms does not exist``. Only
in that case we import it again without its operator meta-registrations: its
transforms (all that open_clip, timm and transformers' image processors need) work,
its C++ detection ops do not. Where torchvision is healthy nothing is changed.
"""

from __future__ import annotations

import importlib
import sys
import types
from types import ModuleType

_META = "torchvision._meta_registrations"
# Set once torchvision had to be imported without its native operators.
torchvision_native_ops = True


class MissingExtra(ImportError):
    """An optional model library is not installed; the message says which extra to add."""


def import_torchvision() -> ModuleType:
    global torchvision_native_ops
    if "torchvision" in sys.modules and sys.modules["torchvision"] is not None:
        return sys.modules["torchvision"]
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    sys.modules.setdefault(_META, types.ModuleType(_META))
    torchvision_native_ops = False
    return importlib.import_module("torchvision")


def import_open_clip() -> ModuleType:
    """open_clip, with torchvision made importable first."""
    try:
        import_torchvision()
        return importlib.import_module("open_clip")
    except ModuleNotFoundError as e:
        raise MissingExtra(
            f"CLIP needs open_clip_torch and torchvision ({e.name} is missing): "
            "pip install open_clip_torch -c constraints.txt"
        ) from e


def import_rapidocr() -> ModuleType:
    """RapidOCR (PP-OCR models bundled in the wheel, run by onnxruntime)."""
    try:
        return importlib.import_module("rapidocr")
    except ModuleNotFoundError as e:
        raise MissingExtra(
            f"OCR needs rapidocr and onnxruntime ({e.name} is missing): "
            "pip install 'vidcurate[ocr]', or run with --no-ocr"
        ) from e


def import_faster_whisper() -> ModuleType:
    try:
        return importlib.import_module("faster_whisper")
    except ModuleNotFoundError as e:
        raise MissingExtra(
            f"ASR with faster-whisper needs the 'asr' extra ({e.name} is missing): "
            "pip install 'vidcurate[asr]', or run with --no-asr"
        ) from e


def import_openai_whisper() -> ModuleType:
    try:
        return importlib.import_module("whisper")
    except ModuleNotFoundError as e:
        raise MissingExtra(
            f"--asr-backend openai-whisper needs the openai-whisper package ({e.name} is "
            "missing): pip install openai-whisper -c constraints.txt"
        ) from e
