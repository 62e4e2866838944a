"""Where the models run: ``--device auto|cpu|cuda|cuda:N``, decided once before the
graph is built, and what each model library is told from that one answer.

The launcher resolves the option (``resolve_device``: torch is asked once whether it
sees a GPU) and hands the resulting device string ("cpu" or "cuda:N") to every model
stage's config; workers never decide again, so every stage of a run uses the same
device, and the ``runs`` row says which. The choices each library needs (fp16 on CUDA,
faster-whisper's compute type, onnxruntime's providers) are small pure functions here
or next to the model, so CPU-only tests check them without a GPU.

A batch that does not fit in GPU memory is split in halves and retried
(``split_on_oom``): the results are the same as the unsplit batch's, only slower.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from vidcurate.transforms.core import AddArgument, ConfigError, auto_or_count, check

log = logging.getLogger("vidcurate")

T = TypeVar("T")
R = TypeVar("R")

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


def usable_cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the
    machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def auto_model_threads(cores: int, worker_processes: int | None) -> int:
    """--model-threads auto: 0 (each library's default, all cores) for one process or
    an unknown number; with several processes on the machine, an equal share each."""
    if not worker_processes or worker_processes <= 1:
        return 0
    return max(1, cores // worker_processes)


def use_cpu_threads(threads: int) -> None:
    """Limit torch's intra-op pool in this process (0: leave torch's default). Every torch
    model of a run gets the same number, so one process-wide setting serves them all."""
    if threads > 0:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def parse_device(text: str) -> tuple[str, int | None] | None:
    """("auto" | "cpu" | "cuda", GPU index or None), or None for anything else; only
    cuda takes an index."""
    m = _DEVICE.match(text.strip().lower())
    if m is None or (m.group(2) is not None and m.group(1) != "cuda"):
        return None
    return m.group(1), None if m.group(2) is None else int(m.group(2))


@dataclass(frozen=True)
class DeviceConfig:
    """--device as given, and once resolved: the device every model uses."""

    requested: str = "auto"
    device: str | None = None  # "cpu" or "cuda:N"; None until resolve_device
    gpu_name: str | None = None  # the chosen GPU, for the runs row
    notes: tuple[str, ...] = ()  # what a reader of the run must know (a fallback)
    cpu_threads: int = 0  # threads each model library may use per process; 0: its default

    @property
    def resolved(self) -> str:
        if self.device is None:
            raise ValueError("DeviceConfig used before resolve_device")
        return self.device

    @staticmethod
    def add_arguments(add: AddArgument) -> None:
        add("device", default="auto",
            help="Where the models run (CLIP, Whisper, OCR, the captioner, the aesthetic "
            "head): auto (the first CUDA GPU torch sees, else the CPU), cpu, cuda or "
            "cuda:N. Decided once before the run and recorded in the runs table.")
        add("model-threads", default="auto",
            help="CPU threads each model library (torch, CTranslate2, onnxruntime) may use "
            "in one worker process. auto: the machine's cores divided by the worker "
            "processes the DirectRunner starts on it (--direct_num_workers with "
            "--direct_running_mode multi_processing), since every process's pool "
            "defaults to all cores and two such pools on the same cores slow each other "
            "down; elsewhere (the in-memory DirectRunner, distributed runners) each "
            "library's own default. On a runner with several SDK processes per machine, "
            "give cores / processes.")

    @classmethod
    def from_options(cls, o: Any, worker_processes: int | None = None) -> DeviceConfig:
        """worker_processes: how many processes of this run share one machine's cores,
        where the launcher knows (the DirectRunner); None elsewhere."""
        check((parse_device(o.device) is not None,
               f"--device must be {DEVICE_CHOICES}, got {o.device!r}"))
        given = auto_or_count(o.model_threads, "--model-threads", 1)
        threads = (given if given is not None
                   else auto_model_threads(usable_cores(), worker_processes))
        out = cls(requested=o.device.strip().lower(), cpu_threads=threads)
        if given is None and threads:
            out = out.with_note(f"--model-threads auto: {threads} CPU thread(s) per model in "
                                f"each of {worker_processes} worker processes")
        return out

    def with_note(self, note: str) -> DeviceConfig:
        return dataclasses.replace(self, notes=(*self.notes, note))


def choose_device(requested: str, gpu_names: Sequence[str], why_none: str = "") -> str:
    """The device for --device `requested` when torch sees these GPUs: "cpu" or
    "cuda:N". Raises ConfigError (naming the option) when CUDA is asked for and the
    GPU is not there; auto falls back to the CPU."""
    parsed = parse_device(requested)
    if parsed is None:
        raise ConfigError(f"--device must be {DEVICE_CHOICES}, got {requested!r}")
    kind, index = parsed
    if kind == "cpu":
        return "cpu"
    if kind == "auto":
        return "cuda:0" if gpu_names else "cpu"
    if not gpu_names:
        raise ConfigError(
            f"--device {requested}: torch sees no CUDA GPU on this machine"
            + (f" ({why_none})" if why_none else "")
            + ". Run with --device cpu (or auto), or install a CUDA build of torch and "
            "the NVIDIA driver (see docs/gpus.md)")
    index = index or 0
    if index >= len(gpu_names):
        seen = ", ".join(f"cuda:{i} ({n})" for i, n in enumerate(gpu_names))
        raise ConfigError(f"--device {requested}: torch sees {len(gpu_names)} GPU(s): {seen}")
    return f"cuda:{index}"


def visible_gpus() -> tuple[list[str], str]:
    """The names of the CUDA GPUs torch sees, and, when there are none, why."""
    import torch

    if torch.version.cuda is None:
        return [], f"torch {torch.__version__} is a CPU-only build"
    if not torch.cuda.is_available():
        return [], "no NVIDIA driver or GPU visible (CUDA_VISIBLE_DEVICES?)"
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())], ""


def resolve_device(cfg: DeviceConfig,
                   gpus: Callable[[], tuple[list[str], str]] | None = None) -> DeviceConfig:
    """Decide the run's device once, before the graph is built; ConfigError when
    --device asks for a GPU that is not there. auto without a GPU says so. `gpus`
    replaces asking torch (tests)."""
    names, why_none = (gpus or visible_gpus)()
    device = choose_device(cfg.requested, names, why_none)
    out = dataclasses.replace(cfg, device=device,
                              gpu_name=names[gpu_index(device)] if is_cuda(device) else None)
    if cfg.requested == "auto" and device == "cpu":
        note = f"--device auto: no CUDA GPU ({why_none}); the models ran on the CPU"
        log.info("%s", note.replace("ran", "run"))
        out = out.with_note(note)
    else:
        log.info("models run on %s%s", device, f" ({out.gpu_name})" if out.gpu_name else "")
    return out


def no_models_device(cfg: DeviceConfig) -> DeviceConfig:
    """--device auto in a run without a model stage: the CPU, noted, without asking torch."""
    return dataclasses.replace(cfg, device="cpu").with_note(
        "--device auto: no model stage in this run; nothing ran on a GPU")


def is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def gpu_index(device: str) -> int:
    """N of cuda:N (0 for a bare cuda)."""
    parsed = parse_device(device)
    return (parsed[1] or 0) if parsed else 0


def half_precision(device: str) -> bool:
    """Whether the big torch models (CLIP, the captioner) run in float16: on CUDA yes
    (tensor cores, half the memory; embeddings agree with fp32 to ~1e-3), on the CPU no
    (fp16 matmuls there are slow or missing)."""
    return is_cuda(device)


def torch_dtype(device: str) -> Any:
    import torch

    return torch.float16 if half_precision(device) else torch.float32


def is_out_of_memory(exc: BaseException) -> bool:
    """A GPU allocation failure: torch's OutOfMemoryError, or the RuntimeError older
    torch, cuDNN and CTranslate2 raise with "out of memory" in the message."""
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is a base dependency
        pass
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_gpu_memory() -> None:
    """Return cached blocks to the driver so a smaller retry can use them."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def split_on_oom(run: Callable[[Sequence[T]], R], items: Sequence[T],
                 join: Callable[[list[R]], R],
                 on_split: Callable[[], None] | None = None) -> R:
    """run(items); when that runs out of GPU memory, run each half the same way and
    join the two results (in order). A single item that does not fit raises the
    error: its batch fails like any model failure (error rows for its owners)."""
    try:
        return run(items)
    except Exception as e:
        if len(items) <= 1 or not is_out_of_memory(e):
            raise
    # Outside the except block: the traceback (and the tensors its frames hold) is gone.
    free_gpu_memory()
    if on_split is not None:
        on_split()
    mid = len(items) // 2
    return join([split_on_oom(run, items[:mid], join, on_split),
                 split_on_oom(run, items[mid:], join, on_split)])


def oom_counter(namespace: str) -> Callable[[], None]:
    """Counts a batch split because it did not fit, under the model's metrics namespace
    (shown per stage in the runs row)."""
    from apache_beam.metrics import Metrics

    counter = Metrics.counter(namespace, "oom_splits")
    return lambda: counter.inc()
