"""RapidOCR engine: PP-OCR detection + recognition ONNX models bundled in the wheel."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from vidcurate.transforms.core import AddArgument, check
from vidcurate.transforms.models import import_rapidocr
from vidcurate.transforms.models.device import gpu_index, is_cuda

CUDA_PROVIDER = "CUDAExecutionProvider"
GPU_EXTRA_HINT = ("onnxruntime has no CUDAExecutionProvider here: pip install "
                  "'vidcurate[gpu]' (onnxruntime-gpu in place of onnxruntime) to run OCR on "
                  "the GPU")


@dataclass(frozen=True)
class OcrConfig:
    enabled: bool
    min_confidence: float
    det_side: int
    angle_cls: bool
    device: str = "cpu"  # "cuda:N" only when onnxruntime has its CUDA provider
    cpu_threads: int = 0  # onnxruntime's intra-op threads per worker process (0: all cores)

    @staticmethod
    def add_arguments(add: AddArgument) -> None:
        add("no-ocr", action="store_true",
            help="Skip OCR (the ocr_* columns stay null).")
        add("ocr-min-confidence", type=float, default=0.5,
            help="Recognised lines below this confidence are dropped.")
        add("ocr-det-side", type=int, default=960,
            help="OCR text detection works on frames resized so the long side is at most "
            "this many pixels (RapidOCR default 736 on the short side is slower on video).")
        add("ocr-angle-cls", action="store_true",
            help="Run the text-angle classifier (rotated text; ~30%% slower).")

    @classmethod
    def from_options(cls, o: Any) -> OcrConfig:
        check(
            (0 <= o.ocr_min_confidence <= 1,
             f"--ocr-min-confidence must be in [0, 1], got {o.ocr_min_confidence}"),
            (o.ocr_det_side >= 32, f"--ocr-det-side must be >= 32, got {o.ocr_det_side}"),
        )
        return cls(enabled=not o.no_ocr, min_confidence=o.ocr_min_confidence,
                   det_side=o.ocr_det_side, angle_cls=o.ocr_angle_cls)


def ocr_device(device: str, providers: list[str]) -> tuple[str, str | None]:
    """Where OCR runs for the run's device, given onnxruntime's available providers:
    the GPU when onnxruntime-gpu provides CUDA, else the CPU and a note saying why and
    how to change it (the other models still use the GPU)."""
    if not is_cuda(device):
        return "cpu", None
    if CUDA_PROVIDER in providers:
        return device, None
    return "cpu", f"OCR ran on the CPU: {GPU_EXTRA_HINT}"


def available_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def engine_params(cfg: OcrConfig) -> dict[str, Any]:
    """Fast settings for video frames: no angle classifier unless asked, and detection on
    frames whose long side is at most det_side (RapidOCR's default upscales 720p); the
    CUDA provider for all three models on a GPU."""
    params: dict[str, Any] = {
        "Global.use_cls": cfg.angle_cls,
        "Global.text_score": cfg.min_confidence,
        "Global.log_level": "warning",
        "Det.limit_side_len": cfg.det_side,
        "Det.limit_type": "max",
    }
    if cfg.cpu_threads > 0:
        params["EngineConfig.onnxruntime.intra_op_num_threads"] = cfg.cpu_threads
        params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
    if is_cuda(cfg.device):
        params["EngineConfig.onnxruntime.use_cuda"] = True
        params["EngineConfig.onnxruntime.cuda_ep_cfg.device_id"] = gpu_index(cfg.device)
    return params


def load_engine(cfg: OcrConfig | None) -> Any:
    """A RapidOCR engine; cfg None gives RapidOCR's own defaults (for benchmarks)."""
    rapidocr = import_rapidocr()
    params = engine_params(cfg) if cfg else {"Global.log_level": "warning"}
    engine = rapidocr.RapidOCR(params=params)
    # RapidOCR logs a warning for every frame without text: normal on video.
    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    return engine
