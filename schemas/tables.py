"""pyarrow schemas of the output tables: the single source of truth.

Writers take their schema from here, the query views read the same files, and the
schema version is stored in every Parquet file's metadata (key ``vidcurate.schema``).
Bump SCHEMA_VERSION on any change to a column's name, type or meaning.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "12"
METADATA_KEY = b"vidcurate.schema"

TRANSITION = pa.struct([
    pa.field("kind", pa.string()),
    pa.field("start_frame", pa.int64()),
    pa.field("end_frame", pa.int64()),
    pa.field("start_s", pa.float64()),
    pa.field("end_s", pa.float64()),
])
DECODE_ERROR = pa.struct([pa.field("time_s", pa.float64()), pa.field("message", pa.string())])
BOUNDARY = pa.struct(
    [
        pa.field("frame", pa.int64()),
        pa.field("time_s", pa.float64()),
        pa.field("kind", pa.string()),
        pa.field("distance", pa.float32()),
        pa.field("merged", pa.bool_()),
    ]
)

DROPPED_SHOT = pa.struct(
    [
        pa.field("start_frame", pa.int64()),
        pa.field("end_frame", pa.int64()),
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("reason", pa.string()),
        pa.field("distance", pa.float32()),
    ]
)

OCR_LINE = pa.struct(
    [
        pa.field("text", pa.string()),
        pa.field("confidence", pa.float32()),
        pa.field("box", pa.list_(pa.float32())),
        pa.field("frame_index", pa.int32()),
    ]
)

SEGMENT = pa.struct(
    [
        pa.field("start", pa.float64()),
        pa.field("end", pa.float64()),
        pa.field("text", pa.string()),
        pa.field("avg_logprob", pa.float32()),
        pa.field("no_speech_prob", pa.float32()),
        pa.field("compression_ratio", pa.float32()),
    ]
)
WORD = pa.struct(
    [
        pa.field("start", pa.float64()),
        pa.field("end", pa.float64()),
        pa.field("word", pa.string()),
        pa.field("probability", pa.float32()),
    ]
)
DROPPED = pa.struct(
    [
        pa.field("start", pa.float64()),
        pa.field("end", pa.float64()),
        pa.field("text", pa.string()),
        pa.field("guard", pa.string()),
    ]
)

COUNT = pa.struct(
    [
        pa.field("stage", pa.string()),
        pa.field("name", pa.string()),
        pa.field("value", pa.int64()),
    ]
)

# clips.caption_struct: each field's value, its source per field, and the VLM claims a
# measurement overruled (records.CaptionStruct; docs/pipeline/structured.md).
CAPTION_STRUCT = pa.struct(
    [
        pa.field("short", pa.string()),
        pa.field("dense", pa.string()),
        pa.field("camera", pa.string()),
        pa.field("motion_level", pa.string()),
        pa.field("lighting", pa.string()),
        pa.field("on_screen_text", pa.list_(pa.string())),
        pa.field("speech", pa.string()),
        pa.field("subjects", pa.list_(pa.string())),
        pa.field("setting", pa.string()),
        pa.field("style", pa.string()),
        pa.field("shot_type", pa.string()),
        pa.field("sources", pa.struct([
            pa.field(name, pa.string()) for name in (
                "short", "dense", "camera", "motion_level", "lighting", "on_screen_text",
                "speech", "subjects", "setting", "style", "shot_type")])),
        pa.field("conflicts", pa.list_(pa.string())),
    ]
)

def _schema(table: str, fields: list[pa.Field]) -> pa.Schema:
    meta = {METADATA_KEY: f"{table}:{SCHEMA_VERSION}".encode()}
    return pa.schema(fields, metadata=meta)


VIDEOS = _schema(
    "videos",
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("description", pa.string()),
        pa.field("license", pa.string()),
        pa.field("metadata_json", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("start_time_s", pa.float64()),
        pa.field("container_start_s", pa.float64()),
        pa.field("fps", pa.float64()),
        pa.field("is_vfr", pa.bool_()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("rotation", pa.int32()),
        pa.field("video_codec", pa.string()),
        pa.field("pix_fmt", pa.string()),
        pa.field("audio_codec", pa.string()),
        pa.field("has_audio", pa.bool_()),
        pa.field("audio_start_s", pa.float64()),
        pa.field("container", pa.string()),
        pa.field("bit_rate", pa.int64()),
        pa.field("nb_frames", pa.int64()),
        pa.field("bytes", pa.int64()),
        pa.field("content_sha256", pa.string()),
        pa.field("shot_boundaries", pa.list_(BOUNDARY)),
        pa.field("transitions", pa.list_(TRANSITION)),
        pa.field("decode_errors", pa.list_(DECODE_ERROR)),
        pa.field("shot_count", pa.int32()),
        pa.field("event_count", pa.int32()),
        pa.field("stitch_dropped", pa.list_(DROPPED_SHOT)),
        pa.field("clip_count", pa.int32()),
        pa.field("failed_clip_count", pa.int32()),
        pa.field("language", pa.string()),
        pa.field("language_probability", pa.float32()),
        pa.field("asr_model", pa.string()),
        pa.field("asr_note", pa.string()),
        pa.field("final_url", pa.string()),
        pa.field("fetch_attempts", pa.int32()),
        pa.field("run_id", pa.string(), nullable=False),
    ],
)

CLIPS = _schema(
    "clips",
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("clip_index", pa.int32()),
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("duration_s", pa.float64()),
        pa.field("start_frame", pa.int64()),
        pa.field("end_frame", pa.int64()),
        pa.field("split_params_hash", pa.string()),
        pa.field("media_mode", pa.string()),
        pa.field("media_uri", pa.string()),
        pa.field("media_start_s", pa.float64()),
        pa.field("media_end_s", pa.float64()),
        pa.field("keyframe_uris", pa.list_(pa.string())),
        pa.field("keyframe_times_s", pa.list_(pa.float64())),
        pa.field("ocr_text", pa.string()),
        pa.field("ocr_lines", pa.list_(OCR_LINE)),
        pa.field("ocr_coverage_max", pa.float32()),
        pa.field("ocr_coverage_mean", pa.float32()),
        pa.field("transcript", pa.string()),
        pa.field("transcript_segments", pa.list_(SEGMENT)),
        pa.field("transcript_words", pa.list_(WORD)),
        pa.field("transcript_dropped", pa.list_(DROPPED)),
        # Fixed-size per run (the model's dimension, see clips_schema); DuckDB reads it
        # as FLOAT[n], ready for array_cosine_similarity.
        pa.field("clip_embedding", pa.list_(pa.float32())),
        pa.field("clip_model", pa.string()),
        pa.field("best_caption", pa.string()),
        pa.field("best_teacher", pa.string()),
        pa.field("clip_score", pa.float32()),
        pa.field("selection_method", pa.string()),
        pa.field("motion_score", pa.float32()),
        pa.field("motion_patch_min", pa.float32()),
        pa.field("camera_motion", pa.string()),
        pa.field("camera_pan", pa.float32()),
        pa.field("camera_tilt", pa.float32()),
        pa.field("camera_zoom", pa.float32()),
        pa.field("subject_motion", pa.float32()),
        pa.field("brightness", pa.float32()),
        pa.field("contrast", pa.float32()),
        pa.field("sharpness", pa.float32()),
        pa.field("content_box", pa.list_(pa.int32())),
        pa.field("decode_error_count", pa.int32()),
        pa.field("subtitle_box", pa.list_(pa.int32())),
        pa.field("aesthetic_score", pa.float32()),
        pa.field("nsfw_score", pa.float32()),
        pa.field("personal_data", pa.list_(pa.string())),
        pa.field("quality_flags", pa.list_(pa.string())),
        pa.field("caption_struct", CAPTION_STRUCT),
        pa.field("caption_conflicts", pa.int32()),
        pa.field("run_id", pa.string(), nullable=False),
    ],
)

# Filled by the captioning stages; written (empty) from the start so that queries and
# notebooks can rely on the table existing.
CAPTIONS = _schema(
    "captions",
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("teacher", pa.string(), nullable=False),
        pa.field("model", pa.string()),
        pa.field("prompt", pa.string()),
        pa.field("text", pa.string()),
        pa.field("clip_score", pa.float32()),
        pa.field("clip_score_max_frame", pa.float32()),
        pa.field("rank", pa.int32()),
        pa.field("selected", pa.bool_()),
        pa.field("selection_method", pa.string()),
        pa.field("run_id", pa.string(), nullable=False),
    ],
)

ERRORS = _schema(
    "errors",
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("source_uri", pa.string()),
        pa.field("video_id", pa.string()),
        pa.field("clip_id", pa.string()),
        pa.field("error_type", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
        pa.field("time", pa.timestamp("us", tz="UTC")),
    ],
)

RUNS = _schema(
    "runs",
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("started_at", pa.timestamp("us", tz="UTC")),
        pa.field("finished_at", pa.timestamp("us", tz="UTC")),
        pa.field("input", pa.string()),
        pa.field("output", pa.string()),
        pa.field("runner", pa.string()),
        pa.field("split_params_hash", pa.string()),
        pa.field("outputs_hash", pa.string()),
        pa.field("options_json", pa.string()),
        pa.field("versions_json", pa.string()),
        pa.field("counts", pa.list_(COUNT)),
        pa.field("schema_version", pa.string()),
        pa.field("clip_model", pa.string()),  # null: the run had no CLIP
        # Where the models ran (--device, resolved): "cpu" or "cuda:0 (<GPU name>)".
        pa.field("device", pa.string()),
        pa.field("notes", pa.list_(pa.string())),  # what a reader of the data must know
        # A run made in batches (--batch-videos) has one row per batch, each its own
        # commit: run_id is <batch_of>-bNNNNN. Null for a run made in one pass.
        pa.field("batch_of", pa.string()),
        pa.field("batch", pa.int32()),  # 1-based, in listing order
        pa.field("batches", pa.int32()),  # how many the run's listing made
    ],
)


# Written by `vidcurate dedup` / `vidcurate balance` over an output, not by a run.
DUPLICATES = _schema(
    "duplicates",
    [
        pa.field("pass_id", pa.string(), nullable=False),  # one dedup pass
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string()),
        pa.field("duplicate_of", pa.string(), nullable=False),  # the kept clip
        pa.field("similarity", pa.float32()),  # cosine to its nearest earlier match
        pa.field("threshold", pa.float32()),
    ],
)

BALANCE = _schema(
    "balance",
    [
        pa.field("pass_id", pa.string(), nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("entries", pa.list_(pa.string())),  # vocabulary entries it matched
        pa.field("kept", pa.bool_()),
    ],
)

BALANCE_COUNTS = _schema(
    "balance_counts",
    [
        pa.field("pass_id", pa.string(), nullable=False),
        pa.field("entry", pa.string(), nullable=False),
        pa.field("count_before", pa.int64()),
        pa.field("count_after", pa.int64()),
        pa.field("cap", pa.int64()),
    ],
)

# Written by `vidcurate curate`: every clip's verdict under one profile.
CURATION = _schema(
    "curation",
    [
        pa.field("pass_id", pa.string(), nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string()),
        pa.field("run_id", pa.string()),  # the run whose clip row was judged
        pa.field("kept", pa.bool_(), nullable=False),
        pa.field("dropped_by", pa.string()),  # the first rule that dropped it; null: kept
        # Rules the clip reached whose expression was NULL (an unmeasured signal); each
        # rule's if_null decided those.
        pa.field("unmeasured", pa.list_(pa.string())),
        pa.field("profile", pa.string(), nullable=False),
        pa.field("profile_sha256", pa.string(), nullable=False),  # rules + thresholds
    ],
)

# One row per dedup / balance / curate pass, written last: the pass's commit marker.
PASSES = _schema(
    "passes",
    [
        pa.field("pass_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # dedup | balance | curate
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("params_json", pa.string()),
        pa.field("summary_json", pa.string()),
    ],
)


# Written by `vidcurate review` and `vidcurate label`: a person's verdict on a clip, one
# row per labelling (relabelling appends; the newest row of a clip wins in the views).
LABELS = _schema(
    "labels",
    [
        pa.field("label_id", pa.string(), nullable=False),
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),  # keep | drop
        pa.field("reason", pa.string()),  # a rule name or free text; null: none given
        pa.field("labelled_by", pa.string()),
        pa.field("labelled_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("source", pa.string()),  # review | import
    ],
)


def table_schema(table: str, embedding_dim: int | None = None) -> pa.Schema:
    """A table's schema; with embedding_dim, clips.clip_embedding is a fixed-size list."""
    schema = TABLES[table]
    if table == "clips" and embedding_dim:
        i = schema.get_field_index("clip_embedding")
        schema = schema.set(i, pa.field("clip_embedding", pa.list_(pa.float32(),
                                                                   embedding_dim)))
    return schema


TABLES: dict[str, pa.Schema] = {
    "videos": VIDEOS,
    "clips": CLIPS,
    "captions": CAPTIONS,
    "errors": ERRORS,
    "runs": RUNS,
    "duplicates": DUPLICATES,
    "balance": BALANCE,
    "balance_counts": BALANCE_COUNTS,
    "curation": CURATION,
    "passes": PASSES,
    "labels": LABELS,
}
