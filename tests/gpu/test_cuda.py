"""Every model on a real CUDA GPU through the production code: the same results as on
the CPU (fp16 within its rounding), OOM batches split, NVDEC decoding when ffmpeg has it.
Deselected by default; `make test-gpu` runs them and fails without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from apache_beam.options.pipeline_options import PipelineOptions

from tests.support.tiny_clip import MODEL_NAME, write_random_clip
from vidcurate.schemas.records import Source

pytestmark = pytest.mark.gpu


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(n)]


def test_auto_chooses_the_gpu_and_records_it(cuda_gpu):
    from vidcurate.pipeline.environment import place_models
    from vidcurate.pipeline.options import RunConfig
    from vidcurate.pipeline.runs import device_label

    cfg = place_models(RunConfig.from_options(PipelineOptions(
        ["--input", "in", "--output", "out", "--no-ocr"])))
    assert cfg.device.device == "cuda:0" and device_label(cfg) == f"cuda:0 ({cuda_gpu})"
    assert cfg.clip_model.device == "cuda:0" and cfg.clip_model.batch_size == 256


@pytest.fixture(scope="module")
def clip_pair(tmp_path_factory):
    from vidcurate.transforms.models.clip import ClipModelConfig, load_clip, resolve_clip

    config, checkpoint = write_random_clip(tmp_path_factory.mktemp("clip"))
    cfg = resolve_clip(ClipModelConfig(True, MODEL_NAME, str(checkpoint), str(config), 32))
    return load_clip(cfg.on_device("cpu")), load_clip(cfg.on_device("cuda:0"))


def test_clip_fp16_on_cuda_matches_the_cpu(clip_pair):
    cpu, gpu = clip_pair
    params = list(gpu.model.parameters())
    assert {p.device.type for p in params} == {"cuda"}
    assert {p.dtype for p in params} == {torch.float16}
    images, texts = _images(16), ["a red circle", "a blue star", "green", "a square"]
    cpu_images, cpu_texts = cpu.embed(images, texts)
    gpu_images, gpu_texts = gpu.embed(images, texts)
    assert gpu_images.dtype == np.float32 and gpu_images.shape == cpu_images.shape
    # Unit vectors: a cosine of 0.999 is fp16's rounding, not another answer.
    assert np.min(np.sum(cpu_images * gpu_images, axis=1)) > 0.999
    assert np.min(np.sum(cpu_texts * gpu_texts, axis=1)) > 0.999


def test_a_batch_too_large_for_the_gpu_is_split_with_the_same_results(monkeypatch):
    from vidcurate.transforms.models import clip as clip_module
    from vidcurate.transforms.models.clip import LoadedClip, embed_images
    from vidcurate.transforms.models.device import torch_dtype

    open_clip = clip_module.import_open_clip()
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    model = model.to(device="cuda:0", dtype=torch_dtype("cuda:0")).eval()
    clip = LoadedClip(model, preprocess, open_clip.get_tokenizer("ViT-B-32"), 512, "cuda:0")
    images = _images(1200, seed=1)
    expected = np.concatenate([embed_images(clip, images[i:i + 100])
                               for i in range(0, len(images), 100)])
    splits: list[int] = []
    monkeypatch.setattr(clip_module, "oom_counter", lambda ns: lambda: splits.append(1))
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    # Room for the model and ~half the batch's pixels (1200 x 3 x 224 x 224 fp16 = 361 MB):
    # the whole batch cannot fit, a half can.
    room = torch.cuda.memory_allocated(0) + 250 * 2**20
    torch.cuda.set_per_process_memory_fraction(room / total, 0)
    try:
        got = embed_images(clip, images)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
    assert splits, "the batch fitted: no split was exercised"
    # fp16 sums differ in their last bits between batch sizes: the same vectors.
    assert got.shape == expected.shape and np.min(np.sum(got * expected, axis=1)) > 0.999


def test_faster_whisper_runs_on_cuda_in_float16(whisper_tiny_en):
    from faster_whisper import decode_audio

    from tests.support.media import LIBRIVOX
    from vidcurate.transforms.models.whisper import AsrConfig, load_backend, transcribe_array

    wav = sorted(LIBRIVOX.glob("*.wav"))
    if not wav:
        pytest.fail("pocketsphinx-testdata (LibriVox speech) is not installed")
    base = dict(enabled=True, backend="faster-whisper", model=str(whisper_tiny_en),
                model_path=str(whisper_tiny_en), language="en", beam_size=1,
                temperatures=(0.0,), vad=False, min_voiced=0.3, no_speech_threshold=0.6,
                logprob_threshold=-1.0, compression_ratio_threshold=2.4, max_ngram_repeats=4)
    gpu_cfg = AsrConfig(**base, device="cuda:0")
    model = load_backend(gpu_cfg)
    assert (model.model.device, model.model.compute_type) == ("cuda", "float16")
    audio = decode_audio(str(wav[0]))
    on_gpu = " ".join(s.text for s in transcribe_array(model, audio, gpu_cfg).segments)
    cpu_cfg = AsrConfig(**base, device="cpu")
    on_cpu = " ".join(s.text for s in transcribe_array(load_backend(cpu_cfg), audio,
                                                       cpu_cfg).segments)
    words_gpu, words_cpu = set(on_gpu.lower().split()), set(on_cpu.lower().split())
    assert words_gpu and len(words_gpu & words_cpu) >= 0.8 * len(words_cpu)


def test_captioner_and_aesthetic_head_on_cuda(tiny_captioner, tmp_path):
    from PIL import Image

    from tests.support.judging import write_aesthetic_head
    from vidcurate.transforms.models.aesthetic import AestheticConfig, load_head, score_embeddings
    from vidcurate.transforms.teachers.captioner import caption_images, load_captioner

    processor, model = load_captioner(str(tiny_captioner), "cuda:0")
    assert model.device.type == "cuda" and model.dtype == torch.float16
    images = [Image.new("RGB", (64, 48), (200, 30 * i, 0)) for i in range(3)]
    assert caption_images(processor, model, images, 3) == ["circle circle circle"] * 3
    head_path = write_aesthetic_head(tmp_path / "head.pth", 64)
    frames = np.random.default_rng(0).normal(size=(5, 64)).astype(np.float32)
    scores = [score_embeddings(load_head(AestheticConfig(
        model=str(head_path), batch_size=4, checkpoint_path=str(head_path), device=d)), frames)
        for d in ("cpu", "cuda:0")]
    np.testing.assert_allclose(scores[0], scores[1], atol=1e-4)


def test_nvdec_decode_finds_the_cpu_cuts(request, split_cfg):
    from vidcurate.transforms.detect_scenes import detect_scenes
    from vidcurate.transforms.media.decoding import probe_nvdec
    from vidcurate.transforms.probe import probe_source

    missing = probe_nvdec()
    if missing:  # a property of the ffmpeg build (or no ffmpeg at all), not of the GPU
        pytest.skip(f"NVDEC: {missing}")
    videos = request.getfixturevalue("videos")  # made with ffmpeg: only once it is there
    video = probe_source(Source(uri=str(videos.cuts), video_id="v"))
    heard: list[str] = []
    on_gpu = detect_scenes(video, split_cfg, decode_device="cuda:0", on_decode=heard.append)
    on_cpu = detect_scenes(video, split_cfg)
    assert heard == ["nvdec"]
    gpu_cuts = [b.frame for b in on_gpu.boundaries if b.kind == "detected"]
    cpu_cuts = [b.frame for b in on_cpu.boundaries if b.kind == "detected"]
    assert len(gpu_cuts) == len(cpu_cuts)
    assert all(abs(a - b) <= 1 for a, b in zip(gpu_cuts, cpu_cuts, strict=True))
