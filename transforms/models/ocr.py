"""RapidOCR engine: PP-OCR detection + recognition ONNX models bundled in the wheel."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from vidcurate.transforms.models import import_rapidocr


@dataclass(frozen=True)
class OcrConfig:
    enabled: bool
    min_confidence: float
    det_side: int
    angle_cls: bool


def engine_params(cfg: OcrConfig) -> dict[str, Any]:
    """Fast settings for video frames: no angle classifier unless asked, and detection on
    frames whose long side is at most det_side (RapidOCR's default upscales 720p)."""
    return {
        "Global.use_cls": cfg.angle_cls,
        "Global.text_score": cfg.min_confidence,
        "Global.log_level": "warning",
        "Det.limit_side_len": cfg.det_side,
        "Det.limit_type": "max",
    }


def load_engine(cfg: OcrConfig | None) -> Any:
    """A RapidOCR engine; cfg None gives RapidOCR's own defaults (for benchmarks)."""
    rapidocr = import_rapidocr()
    params = engine_params(cfg) if cfg else {"Global.log_level": "warning"}
    engine = rapidocr.RapidOCR(params=params)
    # RapidOCR logs a warning for every frame without text: normal on video.
    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    return engine
