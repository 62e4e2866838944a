"""BuildVideoRows: every input ends as exactly one `videos` row, whatever happened.

All per-video results (probe, skip, split, clip counts, errors) are joined on the
video id, so a video lost or failed in any stage still gets its row with a reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apache_beam as beam

from vidcurate.schemas.records import (
    AsrResult,
    ErrorRecord,
    Fetched,
    ProbedVideo,
    Skip,
    Source,
    SplitVideo,
    VideoRow,
)
from vidcurate.transforms.cut_clips import STAGE as CUT_STAGE
from vidcurate.transforms.frame_signals import decode_note
from vidcurate.transforms.media.limits import TOOL_STOPPED_TYPES

# Stages that add to clips that exist: their errors are noted on the video, not fatal.
ENRICHING_STAGES = ("ocr", "asr")


def video_outcome(
    source: Source,
    run_id: str,
    probed: ProbedVideo | None = None,
    skip: Skip | None = None,
    split: SplitVideo | None = None,
    clip_count: int = 0,
    errors: Iterable[ErrorRecord] = (),
    asr: AsrResult | None = None,
    fetched: Fetched | None = None,
) -> VideoRow:
    errors = sorted(errors, key=lambda e: (e.stage, e.clip_id or "", e.message))
    # Errors about one clip never fail the whole video: a clip that could not be cut is
    # missing, one whose keyframe OCR could not read is kept with partial results.
    clip_errors = [e for e in errors if e.clip_id is not None and e.stage == CUT_STAGE]
    # An audio extraction the environment stopped (a signal, a limit) is not a fact about
    # the video: the video fails, so that the next run does it again, never an ok video
    # with a note that resume would keep.
    stopped = [e for e in errors if e.stage == "asr" and e.error_type in TOOL_STOPPED_TYPES]
    # Enrichment failures (a clip's OCR, a video's ASR) leave the clips in place: notes.
    other_clip_errors = [e for e in errors if (e.stage in ENRICHING_STAGES
                                               or (e.clip_id is not None
                                                   and e.stage != CUT_STAGE))
                         and e not in stopped]
    video_errors = [e for e in errors if e.clip_id is None and e.stage not in ENRICHING_STAGES]
    video_errors += stopped
    info = probed.info if probed else (split.scened.video.info if split else None)
    if fetched is not None:
        source = fetched.source  # with what a video site said about itself
    common: dict[str, Any] = {"source": source, "run_id": run_id, "info": info, "asr": asr,
                              "fetched": fetched}
    if split is not None:
        scened = split.scened
        common.update(boundaries=scened.boundaries, shot_count=len(scened.shots),
                      event_count=None if scened.events is None else len(scened.events),
                      stitch_dropped=scened.stitch_dropped, transitions=scened.transitions,
                      decode_errors=scened.decode_log.kept if scened.decode_log else ())
    if video_errors:
        first = video_errors[0]
        return VideoRow(status="failed", reason=f"{first.stage}: {first.message}", **common)
    if skip is not None:
        return VideoRow(status="skipped", reason=f"{skip.stage}: {skip.reason}", **common)
    if split is None:
        # Should not happen: each stage emits a result or an error for every element.
        return VideoRow(status="failed", reason="no stage reported a result for this video",
                        **common)
    notes = [n for n in (split.scened.detect_note, decode_note(split.scened.decode_log)) if n]
    if not split.spans:
        return VideoRow(status="skipped", reason="; ".join([f"clip_rules: {split.reason}",
                                                             *notes]), **common)
    if clip_errors and clip_count == 0:
        return VideoRow(status="failed", reason=f"{CUT_STAGE}: all {len(clip_errors)} clips "
                        f"failed, first: {clip_errors[0].message}",
                        failed_clip_count=len(clip_errors), **common)
    if clip_errors:
        notes.append(f"{len(clip_errors)} of {len(clip_errors) + clip_count} clips failed to "
                     f"cut, first: {clip_errors[0].message}")
    for stage in sorted({e.stage for e in other_clip_errors}):
        of_stage = [e for e in other_clip_errors if e.stage == stage]
        clips = {e.clip_id for e in of_stage if e.clip_id}
        where = f" on {len(clips)} clip(s)" if clips else ""
        notes.append(f"{stage}: {len(of_stage)} error(s){where}, first: {of_stage[0].message}")
    return VideoRow(status="ok", reason="; ".join(notes) or None, clip_count=clip_count,
                    failed_clip_count=len(clip_errors), **common)


def _row_from_join(item: tuple[str, dict[str, list]], run_id: str) -> list[VideoRow]:
    _, parts = item
    sources = list(parts["sources"])
    if not sources:
        return []  # every video id comes from a source; nothing else can reach here
    fetched = next(iter(parts["fetched"]), None)
    return [video_outcome(
        sources[0],
        run_id,
        probed=next(iter(parts["probed"]), None),
        skip=next(iter(parts["skipped"]), None),
        split=next(iter(parts["splits"]), None),
        clip_count=sum(parts["clip_counts"]),
        errors=parts["errors"],
        asr=next(iter(parts["asr"]), None),
        fetched=fetched,
    )]


class BuildVideoRows(beam.PTransform):
    """{sources, probed, skipped, splits, clips, errors} -> VideoRow, one per source."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def expand(self, parts: dict[str, beam.PCollection]) -> beam.PCollection:
        keyed = {
            "sources": parts["sources"] | "KeySources" >> beam.Map(lambda s: (s.video_id, s)),
            "probed": parts["probed"] | "KeyProbed" >> beam.Map(lambda v: (v.video_id, v)),
            "skipped": parts["skipped"] | "KeySkipped" >> beam.Map(lambda s: (s.video_id, s)),
            "splits": parts["splits"]
            | "KeySplits" >> beam.Map(lambda s: (s.scened.video.video_id, s)),
            "clip_counts": parts["clips"]
            | "KeyClips" >> beam.Map(lambda c: (c.video_id, 1))
            | "CountClips" >> beam.CombinePerKey(sum),
            "errors": parts["errors"]
            | "WithVideo" >> beam.Filter(lambda e: e.video_id is not None)
            | "KeyErrors" >> beam.Map(lambda e: (e.video_id, e)),
            "asr": parts["asr"] | "KeyAsr" >> beam.Map(lambda r: (r.video_id, r)),
            "fetched": parts["fetched"] | "KeyFetched" >> beam.Map(lambda f: (f.video_id, f)),
        }
        return (
            keyed
            | "Join" >> beam.CoGroupByKey()
            | "Outcome" >> beam.FlatMap(_row_from_join, self.run_id)
        )
