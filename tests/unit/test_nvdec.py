"""--decode-device cuda: the cut detector's decode on NVDEC when ffmpeg and the driver
allow it, and on the CPU (with a note, counted) when they do not. This machine's ffmpeg
has no CUDA: the argument building is checked as a pure function, and the fallback for
real."""

from __future__ import annotations

import dataclasses

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from vidcurate.pipeline.options import ConfigError, RunConfig
from vidcurate.pipeline.runs import run_notes
from vidcurate.schemas.records import Source
from vidcurate.transforms.media.decoding import (
    detect_size,
    downscaled_decode_args,
    nvdec_missing,
    nvdec_suits,
)

HWACCELS_CUDA = "Hardware acceleration methods:\nvdpau\ncuda\nvaapi\n"
HWACCELS_NONE = "Hardware acceleration methods:\nvdpau\nvaapi\n"
FILTERS = (" ... scale             V->V       Scale the input video size.\n"
           " ... scale_cuda        V->V       GPU accelerated video resizer\n"
           " ... hwdownload        V->V       Download a hardware frame to a normal frame\n")


def _cfg(*args: str) -> RunConfig:
    return RunConfig.from_options(PipelineOptions(["--input", "in", "--output", "out/", *args]))


def test_decode_device_values():
    assert _cfg().media.decode_device == "cpu"
    assert _cfg("--decode-device", "cuda").media.decode_device == "cuda:0"
    assert _cfg("--decode-device", "cuda:1").media.decode_device == "cuda:1"
    for bad in ("auto", "nvdec", "cpu:1"):
        with pytest.raises(ConfigError, match="--decode-device must be cpu, cuda or cuda:N"):
            _cfg("--decode-device", bad)


def test_the_build_probe_reads_hwaccels_and_filters():
    assert nvdec_missing(HWACCELS_CUDA, FILTERS) is None
    assert "no CUDA hwaccel" in nvdec_missing(HWACCELS_NONE, FILTERS)
    # "cuda" in the header line or in a description is not the hwaccel.
    assert "no CUDA hwaccel" in nvdec_missing("cuda acceleration methods:\nvaapi\n", FILTERS)
    no_scale = "\n".join(line for line in FILTERS.splitlines() if "scale_cuda" not in line)
    assert "no scale_cuda filter" in nvdec_missing(HWACCELS_CUDA, no_scale)


def test_nvdec_arguments_decode_and_scale_on_the_gpu(videos):
    from vidcurate.transforms.probe import probe_source

    info = probe_source(Source(uri=str(videos.cuts), video_id="v")).info
    w, h = detect_size(info, 128)
    gpu = downscaled_decode_args("/v.mp4", info, w, h, gpu=1)
    i = gpu.index("-i")
    assert gpu[gpu.index("-hwaccel") + 1] == "cuda" and gpu.index("-hwaccel") < i
    assert gpu[gpu.index("-hwaccel_output_format") + 1] == "cuda"
    assert gpu[gpu.index("-hwaccel_device") + 1] == "1"
    assert gpu[gpu.index("-vf") + 1].startswith(f"scale_cuda={w}:{h},hwdownload,format=nv12,")
    assert "-skip_loop_filter" not in gpu  # NVDEC does its own deblocking
    cpu = downscaled_decode_args("/v.mp4", info, w, h)
    assert "-hwaccel" not in cpu and "-skip_loop_filter" in cpu
    assert f"scale={w}:{h}:flags=fast_bilinear" in cpu[cpu.index("-vf") + 1]
    assert cpu[-5:] == gpu[-5:] == ["-pix_fmt", "bgr24", "-f", "rawvideo", "pipe:1"]
    assert nvdec_suits(info)
    assert not nvdec_suits(dataclasses.replace(info, pix_fmt="yuv420p10le"))
    assert not nvdec_suits(dataclasses.replace(info, rotation=90))
    assert not nvdec_suits(dataclasses.replace(info, video_codec="prores"))


def test_a_failed_nvdec_decode_is_redone_on_the_cpu_with_the_same_cuts(videos, split_cfg):
    from vidcurate.transforms.detect_scenes import detect_scenes
    from vidcurate.transforms.probe import probe_source

    video = probe_source(Source(uri=str(videos.cuts), video_id="v"))
    heard: list[str] = []
    # No GPU 99 anywhere (and no CUDA in this ffmpeg): the NVDEC decode fails.
    on_gpu = detect_scenes(video, split_cfg, decode_device="cuda:99", on_decode=heard.append)
    on_cpu = detect_scenes(video, split_cfg, on_decode=heard.append)
    assert heard == ["nvdec_fallback", "cpu"]
    assert on_gpu == on_cpu and len(on_cpu.boundaries) >= 4


def test_an_ffmpeg_without_cuda_means_cpu_decode_and_a_note(monkeypatch):
    from vidcurate.pipeline.environment import place_models
    from vidcurate.transforms.media import decoding

    monkeypatch.setattr(decoding, "probe_nvdec", lambda: "this ffmpeg build has no CUDA "
                        "hwaccel (ffmpeg -hwaccels)")
    cfg = place_models(_cfg("--no-ocr", "--decode-device", "cuda"))
    assert cfg.media.decode_device == "cpu"
    assert any(n.startswith("--decode-device cuda:0: this ffmpeg build has no CUDA")
               for n in run_notes(cfg))
    monkeypatch.setattr(decoding, "probe_nvdec", lambda: None)
    kept = place_models(_cfg("--no-ocr", "--decode-device", "cuda"))
    assert kept.media.decode_device == "cuda:0"
    assert not any("--decode-device" in n for n in run_notes(kept))
