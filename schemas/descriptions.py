"""What every table and column of :mod:`vidcurate.schemas.tables` means, for people.

The documentation's table reference is generated from the schemas (names, types,
nullability) and these texts (docs/hooks.py); a column without a text here, or a text
for a column that no longer exists, fails the docs build (tests/e2e/test_docs.py). Kept
apart from the pyarrow schemas so that the Parquet files do not carry them. Markdown:
code in backticks.
"""

from __future__ import annotations

TABLE_DESCRIPTIONS: dict[str, str] = {
    "videos": "One row per input, whatever happened to it.",
    "clips": "One row per clip written.",
    "captions": "One row per candidate caption.",
    "errors": (
        "One row per error: a video, clip or manifest row that failed a stage. Every "
        "ffmpeg / ffprobe process has a time limit (generous, proportional to the video's "
        "length), so a pathological file ends as a `timeout` error row instead of a stuck "
        "worker."),
    "runs": (
        "One row per complete run, written last: the run's commit marker (the views only "
        "show rows of runs that have one)."),
    "duplicates": (
        "Written by `vidcurate dedup`: one row per clip marked as a near-duplicate. The "
        "view `duplicates` follows the newest dedup pass, and `clips_unique` leaves these "
        "clips out."),
    "balance": (
        "Written by `vidcurate balance`: one row per clip. The view `balance` follows the "
        "newest balancing pass, and `clips_balanced` holds the kept clips."),
    "balance_counts": "Written by `vidcurate balance`: one row per vocabulary entry.",
    "curation": (
        "Written by `vidcurate curate`: every clip's verdict under one profile. The view "
        "`curation` follows the newest curate pass, and `clips_curated` holds the kept "
        "clips."),
    "passes": (
        "One row per dedup / balance / curate pass. This row is written last and commits "
        "the pass."),
    "labels": (
        "Written by `vidcurate review` (the browser) and `vidcurate label --from FILE`: one "
        "row per verdict a person gave a clip. Relabelling appends a row; the view "
        "`labels` holds each current clip's newest one, the view `clips` joins it (columns "
        "label, label_reason, labelled_by, labelled_at), and `labels_all` keeps every "
        "row. `curate --calibrate` fits thresholds to them."),
}

_RUN_ID = "run that wrote the row"

COLUMN_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "videos": {
        "video_id": "first 16 hex digits of sha256 of the normalised source uri",
        "source_uri": "normalised uri (absolute local path, or lower-cased scheme/host); "
                      "signed-URL secrets redacted",
        "title": "from the manifest (or the video site)",
        "description": "from the manifest (or the video site)",
        "license": "from the manifest (or the video site)",
        "metadata_json": "other manifest columns, as JSON (and the video site's `site_*` "
                         "fields)",
        "status": "`ok` (clips made), `skipped` (valid input, nothing to make), `failed`",
        "reason": "why skipped/failed, prefixed by the stage; notes on `ok` rows (damaged "
                  "tail, clips that failed)",
        "duration_s": "video stream duration (container duration if absent)",
        "start_time_s": "first video timestamp: frame 0, where every time in the tables "
                        "starts",
        "container_start_s": "the container's start; ffmpeg seeks count from it, so seeks "
                             "add `start_time_s - container_start_s`",
        "fps": "average frame rate; all times are frame / fps",
        "is_vfr": "`r_frame_rate` differs from the average rate by more than 1 %",
        "width": "coded frame width",
        "height": "coded frame height",
        "rotation": "clockwise degrees players rotate by (display matrix / `rotate` tag)",
        "video_codec": "from ffprobe",
        "pix_fmt": "from ffprobe",
        "audio_codec": "from ffprobe",
        "has_audio": "an audio stream exists",
        "audio_start_s": "first audio timestamp",
        "container": "ffprobe format name",
        "bit_rate": "from ffprobe (may be null)",
        "nb_frames": "from ffprobe (may be null)",
        "bytes": "file size",
        "content_sha256": "sha256 of the file bytes (streamed)",
        "shot_boundaries": "first frame of each new shot; `kind` `detected` or `forced`; "
                           "with stitching, the CLIP `distance` across the boundary and "
                           "whether the shots were `merged` (null where not compared)",
        "transitions": "gradual transitions (`dissolve`, `fade_out`, `fade_in`, `wipe`, "
                       "`flash`): their frames are in no clip",
        "decode_errors": "where the decoder reported damaged data, the first 100 lines "
                         "(all are counted)",
        "shot_count": "shots after forced cuts",
        "event_count": "events after semantic stitching (null: stitching off)",
        "stitch_dropped": "cut-scenes / events stitching dropped, with the rule "
                          "(`transition`, `frames_unreadable`, `still`, `redundant`) and "
                          "the distance",
        "clip_count": "clips written",
        "failed_clip_count": "clips that failed to cut (each has an `errors` row)",
        "language": "spoken language detected by Whisper",
        "language_probability": "Whisper's probability for `language` (1 for English-only "
                                "models)",
        "asr_model": "`backend:model` that transcribed it",
        "asr_note": "why there is no transcript although ASR ran (`no audio stream`)",
        "final_url": "for downloads: the URL after redirects (secrets redacted)",
        "fetch_attempts": "for downloads: attempts it took (1 = no retry)",
        "run_id": _RUN_ID,
    },
    "clips": {
        "clip_id": "uuid5 of (video_id, start frame, end frame, split_params_hash)",
        "video_id": "the video",
        "source_uri": "the video's source uri",
        "clip_index": "position of the clip within its video",
        "start_s": "start of the span, frame-aligned",
        "end_s": "end of the span, frame-aligned",
        "duration_s": "length of the span",
        "start_frame": "first frame of the half-open frame range [start, end)",
        "end_frame": "end of the half-open frame range [start, end)",
        "split_params_hash": "hash of every option that decides spans (detector, "
                             "thresholds, clip rules, stitching)",
        "media_mode": "`copy`, `exact` or `none`",
        "media_uri": "clip file (null for `none`)",
        "media_start_s": "where the file really starts in the source video (copy: the "
                         "keyframe at or before the span; exact: the span's start)",
        "media_end_s": "where the file really ends: its frames are the source's frames "
                       "in [media_start_s, media_end_s) (copy: the last frame its packets "
                       "decode, never past end_s; exact: the span's end)",
        "keyframe_uris": "JPEG keyframes",
        "keyframe_times_s": "the times of the frames they show, in the source video "
                            "(each the sampled frame nearest its 5-95 % position, inside "
                            "the clip)",
        "ocr_text": "on-screen text, merged over keyframes (`''`: none found; null: OCR "
                    "off)",
        "ocr_lines": "every line read, with its confidence and keyframe index; `box` = "
                     "x1,y1,…,x4,y4 as fractions of width / height",
        "ocr_coverage_max": "fraction of the frame covered by text boxes, max over "
                            "keyframes",
        "ocr_coverage_mean": "fraction of the frame covered by text boxes, mean over "
                             "keyframes",
        "transcript": "the clip's speech (`''`: none; null: ASR off or no usable audio)",
        "transcript_segments": "Whisper segments cut down to the clip's words; times in "
                               "video seconds",
        "transcript_words": "the words whose midpoint lies in the clip",
        "transcript_dropped": "segments removed by a hallucination guard (`unvoiced`, "
                              "`no_speech`, `low_logprob`, `repetition`)",
        "clip_embedding": "mean of the keyframes' L2-normalised CLIP embeddings (null "
                          "without CLIP); a fixed-size list in the files, `FLOAT[d]` in "
                          "the views",
        "clip_model": "the CLIP model that made it",
        "best_caption": "the selected caption",
        "best_teacher": "the selected caption's teacher",
        "clip_score": "the selected caption's CLIP score (null when selected by priority)",
        "selection_method": "`clip` (highest CLIP score) or `priority` (no scores: "
                            "teacher priority)",
        "motion_score": "global motion, frame diagonals per second",
        "motion_patch_min": "motion of the least moving cell of a 4-across grid, same "
                            "unit",
        "camera_motion": "`static`, `pan_left`, `pan_right`, `tilt_up`, `tilt_down`, "
                         "`zoom_in`, `zoom_out`, `shaky` or `mixed` (the camera's move: "
                         "`pan_left` turns left, the content moves right); null: no "
                         "sample pair in the clip",
        "camera_pan": "net pan of the fitted camera model, frame widths per second, > 0 "
                      "to the right",
        "camera_tilt": "net tilt, frame heights per second, > 0 upwards",
        "camera_zoom": "net zoom, natural log of the scale change per second, > 0 in "
                       "(0.1: the content grows about 10 % a second)",
        "subject_motion": "the flow the camera model does not explain (people, objects), "
                          "frame diagonals per second",
        "brightness": "mean luma 0–1 inside the picture (bars excluded)",
        "contrast": "standard deviation of luma, 0–1",
        "sharpness": "variance of the Laplacian of luma, frame resampled to 256 px wide",
        "content_box": "`[x0, y0, x1, y1]` of the picture without black bars, source "
                       "pixels, stable over the clip; null: black throughout",
        "decode_error_count": "decoder error lines whose reach overlaps the clip (0: "
                              "clean)",
        "subtitle_box": "burned-in subtitle band `[x0, y0, x1, y1]` in source pixels, full "
                        "width; null: none found, or OCR off",
        "aesthetic_score": "LAION aesthetic head over the keyframe CLIP embeddings, mean "
                           "over keyframes (about 1–10); null: `--aesthetic-model` off",
        "nsfw_score": "Open-NSFW (Yahoo, 2016) probability of pornographic content, the "
                      "highest over the clip's keyframes (0–1); null: the `safety` extra "
                      "is not installed, `--no-nsfw`, or the keyframes could not be read",
        "personal_data": "kinds of personal data found in the clip's on-screen text, "
                          "transcript and captions (`email`, `phone`, `url`, "
                          "`payment_card`, `iban`), never the values; `[]`: none found",
        "quality_flags": "flags from the vocabulary `static, dark, overexposed, blurry, "
                         "letterboxed, subtitles, damaged, text_heavy, low_resolution, "
                         "low_aesthetic, nsfw, personal_data`; `[]`: every measured "
                         "signal passed",
        "caption_struct": "the structured caption: `short` (one sentence), `dense` (a few), "
                          "`camera`, `motion_level`, `lighting` (measured), "
                          "`on_screen_text` (OCR, deduplicated), `speech` (transcript "
                          "excerpt), `subjects` (zero-shot tags), `setting`, `style`, "
                          "`shot_type` (VLM, else null); `sources.<field>` names each "
                          "field's measurement or teacher; `conflicts` lists the VLM claims "
                          "a measurement overruled; null: the `structured` teacher did not "
                          "run or failed on the clip",
        "caption_conflicts": "how many VLM claims contradicted a measurement (camera "
                             "motion, on-screen text) and were overruled; 0 without a VLM",
        "run_id": _RUN_ID,
    },
    "captions": {
        "clip_id": "the clip",
        "video_id": "the clip's video",
        "teacher": "`metadata`, `speech`, `ocr`, `zero_shot`, `captioner`, `vlm`, "
                   "`vlm_fuse`, `structured`, …",
        "model": "what produced the text (`metadata-rules:1`, `extractive:v1`, "
                 "`open_clip:…`, `transformers:…`, `openai-chat:<model>`)",
        "prompt": "the prompt, template or rule (`title`, `slide`, …)",
        "text": "the caption",
        "clip_score": "cosine of the text and clip embeddings (null without CLIP)",
        "clip_score_max_frame": "best cosine with a single keyframe",
        "rank": "1 = selected; order by score, then teacher priority, teacher, text",
        "selected": "the clip's chosen caption (exactly one per clip with candidates)",
        "selection_method": "`clip` or `priority`",
        "run_id": _RUN_ID,
    },
    "errors": {
        "run_id": _RUN_ID,
        "stage": "`manifest`, `fetch`, `probe`, `detect_scenes`, `stitch`, `plan_clips`, "
                 "`cut_clips`, `ocr`, `asr`, `embed_clips`, `judge_clips`, `captioning`, "
                 "`score_captions`",
        "source_uri": "the video's uri (`manifest#row=N` for a bad manifest row)",
        "video_id": "the video, when known",
        "clip_id": "the clip, for a clip's error",
        "error_type": "e.g. `probe_failed`, `empty_file`, `not_found`, `decode_failed`, "
                      "`cut_failed`, `keyframe_failed`, `unreadable_frame`, "
                      "`audio_failed`, `timeout`, `bad_manifest_row`, `http_404` and "
                      "other `http_<status>`, `read_timeout`, `truncated`, "
                      "`redirect_loop`, `too_large`, `scheme_not_allowed`, "
                      "`refused_address`, `site_refused`, `ytdlp_missing`; "
                      "`internal:<Exception>` for bugs",
        "message": "what happened (secrets redacted)",
        "time": "when",
    },
    "runs": {
        "run_id": "the run",
        "status": "`complete`",
        "started_at": "when the run started",
        "finished_at": "when it finished",
        "input": "`--input` (secrets redacted)",
        "output": "`--output`",
        "runner": "the Beam runner",
        "split_params_hash": "hash of the options that decide spans",
        "outputs_hash": "hash of every setting that changes a video's rows: what resume "
                        "compares",
        "options_json": "the validated config and every pipeline option (secret-looking "
                        "options written as `REDACTED`)",
        "versions_json": "vidcurate, Beam, scenedetect, pyarrow, duckdb, ffmpeg, …",
        "counts": "`{stage, name, value}` from Beam metrics: processed / skipped / failed "
                  "per stage, `manifest/duplicates`, `ocr/frames`, "
                  "`ocr/frames_with_text`, `asr/audio_seconds`, `asr/dropped_<guard>`, "
                  "`captioning/<teacher>_candidates`, RunInference's "
                  "`clip_model/num_inferences`, …",
        "schema_version": "version of these schemas",
        "clip_model": "the CLIP model (null without CLIP)",
        "device": "where the models ran (`--device`, resolved before the graph): `cpu` or "
                  "`cuda:N (<GPU name>)`",
        "notes": "what a reader must know: CLIP off, stitching off, which teachers and "
                 "selection rule, `--device auto` falling back to the CPU, NVDEC missing",
        "batch_of": "for a run made in batches (`--batch-videos`): the run's id; each batch "
                    "is committed on its own with `run_id` `<batch_of>-bNNNNN`. Null for a "
                    "run made in one pass",
        "batch": "the batch's number, from 1, in listing order (null: one pass)",
        "batches": "how many batches the run's listing made (null: one pass)",
    },
    "duplicates": {
        "pass_id": "the dedup pass",
        "created_at": "when the pass ran",
        "clip_id": "the duplicate clip",
        "video_id": "its video",
        "duplicate_of": "the kept clip it duplicates (chains resolve to the kept clip)",
        "similarity": "cosine to its nearest earlier match",
        "threshold": "the pass's `--threshold`",
    },
    "balance": {
        "pass_id": "the balancing pass",
        "created_at": "when the pass ran",
        "clip_id": "the clip",
        "entries": "vocabulary entries it matched",
        "kept": "kept by one of its entries (a clip that matches none: kept only with "
                "`--keep-unmatched`)",
    },
    "balance_counts": {
        "pass_id": "the balancing pass",
        "entry": "vocabulary entry",
        "count_before": "clips that matched it",
        "count_after": "of those, clips kept",
        "cap": "the pass's `--cap`",
    },
    "curation": {
        "pass_id": "the curate pass",
        "created_at": "when the pass ran",
        "clip_id": "the clip",
        "video_id": "its video",
        "run_id": "the run whose clip row was judged",
        "kept": "passed every rule",
        "dropped_by": "the first rule that dropped it; null when kept",
        "unmeasured": "rules the clip reached whose expression was NULL (an unmeasured "
                      "signal; each rule's `if_null` decided)",
        "profile": "the profile's name",
        "profile_sha256": "hash of the rules and effective thresholds: two passes with "
                          "the same hash made the same decisions",
    },
    "passes": {
        "pass_id": "the pass",
        "kind": "`dedup`, `balance`, `curate` or `calibrate` (`curate --calibrate`)",
        "created_at": "when it ran",
        "params_json": "its parameters",
        "summary_json": "its result (for curate: the funnel; for calibrate: each rule's "
                        "fit, counts and keep-rate curve)",
    },
    "labels": {
        "label_id": "this row (a random uuid)",
        "clip_id": "the clip labelled",
        "label": "`keep` or `drop`",
        "reason": "why: a rule name of the profile or free text; null when none was given",
        "labelled_by": "who labelled it (the reviewer's name, or the user running the "
                       "command)",
        "labelled_at": "when; the newest label of a clip wins",
        "source": "`review` (the browser) or `import` (`vidcurate label --from`)",
    },
}
