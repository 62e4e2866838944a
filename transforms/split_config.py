"""The parameters that decide where clips start and end: cut detection (detect_scenes.py),
semantic stitching (stitch.py) and the clip rules (clip_rules.py). Hashed together into
every clip id, so they live together."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from vidcurate.transforms.core import AddArgument, check
from vidcurate.transforms.transitions import TransitionConfig


@dataclass(frozen=True)
class StitchConfig:
    """Panda-70M semantic stitching of cut-scenes. Distances are L2 between L2-normalised
    CLIP image embeddings, already multiplied by the calibration scale."""

    model_id: str  # the embedding model: its distances only mean something for it
    start_position: float
    end_position: float
    transition_distance: float
    merge_distance: float
    still_distance: float
    redundant_distance: float
    scale: float  # recorded: the factor the Panda values were multiplied by


@dataclass(frozen=True)
class SplitConfig:
    """Parameters that decide where clips start and end; hashed into every clip id."""

    detector: str
    threshold: float
    min_scene_len: int
    detect_width: int
    max_cut_len: float
    force_cut_after: float
    min_clip_s: float
    max_clip_s: float
    trim_fraction: float
    stitch: StitchConfig | None = None  # None: every cut-scene is an event
    transitions: TransitionConfig | None = None  # None: gradual transitions not searched

    @property
    def params_hash(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# Cut detectors by option value, with their default thresholds: PySceneDetect's
# (detect_scenes.make_detector; Panda-70M used ContentDetector(threshold=25)),
# TransNetV2 (a probability; the package's 0.5) and the ensemble of content and
# TransNetV2 (the threshold is content's; TransNetV2 keeps 0.5). learned_cuts.py.
DETECTORS = ("content", "adaptive", "transnetv2", "ensemble")
LEARNED_DETECTORS = ("transnetv2", "ensemble")
DEFAULT_THRESHOLDS = {"content": 25.0, "adaptive": 3.0, "transnetv2": 0.5, "ensemble": 25.0}

# Factors that move Panda-70M's distances (ImageBind = OpenCLIP ViT-H-14 image features)
# onto another model's scale. Only entries that were measured belong here; see
# docs/pipeline/clip.md "Calibrating the distances to your model" and
# benchmarks/clip_bench.py --calibrate.
CALIBRATED_SCALES: dict[str, float] = {
    "ViT-H-14": 1.0,  # ImageBind's vision tower is OpenCLIP ViT-H-14: Panda's own scale
}


def default_scale(model: str) -> float:
    return CALIBRATED_SCALES.get(model, 1.0)


def add_split_arguments(add: AddArgument) -> None:
    """Cut detection, clip rules and semantic stitching."""
    add("detector", default="content", choices=DETECTORS,
        help="Cut detector: content (PySceneDetect, Panda-70M), adaptive (PySceneDetect), "
        "transnetv2 (the TransNetV2 network on --device; the 'transnetv2' extra) or "
        "ensemble (content and TransNetV2 together; docs: Splitting).")
    add("scene-threshold", type=float, default=None,
        help="Detector threshold (default 25 for content as Panda-70M, 3.0 for adaptive, "
        "0.5 for transnetv2 (a probability), 25 for ensemble (its content detector's)).")
    add("min-scene-len", type=int, default=15,
        help="Minimum shot length in frames between two detected cuts (Panda-70M: 15).")
    add("detect-width", type=int, default=256,
        help="Frames are downscaled to this width for cut detection (never upscaled).")
    add("max-cut-len", type=float, default=5.0,
        help="In a shot with no cut for --force-cut-after seconds, force a cut every "
        "this many seconds (Panda-70M: 5). 0 disables forced cuts.")
    add("force-cut-after", type=float, default=7.0,
        help="Shot length in seconds beyond which forced cuts apply (Panda-70M: 7).")
    add("min-clip-s", type=float, default=2.5, help="Shortest clip kept, seconds (Panda: 2.5).")
    add("max-clip-s", type=float, default=60.0,
        help="Longest clip, seconds (Panda: 60); longer spans are split evenly.")
    add("trim-fraction", type=float, default=0.0,
        help="Fraction of each span cut from both ends (0 to <0.5).")
    add("no-stitch", action="store_true",
        help="Keep every cut-scene as its own event (no CLIP stitching).")
    add("stitch-positions", default="0.05,0.95",
        help="Where in each cut-scene its start and end frames are taken (Panda-70M: "
        "5%% and 95%%).")
    add("transition-distance", type=float, default=1.0,
        help="Drop a cut-scene whose start and end frames are further apart than this "
        "(a transition effect; Panda-70M: 1.0).")
    add("merge-distance", type=float, default=0.6,
        help="Merge a cut-scene into the previous event when their boundary frames are "
        "this close (Panda-70M: 0.6).")
    add("still-distance", type=float, default=0.15,
        help="Drop an event whose first and last frames are closer than this (nothing "
        "changes; Panda-70M: 0.15).")
    add("redundant-distance", type=float, default=0.3,
        help="Drop an event whose mean embedding is this close to one already kept in "
        "the same video (Panda-70M: 0.3). 0 disables.")
    add("stitch-scale", type=float, default=None,
        help="Multiplies the four distances above, to move Panda-70M's thresholds onto "
        "the scale of the CLIP model in use (default: the model's entry in the "
        "calibration table, else 1.0; see the docs, CLIP and stitching).")
    TransitionConfig.add_arguments(add)


def split_config(o: Any, clip_model: str | None, clip_model_id: str) -> SplitConfig:
    """The split parameters from the options; clip_model None: CLIP is off (no
    stitching). Raises ConfigError."""
    threshold = o.scene_threshold
    if threshold is None:
        threshold = DEFAULT_THRESHOLDS[o.detector]
    check(
        (threshold > 0, f"--scene-threshold must be > 0, got {threshold}"),
        (o.detector != "transnetv2" or threshold < 1,
         f"--scene-threshold for transnetv2 is a probability in (0, 1), got {threshold}"),
        (o.min_scene_len >= 1, f"--min-scene-len must be >= 1 frame, got {o.min_scene_len}"),
        (o.detect_width >= 16, f"--detect-width must be >= 16 pixels, got {o.detect_width}"),
        (o.max_cut_len >= 0, f"--max-cut-len must be >= 0, got {o.max_cut_len}"),
        (o.max_cut_len == 0 or o.force_cut_after >= o.max_cut_len,
         f"--force-cut-after ({o.force_cut_after}) must be >= --max-cut-len "
         f"({o.max_cut_len})"),
        (o.min_clip_s >= 0, f"--min-clip-s must be >= 0, got {o.min_clip_s}"),
        (o.max_clip_s > o.min_clip_s,
         f"--max-clip-s ({o.max_clip_s}) must be greater than --min-clip-s "
         f"({o.min_clip_s})"),
        (0 <= o.trim_fraction < 0.5, f"--trim-fraction must be in [0, 0.5), got "
         f"{o.trim_fraction}"),
        (_positions(o.stitch_positions) is not None,
         f"--stitch-positions must be two fractions start,end with 0 <= start < end <= 1,"
         f" got {o.stitch_positions!r}"),
        (min(o.transition_distance, o.merge_distance, o.still_distance,
             o.redundant_distance) >= 0, "stitching distances must be >= 0"),
        (o.stitch_scale is None or o.stitch_scale > 0,
         f"--stitch-scale must be > 0, got {o.stitch_scale}"),
    )
    stitch = None
    if clip_model is not None and not o.no_stitch:
        scale = o.stitch_scale if o.stitch_scale is not None else default_scale(clip_model)
        start, end = _positions(o.stitch_positions) or (0.05, 0.95)
        stitch = StitchConfig(
            model_id=clip_model_id, start_position=start, end_position=end,
            transition_distance=o.transition_distance * scale,
            merge_distance=o.merge_distance * scale,
            still_distance=o.still_distance * scale,
            redundant_distance=o.redundant_distance * scale, scale=scale)
    return SplitConfig(
        detector=o.detector, threshold=float(threshold), min_scene_len=o.min_scene_len,
        detect_width=o.detect_width, max_cut_len=o.max_cut_len,
        force_cut_after=o.force_cut_after, min_clip_s=o.min_clip_s,
        max_clip_s=o.max_clip_s, trim_fraction=o.trim_fraction, stitch=stitch,
        transitions=TransitionConfig.from_options(o))


def _positions(text: str) -> tuple[float, float] | None:
    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        return None
    if len(values) != 2 or not 0 <= values[0] < values[1] <= 1:
        return None
    return values[0], values[1]
