"""Captioning: every selected teacher proposes candidate captions for every clip.

Clips are joined with their video's source (title, description, video-site metadata),
then each teacher runs as its own step, so a slow one (a VLM server) never holds up a
fast one, and its models load once per worker. Teachers that fuse (vlm_fuse) run
after the others and see their candidates. A teacher's failure on a clip is an error
row naming the teacher; the clip keeps the other teachers' candidates.
The structured teacher also gives each clip its CaptionStruct (output 'structs'), and
the stage counts the VLM claims that a measurement overruled (`caption_conflicts`).
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from vidcurate.schemas.records import CaptionCandidate, CaptionStruct, ClipRecord, Fetched
from vidcurate.transforms.errors import ERRORS, StageMetrics, guarded
from vidcurate.transforms.models.clip import ClipModelConfig
from vidcurate.transforms.teachers import TEACHERS, ClipContext, Teacher, TeacherError
from vidcurate.transforms.teachers.base import TeachersConfig

STAGE = "captioning"
STRUCTS = "structs"  # the output of CaptionStruct records


def contexts_for(clips: list[ClipRecord], fetched: list[Fetched]) -> list[ClipContext]:
    """Every clip of one video with that video's source."""
    if not fetched:
        return []  # cannot happen: clips come from fetched videos
    source = fetched[0].source
    return [ClipContext(clip=c, source=source) for c in clips]


class _TeacherFn(beam.DoFn):
    def __init__(self, name: str, cfg: TeachersConfig, clip_model: ClipModelConfig,
                 run_id: str) -> None:
        self.name, self.cfg, self.clip_model, self.run_id = name, cfg, clip_model, run_id
        self.metrics = StageMetrics(STAGE)
        self.proposed = Metrics.counter(STAGE, f"{name}_candidates")
        self.empty = Metrics.counter(STAGE, f"{name}_no_candidate")
        self.conflicts = Metrics.counter(STAGE, "caption_conflicts")

    def setup(self) -> None:
        self.teacher: Teacher = TEACHERS[self.name](cfg=self.cfg, clip_model=self.clip_model)
        self.teacher.setup()
        self.teacher._ready = True

    def process(self, ctx: ClipContext
                ) -> Iterator[CaptionCandidate | beam.pvalue.TaggedOutput]:
        clip = ctx.clip
        yield from guarded(self.metrics, self._propose, ctx, source_uri=clip.source_uri,
                           run_id=self.run_id, video_id=clip.video_id, clip_id=clip.clip_id)

    def _propose(self, ctx: ClipContext
                 ) -> list[CaptionCandidate | beam.pvalue.TaggedOutput]:
        try:
            outputs = self.teacher.outputs(ctx)
        except TeacherError as e:  # the row names the teacher: all share one stage
            raise TeacherError(f"{self.name}:{e.error_type}", f"{self.name}: {e}") from e
        found = [o for o in outputs if isinstance(o, CaptionCandidate)]
        structs = [o for o in outputs if isinstance(o, CaptionStruct)]
        if found:
            self.proposed.inc(len(found))
        else:
            self.empty.inc()
        for struct in structs:
            self.conflicts.inc(len(struct.conflicts))
        return [*found, *(beam.pvalue.TaggedOutput(STRUCTS, s) for s in structs)]


def _with_candidates(joined: tuple[str, dict[str, list]]) -> Iterator[ClipContext]:
    _, parts = joined
    for ctx in parts["contexts"]:
        ordered = sorted(parts["candidates"], key=lambda c: (c.teacher, c.text))
        yield ClipContext(clip=ctx.clip, source=ctx.source, candidates=tuple(ordered))


class Captioning(beam.PTransform):
    """{'clips': ClipRecord, 'fetched': Fetched} -> CaptionCandidate ('candidates'),
    CaptionStruct ('structs') and ErrorRecord ('errors')."""

    def __init__(self, cfg: TeachersConfig, clip_model: ClipModelConfig,
                 run_id: str) -> None:
        super().__init__()
        unknown = [n for n in cfg.names if n not in TEACHERS]
        if unknown:
            raise ValueError(f"unknown teachers {unknown}")
        self.cfg, self.clip_model, self.run_id = cfg, clip_model, run_id

    def _run(self, contexts: beam.PCollection, names: list[str]
             ) -> tuple[list[beam.PCollection], list[beam.PCollection],
                        list[beam.PCollection]]:
        candidates, errors, structs = [], [], []
        for name in names:
            out = (
                contexts
                | f"Teacher:{name}" >> beam.ParDo(
                    _TeacherFn(name, self.cfg, self.clip_model, self.run_id))
                .with_outputs(ERRORS, STRUCTS, main="candidates"))
            candidates.append(out["candidates"])
            errors.append(out[ERRORS])
            structs.append(out[STRUCTS])
        return candidates, errors, structs

    def expand(self, inputs: dict[str, beam.PCollection]) -> dict[str, beam.PCollection]:
        p = inputs["clips"].pipeline
        contexts = ({
            "clips": inputs["clips"] | "ClipsByVideo" >> beam.Map(lambda c: (c.video_id, c)),
            "fetched": inputs["fetched"] | "SourcesByVideo" >> beam.Map(
                lambda f: (f.source.video_id, f)),
        } | "JoinSources" >> beam.CoGroupByKey()
            | "Contexts" >> beam.FlatMap(lambda kv: contexts_for(kv[1]["clips"],
                                                                 kv[1]["fetched"])))
        direct = [n for n in self.cfg.names if not TEACHERS[n].fuses]
        fusing = [n for n in self.cfg.names if TEACHERS[n].fuses]
        candidates, errors, structs = self._run(contexts, direct)
        first = (tuple(candidates) or (p | "NoTeachers" >> beam.Create([]),)) \
            | "Candidates" >> beam.Flatten()
        if fusing:
            with_candidates = ({
                "contexts": contexts | "ContextsByClip" >> beam.Map(
                    lambda c: (c.clip.clip_id, c)),
                "candidates": first | "CandidatesByClip" >> beam.Map(
                    lambda c: (c.clip_id, c)),
            } | "JoinCandidates" >> beam.CoGroupByKey()
                | "WithCandidates" >> beam.FlatMap(_with_candidates))
            fused, fuse_errors, fuse_structs = self._run(with_candidates, fusing)
            first = (first, *fused) | "AllCandidates" >> beam.Flatten()
            errors += fuse_errors
            structs += fuse_structs
        all_errors = (tuple(errors) or (p | "NoErrors" >> beam.Create([]),)) \
            | "Errors" >> beam.Flatten()
        all_structs = (tuple(structs) or (p | "NoStructs" >> beam.Create([]),)) \
            | "Structs" >> beam.Flatten()
        return {"candidates": first, STRUCTS: all_structs, ERRORS: all_errors}
