"""The structured caption composed deterministically on the demo footage (no VLM):
golden texts, so that any change to what the composition says is seen and read."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from tests.support.helpers import run_config
from tests.unit.test_structured import clip
from vidcurate.schemas.records import ClipRecord, Source
from vidcurate.transforms.teachers import TEACHERS, ClipContext

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "caption_struct_demo.json"


def test_golden_composition_on_the_demo_footage(sample_footage, split_cfg):
    """The demo's bikes.mp4 and bigbuckbunny.mp4 through cut detection, picture signals
    and the metadata teacher: the composed texts are fixed (regenerate with
    VIDCURATE_UPDATE_GOLDEN=1 after a deliberate change, and read the diff)."""
    from vidcurate.pipeline.demo import SAMPLES
    from vidcurate.pipeline.options import MediaConfig
    from vidcurate.transforms.clip_rules import apply_rules
    from vidcurate.transforms.cut_clips import plan_clips, signal_columns
    from vidcurate.transforms.detect_scenes import detect_scenes
    from vidcurate.transforms.probe import probe_source

    cfg = run_config("--teachers", "metadata,structured")
    split = dataclasses.replace(split_cfg, min_clip_s=1.0)  # as the demo
    media = MediaConfig(output="/nonexistent", clip_media="none", keyframes=0,
                        keyframe_width=0, ffmpeg_threads=0)
    columns = {f.name for f in dataclasses.fields(ClipRecord)}
    got = []
    for sample in SAMPLES:
        source = Source(uri=str(sample_footage / sample.file), video_id="v",
                        title=sample.title, description=sample.description)
        scened = detect_scenes(probe_source(source), split)
        for i, task in enumerate(plan_clips(apply_rules(scened, split), media, "hash")):
            signals = {k: v for k, v in signal_columns(task.signals).items() if k in columns}
            c = dataclasses.replace(clip(**signals), clip_id=f"{sample.file}#{i}")
            base = ClipContext(clip=c, source=source)
            found = TEACHERS["metadata"](cfg=cfg.teachers, clip_model=cfg.clip_model
                                         ).candidates(base)
            struct = TEACHERS["structured"](cfg=cfg.teachers, clip_model=cfg.clip_model
                                            ).structure(dataclasses.replace(
                                                base, candidates=tuple(found)))
            got.append({"clip": c.clip_id, "short": struct.short, "dense": struct.dense,
                        "camera": struct.camera, "motion_level": struct.motion_level,
                        "lighting": struct.lighting, "sources": dict(struct.sources)})
    if os.environ.get("VIDCURATE_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
    assert got == json.loads(GOLDEN.read_text())
