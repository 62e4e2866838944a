"""The parameters that decide where clips start and end: cut detection (scenes.py),
semantic stitching (stitch.py) and the clip rules (rules.py). Hashed together into
every clip id, so they live together."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass


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

    @property
    def params_hash(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
