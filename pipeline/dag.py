"""build(): wire the stages into one Beam graph. Nothing else happens here."""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam

from vidcurate.pipeline.options import RunConfig
from vidcurate.transforms.asr import AttachTranscripts, Transcribe
from vidcurate.transforms.captioning import Captioning
from vidcurate.transforms.clip_rules import ApplyClipRules
from vidcurate.transforms.content_dedup import ContentDedup
from vidcurate.transforms.cut_clips import CutClips
from vidcurate.transforms.detect_scenes import DetectScenes, FrameSampleConfig
from vidcurate.transforms.embed_clips import EmbedClips
from vidcurate.transforms.errors import ERRORS, SKIPPED
from vidcurate.transforms.fetch import Fetch, RemoveDownloads
from vidcurate.transforms.judge_clips import JudgeClips
from vidcurate.transforms.manifest import ListedBatch, ReadListed, ReadManifest
from vidcurate.transforms.nsfw import ScoreNsfw
from vidcurate.transforms.ocr import OCR
from vidcurate.transforms.personal_data import FindPersonalData
from vidcurate.transforms.probe import Probe
from vidcurate.transforms.resume import SkipDone
from vidcurate.transforms.score_captions import ScoreCaptions
from vidcurate.transforms.sinks import WriteTable
from vidcurate.transforms.stitch import Stitch
from vidcurate.transforms.video_rows import BuildVideoRows


@dataclass
class Outputs:
    """The graph's main collections, for tests and for stages added later."""

    sources: beam.PCollection
    videos: beam.PCollection  # VideoRow, one per source
    clips: beam.PCollection  # ClipRecord
    errors: beam.PCollection  # ErrorRecord, from every stage


def build(p: beam.Pipeline, cfg: RunConfig, previous_runs: list[str] | None = None,
          batch: ListedBatch | None = None, earlier_batches: tuple[str, ...] = ()) -> Outputs:
    """The run's graph over --input, or over one batch the launcher listed (after the
    run's committed batches earlier_batches)."""
    run_id = cfg.run_id
    if batch is None:
        listed = p | "Manifest" >> ReadManifest(cfg.input, cfg.video_extensions, run_id,
                                                    exclude=cfg.output,
                                                    follow_symlinks=cfg.follow_symlinks)
    else:
        listed = p | "Manifest" >> ReadListed(batch, run_id)
    todo = listed["sources"]
    if previous_runs:
        # A batch looks only at its own videos' earlier rows, so what the join holds is
        # bounded by the batch, not by the output.
        todo = todo | "Resume" >> SkipDone(
            cfg.output, previous_runs, cfg.retry_failed,
            only=frozenset(s.video_id for s in batch.sources) if batch is not None else None)
    fetched = todo | "Fetch" >> Fetch(cfg.fetch, run_id)
    unique = fetched["fetched"] | "ContentDedup" >> ContentDedup(
        cfg.fetch.keep_downloads, cfg.output, earlier_batches)
    probed = unique["unique"] | "Probe" >> Probe(run_id, cfg.media.limits)
    # Stitching and keyframes take their frames from the detect decode (a scratch sample
    # in the run's work folder), so no stage decodes a video twice.
    sample = FrameSampleConfig.for_run(cfg.fetch.work_dir, cfg.media.keyframes,
                                       cfg.media.keyframe_width, cfg.split.stitch is not None)
    scened = probed["videos"] | "DetectScenes" >> DetectScenes(
        cfg.split, cfg.media.decode_threads, run_id, cfg.media.limits, sample,
        cfg.media.decode_device, cfg.media.video_concurrency, cfg.transnet)
    events = scened["scened"]
    stage_errors = [listed[ERRORS], fetched[ERRORS], probed[ERRORS], scened[ERRORS]]
    if cfg.split.stitch is not None:
        stitched = events | "Stitch" >> Stitch(cfg.clip_model, cfg.split, run_id, cfg.media.limits)
        events = stitched["scened"]
        stage_errors.append(stitched[ERRORS])
    splits = events | "ClipRules" >> ApplyClipRules(cfg.split)
    cut = splits | "CutClips" >> CutClips(cfg.media, cfg.split.params_hash, run_id)
    clips = cut["clips"]
    stage_errors.append(cut[ERRORS])
    if cfg.ocr.enabled:
        read = clips | "OCR" >> OCR(cfg.ocr, run_id)
        clips = read["clips"]
        stage_errors.append(read[ERRORS])
    asr_results = p | "NoAsr" >> beam.Create([])
    if cfg.asr.enabled:
        heard = probed["videos"] | "ASR" >> Transcribe(cfg.asr, run_id, cfg.media.limits)
        asr_results = heard["results"]
        stage_errors.append(heard[ERRORS])
        clips = {"clips": clips, "asr": asr_results} | "Transcripts" >> AttachTranscripts()
    if cfg.clip_model.enabled:
        embedded = clips | "EmbedClips" >> EmbedClips(cfg.clip_model, run_id)
        clips = embedded["clips"]
        stage_errors.append(embedded[ERRORS])
    if cfg.nsfw.enabled:
        rated = clips | "ScoreNsfw" >> ScoreNsfw(cfg.nsfw, run_id)
        clips = rated["clips"]
        stage_errors.append(rated[ERRORS])
    # After every stage whose columns it reads (OCR lines, CLIP keyframe embeddings, the
    # picture signals, the NSFW score): subtitles, the aesthetic score and the flags.
    judged = clips | "JudgeClips" >> JudgeClips(cfg.quality, cfg.aesthetic, run_id)
    clips = judged["clips"]
    stage_errors.append(judged[ERRORS])
    taught = {"clips": clips, "fetched": unique["unique"]} | "Captioning" >> Captioning(
        cfg.teachers, cfg.clip_model, run_id)
    stage_errors.append(taught[ERRORS])
    scored = {"clips": clips, "candidates": taught["candidates"],
              "structs": taught["structs"]} | "ScoreCaptions" >> \
        ScoreCaptions(cfg.clip_model, cfg.teachers.priority, run_id)
    clips = scored["clips"]
    stage_errors.append(scored[ERRORS])
    # After captioning: it reads every candidate caption as well as OCR and speech.
    private = {"clips": clips, "captions": scored["captions"]} | "PersonalData" >> \
        FindPersonalData(cfg.personal_data, run_id)
    clips = private["clips"]
    stage_errors.append(private[ERRORS])

    errors = tuple(stage_errors) | "AllErrors" >> beam.Flatten()
    videos = {
        "sources": todo,
        "fetched": unique["unique"],
        "probed": probed["videos"],
        "skipped": (unique[SKIPPED], probed[SKIPPED]) | "AllSkips" >> beam.Flatten(),
        "splits": splits,
        "clips": clips,
        "asr": asr_results,
        "errors": errors,
    } | "VideoRows" >> BuildVideoRows(run_id)
    if not cfg.fetch.keep_downloads or sample is not None:
        videos = videos | "RemoveDownloads" >> RemoveDownloads(
            remove_downloads=not cfg.fetch.keep_downloads,
            sample_root=sample.root if sample is not None else None)

    output = cfg.output
    _ = [
        videos | "WriteVideos" >> WriteTable(output, "videos", run_id),
        clips | "WriteClips" >> WriteTable(output, "clips", run_id, cfg.clip_model.embed_dim
                                           if cfg.clip_model.enabled else None),
        errors | "WriteErrors" >> WriteTable(output, "errors", run_id),
        scored["captions"] | "WriteCaptions" >> WriteTable(output, "captions", run_id),
    ]
    return Outputs(sources=listed["sources"], videos=videos, clips=clips, errors=errors)
