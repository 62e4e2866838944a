"""--device: decided once before the graph, refused when the GPU is missing, and handed
to every model the same way on the CPU as on CUDA (the CPU path is what runs here; the
choices made for CUDA are checked through the same pure functions). A batch that runs
out of GPU memory is split and gives the same results as the whole batch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from apache_beam.options.pipeline_options import PipelineOptions

from tests.support.tiny_clip import MODEL_NAME, write_random_clip
from vidcurate.pipeline.environment import place_models
from vidcurate.pipeline.options import ConfigError, RunConfig
from vidcurate.pipeline.runs import device_label, run_notes
from vidcurate.transforms.models.device import (
    DeviceConfig,
    choose_device,
    half_precision,
    resolve_device,
    split_on_oom,
    torch_dtype,
)


def _cfg(*args: str) -> RunConfig:
    return RunConfig.from_options(PipelineOptions(["--input", "in", "--output", "out/", *args]))


def test_device_values_are_checked_before_the_graph():
    assert _cfg().device.requested == "auto"
    assert _cfg("--device", "cuda:1").device.requested == "cuda:1"
    for bad in ("gpu", "cuda:x", "cpu:0", "auto:1", ""):
        with pytest.raises(ConfigError, match="--device must be auto, cpu, cuda or cuda:N"):
            _cfg("--device", bad)


def test_cuda_without_a_gpu_is_refused_naming_the_option_and_auto_falls_back():
    with pytest.raises(ConfigError, match=r"--device cuda: torch sees no CUDA GPU .*--device cpu"):
        choose_device("cuda", [])
    with pytest.raises(ConfigError, match=r"--device cuda:2: torch sees 1 GPU\(s\): cuda:0 \(L4\)"):
        choose_device("cuda:2", ["L4"])
    assert choose_device("auto", []) == "cpu"
    assert choose_device("auto", ["L4", "L4"]) == "cuda:0"
    assert choose_device("cuda", ["L4"]) == "cuda:0"
    assert choose_device("cuda:1", ["L4", "A100"]) == "cuda:1"
    assert choose_device("cpu", ["L4"]) == "cpu"  # asked for the CPU: a GPU changes nothing


def test_resolution_through_the_launcher(monkeypatch):
    from vidcurate.transforms.models import device as device_module

    # This machine's own torch, as `vidcurate run` asks it (CI: the CPU build).
    here = place_models(_cfg("--no-ocr"))
    assert here.device.device == ("cuda:0" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="--device cuda:99: torch sees"):
        place_models(_cfg("--no-ocr", "--device", "cuda:99"))
    # A machine without a GPU.
    monkeypatch.setattr(device_module, "visible_gpus",
                        lambda: ([], "torch 2.13.0+cpu is a CPU-only build"))
    auto = place_models(_cfg("--no-ocr"))
    assert auto.device.device == "cpu" and device_label(auto) == "cpu"
    assert "--device auto: no CUDA GPU (torch 2.13.0+cpu is a CPU-only build); the models " \
        "ran on the CPU" in run_notes(auto)
    assert {auto.clip_model.device, auto.asr.device, auto.teachers.device,
            auto.aesthetic.device} == {"cpu"}
    with pytest.raises(ConfigError, match="--device cuda: torch sees no CUDA GPU"):
        place_models(_cfg("--no-ocr", "--device", "cuda"))
    plain = place_models(_cfg("--no-ocr", "--device", "cpu"))
    assert plain.device.notes == () and not any("--device" in n for n in run_notes(plain))


def test_a_run_without_models_does_not_ask_torch_unless_a_gpu_is_asked_for(monkeypatch):
    from vidcurate.transforms.models import device as device_module

    asked = []
    monkeypatch.setattr(device_module, "visible_gpus",
                        lambda: asked.append(1) or (["L4"], ""))
    split_only = ("--no-ocr", "--no-clip", "--no-asr", "--no-nsfw")
    auto = place_models(_cfg(*split_only))
    assert asked == [] and auto.device.device == "cpu"
    assert "--device auto: no model stage in this run; nothing ran on a GPU" in run_notes(auto)
    # Asked for a GPU: still checked (and refused where there is none).
    assert place_models(_cfg(*split_only, "--device", "cuda")).device.device == "cuda:0"
    # One model stage is enough to place the models on the GPU.
    assert place_models(_cfg("--no-clip", "--no-asr")).device.device == "cuda:0"
    assert len(asked) == 2


def test_a_gpu_reaches_every_model_stage_and_clip_batches_grow_unless_given():
    gpu = resolve_device(DeviceConfig("cuda:1"), gpus=lambda: (["L4", "NVIDIA A100"], ""))
    assert (gpu.device, gpu.gpu_name, gpu.notes) == ("cuda:1", "NVIDIA A100", ())
    cfg = _cfg().with_device(gpu)
    assert device_label(cfg) == "cuda:1 (NVIDIA A100)"
    assert {cfg.clip_model.device, cfg.asr.device, cfg.ocr.device, cfg.teachers.device,
            cfg.aesthetic.device} == {"cuda:1"}
    assert cfg.clip_model.batch_size == 256
    assert _cfg().with_device(resolve_device(DeviceConfig("cpu"))).clip_model.batch_size == 32
    given = _cfg("--clip-batch-size", "48").with_device(gpu)
    assert given.clip_model.batch_size == 48  # --clip-batch-size always wins
    # Where the models ran is not what they made: a resumed run on a GPU skips done videos.
    assert cfg.outputs_hash == _cfg().outputs_hash


def test_precision_choices_per_device():
    from vidcurate.transforms.models.ocr import OcrConfig, engine_params, ocr_device
    from vidcurate.transforms.models.whisper import faster_whisper_device

    assert half_precision("cuda:0") and torch_dtype("cuda:0") == torch.float16
    assert not half_precision("cpu") and torch_dtype("cpu") == torch.float32
    assert faster_whisper_device("cuda:1") == {"device": "cuda", "device_index": 1,
                                               "compute_type": "float16"}
    assert faster_whisper_device("cpu") == {"device": "cpu", "compute_type": "int8"}
    # OCR: onnxruntime-gpu's provider, or the CPU with a note naming the extra.
    assert ocr_device("cuda:0", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == (
        "cuda:0", None)
    on, note = ocr_device("cuda:0", ["CPUExecutionProvider"])
    assert on == "cpu" and "vidcurate[gpu]" in note
    assert ocr_device("cpu", ["CUDAExecutionProvider"]) == ("cpu", None)
    ocr = OcrConfig(True, 0.5, 960, False, device="cuda:1")
    params = engine_params(ocr)
    assert params["EngineConfig.onnxruntime.use_cuda"] is True
    assert params["EngineConfig.onnxruntime.cuda_ep_cfg.device_id"] == 1
    assert "EngineConfig.onnxruntime.use_cuda" not in engine_params(
        dataclasses.replace(ocr, device="cpu"))


def test_ocr_on_a_gpu_without_onnxruntime_gpu_runs_on_the_cpu_and_says_so(monkeypatch):
    from vidcurate.pipeline import environment
    from vidcurate.transforms.models import device as device_module
    from vidcurate.transforms.models import ocr

    monkeypatch.setattr(device_module, "visible_gpus", lambda: (["L4"], ""))
    monkeypatch.setattr(ocr, "available_providers", lambda: ["CPUExecutionProvider"])
    cfg = environment.place_models(_cfg("--device", "cuda"))
    assert cfg.clip_model.device == "cuda:0" and cfg.ocr.device == "cpu"
    assert any("OCR ran on the CPU" in n and "vidcurate[gpu]" in n for n in run_notes(cfg))


class _Oom:
    """A model that, like a GPU with little memory, fails on batches over `fits`."""

    def __init__(self, fits: int) -> None:
        self.fits, self.calls = fits, []

    def __call__(self, items):
        self.calls.append(len(items))
        if len(items) > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return [x * 10 for x in items]


def test_a_batch_that_does_not_fit_is_split_and_gives_the_same_results():
    model = _Oom(fits=2)
    splits = []
    out = split_on_oom(model, list(range(7)), lambda parts: [x for p in parts for x in p],
                       on_split=lambda: splits.append(1))
    assert out == [x * 10 for x in range(7)]
    # Halves until each part fits: 7 -> 3 + 4, 3 -> 1 + 2, 4 -> 2 + 2.
    assert model.calls == [7, 3, 1, 2, 4, 2, 2] and len(splits) == 3
    # One element that does not fit is that element's failure, not an endless split.
    with pytest.raises(torch.cuda.OutOfMemoryError):
        split_on_oom(_Oom(fits=0), [1], list)
    # Other errors are not memory: they are raised at once, the batch is not split.
    calls = []

    def broken(items):
        calls.append(len(items))
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        split_on_oom(broken, [1, 2, 3, 4], list)
    assert calls == [4]


@pytest.fixture(scope="module")
def random_tiny_clip(tmp_path_factory):
    return write_random_clip(tmp_path_factory.mktemp("random-clip"))


def test_clip_loads_on_the_asked_device_and_splits_batches_that_do_not_fit(random_tiny_clip):
    from vidcurate.transforms.models.clip import (
        ClipModelConfig,
        LoadedClip,
        embed_images,
        embed_texts,
        load_clip,
        resolve_clip,
    )

    config, checkpoint = random_tiny_clip
    cfg = resolve_clip(ClipModelConfig(True, MODEL_NAME, str(checkpoint), str(config), 8))
    clip = load_clip(cfg.on_device("cpu"))
    params = list(clip.model.parameters())
    assert clip.device == "cpu"
    assert {p.device.type for p in params} == {"cpu"}
    assert {p.dtype for p in params} == {torch.float32}
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(5)]
    texts = ["a red circle", "a blue square", "a star", "green", "yellow triangle"]
    whole_images, whole_texts = embed_images(clip, images), embed_texts(clip, texts)

    class SmallGpu:
        """The same model, out of memory on more than two inputs at a time."""

        def __init__(self, model):
            self.model, self.batches = model, []

        def parameters(self):
            return self.model.parameters()

        def _guard(self, x):
            self.batches.append(len(x))
            if len(x) > 2:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")

        def encode_image(self, x):
            self._guard(x)
            return self.model.encode_image(x)

        def encode_text(self, x):
            self._guard(x)
            return self.model.encode_text(x)

    small = SmallGpu(clip.model)
    tight = LoadedClip(small, clip.preprocess, clip.tokenizer, clip.dim, "cpu")
    split_images, split_texts = tight.embed(images, texts)
    # Images, then texts: 5 -> 2 + 3, 3 -> 1 + 2.
    assert small.batches == [5, 2, 3, 1, 2] * 2
    np.testing.assert_allclose(split_images, whole_images, atol=1e-6)
    np.testing.assert_allclose(split_texts, whole_texts, atol=1e-6)


def test_aesthetic_head_and_whisper_load_on_the_asked_device(tmp_path, whisper_tiny_en):
    from tests.support.judging import write_aesthetic_head
    from vidcurate.transforms.models.aesthetic import AestheticConfig, load_head, score_embeddings
    from vidcurate.transforms.models.whisper import AsrConfig, load_backend

    head_path = write_aesthetic_head(tmp_path / "head.pth", 16)
    head = load_head(AestheticConfig(model=str(head_path), batch_size=4,
                                     checkpoint_path=str(head_path), device="cpu"))
    assert {p.device.type for p in head.parameters()} == {"cpu"}
    assert score_embeddings(head, np.ones((3, 16), np.float32)).shape == (3,)
    asr = AsrConfig(enabled=True, backend="faster-whisper", model=str(whisper_tiny_en),
                    model_path=str(whisper_tiny_en), language="en", beam_size=1,
                    temperatures=(0.0,), vad=False, min_voiced=0.3, no_speech_threshold=0.6,
                    logprob_threshold=-1.0, compression_ratio_threshold=2.4,
                    max_ngram_repeats=4, device="cpu")
    model = load_backend(asr)
    assert (model.model.device, model.model.compute_type) == ("cpu", "int8_float32")


def test_clip_model_copies_serve_every_step_from_a_shared_process(random_tiny_clip):
    """--clip-model-copies: Beam loads the model in a process of its own and hands
    run_inference a proxy; the embeddings are those of a model in the worker itself."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that

    from vidcurate.transforms.models.clip import (
        ClipModelConfig,
        EmbedRequest,
        embed_images,
        load_clip,
        resolve_clip,
    )
    from vidcurate.transforms.models.clip_embedding import EmbedByOwner

    config, checkpoint = random_tiny_clip
    cfg = dataclasses.replace(
        resolve_clip(ClipModelConfig(True, MODEL_NAME, str(checkpoint), str(config), 4)),
        model_copies=1)
    images = [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(5)]
    expected = embed_images(load_clip(cfg), images)
    requests = [EmbedRequest(key=("v", i), image=im) for i, im in enumerate(images)]

    def check(features):
        got = dict(features)
        assert sorted(got) == [("v", (i,)) for i in range(5)]
        for i in range(5):
            np.testing.assert_allclose(got[("v", (i,))], expected[i], atol=1e-5)

    def none_failed(failed):
        assert failed == [], failed

    with TestPipeline() as p:
        out = p | beam.Create(requests) | EmbedByOwner(cfg)
        features = out["features"] | beam.Map(lambda kv: ((kv[0], kv[1][0]), kv[1][1]))
        assert_that(features, check)
        assert_that(out["failed"], none_failed, label="NoFailures")


def test_model_threads_share_the_cores_between_the_direct_runners_worker_processes():
    """Each worker process's torch, CTranslate2 and onnxruntime pools default to every
    core: with two processes on two cores, four busy pools fight over two cores (a 2-
    worker run of the full pipeline took 76 s that way, 59 s with a core each)."""
    from vidcurate.pipeline.options import direct_worker_processes
    from vidcurate.transforms.models.device import auto_model_threads, usable_cores

    assert auto_model_threads(8, None) == 0 and auto_model_threads(8, 1) == 0
    assert auto_model_threads(8, 2) == 4 and auto_model_threads(2, 4) == 1
    two = ("--direct_num_workers", "2", "--direct_running_mode", "multi_processing")
    assert direct_worker_processes(PipelineOptions([])) == 1
    assert direct_worker_processes(PipelineOptions(list(two))) == 2
    assert direct_worker_processes(PipelineOptions(
        ["--direct_num_workers", "2", "--direct_running_mode", "multi_threading"])) == 1
    assert direct_worker_processes(PipelineOptions(["--runner", "FlinkRunner"])) is None

    shared = place_models(_cfg("--no-ocr", "--device", "cpu", *two))
    share = max(1, usable_cores() // 2)
    assert shared.device.cpu_threads == share
    assert (shared.clip_model.cpu_threads, shared.asr.cpu_threads, shared.ocr.cpu_threads,
            shared.teachers.cpu_threads, shared.aesthetic.cpu_threads) == (share,) * 5
    assert (f"--model-threads auto: {share} CPU thread(s) per model in each of 2 worker "
            "processes") in run_notes(shared)
    alone = place_models(_cfg("--no-ocr", "--device", "cpu"))
    assert alone.device.cpu_threads == 0 and alone.clip_model.cpu_threads == 0
    # In memory Whisper transcribes a video per core at once, a thread each (below).
    assert alone.asr.cpu_threads == (1 if usable_cores() > 1 else 0)
    given = place_models(_cfg("--no-ocr", "--device", "cpu", "--model-threads", "3", *two))
    assert given.clip_model.cpu_threads == 3 and not any("model-threads" in n
                                                         for n in run_notes(given))
    # How many threads made the rows does not make them different rows.
    assert shared.outputs_hash == alone.outputs_hash == given.outputs_hash
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ConfigError, match="--model-threads must be auto or a number"):
            _cfg("--model-threads", bad)


def test_each_model_library_is_told_its_threads(random_tiny_clip):
    from vidcurate.transforms.models.clip import ClipModelConfig, load_clip, resolve_clip
    from vidcurate.transforms.models.ocr import OcrConfig, engine_params
    from vidcurate.transforms.models.whisper import faster_whisper_device

    assert faster_whisper_device("cpu", 2) == {"device": "cpu", "compute_type": "int8",
                                               "cpu_threads": 2}
    assert "cpu_threads" not in faster_whisper_device("cpu", 0)
    assert "cpu_threads" not in faster_whisper_device("cuda:0", 2)
    assert faster_whisper_device("cpu", 1, 2)["num_workers"] == 2
    assert "num_workers" not in faster_whisper_device("cpu", 0, 1)
    assert "num_workers" not in faster_whisper_device("cuda:0", 0, 2)
    ocr = OcrConfig(enabled=True, min_confidence=0.5, det_side=960, angle_cls=False)
    assert "EngineConfig.onnxruntime.intra_op_num_threads" not in engine_params(ocr)
    limited = engine_params(dataclasses.replace(ocr, cpu_threads=1))
    assert limited["EngineConfig.onnxruntime.intra_op_num_threads"] == 1
    config, checkpoint = random_tiny_clip
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        load_clip(resolve_clip(ClipModelConfig(True, MODEL_NAME, str(checkpoint), str(config),
                                               4)))
        assert torch.get_num_threads() == 2  # 0: torch's own setting is left alone
        cfg = dataclasses.replace(resolve_clip(ClipModelConfig(
            True, MODEL_NAME, str(checkpoint), str(config), 4)), cpu_threads=1)
        load_clip(cfg)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_video_concurrency_decodes_several_videos_only_where_one_thread_runs_a_stage():
    from vidcurate.transforms.models.device import usable_cores

    assert _cfg().media.video_concurrency == usable_cores()  # the in-memory DirectRunner
    two = ("--direct_num_workers", "2", "--direct_running_mode", "multi_processing")
    assert _cfg(*two).media.video_concurrency == 1
    assert _cfg("--direct_running_mode", "multi_threading").media.video_concurrency == 1
    assert _cfg("--runner", "FlinkRunner").media.video_concurrency == 1
    assert _cfg("--video-concurrency", "3", *two).media.video_concurrency == 3
    for bad in ("0", "65", "many"):
        with pytest.raises(ConfigError, match="--video-concurrency must be auto or 1-64"):
            _cfg("--video-concurrency", bad)


def test_ffmpeg_threads_share_the_cores_between_the_videos_decoded_at_once():
    """Two ffmpeg decodes on two cores, each with its default frame threads, take about
    10% more CPU (and wall) than with one thread each: auto shares the cores out
    wherever the DirectRunner decodes several videos at once, and leaves ffmpeg's own
    choice where one video is decoded at a time or the runner's layout is unknown."""
    from vidcurate.pipeline.options import direct_workers
    from vidcurate.transforms.media.tools import auto_ffmpeg_threads
    from vidcurate.transforms.models.device import usable_cores

    assert auto_ffmpeg_threads(8, None) == 0 and auto_ffmpeg_threads(8, 1) == 0
    assert auto_ffmpeg_threads(8, 2) == 4 and auto_ffmpeg_threads(2, 6) == 1
    assert direct_workers(PipelineOptions([])) == 1
    assert direct_workers(PipelineOptions(
        ["--direct_num_workers", "3", "--direct_running_mode", "multi_threading"])) == 3
    assert direct_workers(PipelineOptions(["--runner", "DataflowRunner"])) is None

    cores = usable_cores()
    two = ("--direct_num_workers", "2", "--direct_running_mode", "multi_processing")
    # Two worker processes: one decode and one cutting ffmpeg each at a time.
    shared = _cfg(*two).media
    assert shared.decode_threads == shared.ffmpeg_threads == auto_ffmpeg_threads(cores, 2) >= 1
    assert any(n.startswith("--ffmpeg-threads auto: ") for n in run_notes(_cfg(*two)))
    # In memory, --video-concurrency decodes at once, but one cutting ffmpeg at a time
    # (an exact-mode re-encode keeps every core).
    in_memory = _cfg("--video-concurrency", "4")
    assert in_memory.media.decode_threads == auto_ffmpeg_threads(cores, 4) >= 1
    assert in_memory.media.ffmpeg_threads == 0
    alone = _cfg("--video-concurrency", "1")
    assert alone.media.decode_threads == alone.media.ffmpeg_threads == 0
    assert not any("ffmpeg" in n for n in run_notes(alone))
    flink = _cfg("--runner", "FlinkRunner").media
    assert flink.decode_threads == flink.ffmpeg_threads == 0
    given = _cfg("--ffmpeg-threads", "3", *two).media
    assert given.decode_threads == given.ffmpeg_threads == 3
    assert _cfg("--ffmpeg-threads", "3").outputs_hash == _cfg(*two).outputs_hash
    for bad in ("-1", "257", "many", ""):
        with pytest.raises(ConfigError, match="--ffmpeg-threads must be auto or 0-256"):
            _cfg("--ffmpeg-threads", bad)


def test_asr_transcribes_several_videos_at_once_only_where_one_thread_runs_a_stage():
    """CTranslate2 uses a second thread poorly on Whisper: on 2 cores tiny.en took
    17.5 s for four minutes of speech on 2 threads, 10.7 s on 1, and 5.5 s as two
    videos at once on 1 thread each. In memory (one thread runs a stage) ASR takes a
    video per core, each on its share of the cores; elsewhere one at a time."""
    from vidcurate.transforms.models.device import usable_cores

    cores = usable_cores()
    in_memory = place_models(_cfg("--no-ocr", "--device", "cpu")).asr
    assert in_memory.concurrency == cores
    assert in_memory.cpu_threads == (max(1, cores // cores) if cores > 1 else 0)
    if cores > 1:
        assert (f"ASR transcribed up to {cores} videos at once per worker, 1 thread(s) each"
                in run_notes(place_models(_cfg("--no-ocr", "--device", "cpu"))))
    two = ("--direct_num_workers", "2", "--direct_running_mode", "multi_processing")
    assert place_models(_cfg("--no-ocr", "--device", "cpu", *two)).asr.concurrency == 1
    given = place_models(_cfg("--no-ocr", "--device", "cpu", "--asr-concurrency", "3",
                              "--model-threads", "2")).asr
    assert (given.concurrency, given.cpu_threads) == (3, 2)  # the user's threads stand
    # One at a time where it cannot run several: on a GPU, with openai-whisper.
    assert in_memory.on_device("cuda:0", 0, 8).concurrency == 1
    openai = dataclasses.replace(in_memory, backend="openai-whisper", concurrency=4)
    assert openai.on_device("cpu", 0, 8).concurrency == 1
    assert _cfg("--asr-concurrency", "4").outputs_hash == _cfg(*two).outputs_hash
    for bad in ("0", "65", "many"):
        with pytest.raises(ConfigError, match="--asr-concurrency must be auto or 1-64"):
            _cfg("--asr-concurrency", bad)
