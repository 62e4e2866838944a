"""zero_shot: CLIP picks the concepts of a vocabulary that best match the clip.

Every concept is written into each prompt template ("a video of {}.") and the
templates' text embeddings are averaged (CLIP's prompt ensembling); the clip embedding
from the CLIP stage is compared with all of them once, and the best
--zero-shot-top-k concepts each become a candidate ("a video of a kitchen.").
The vocabulary (vocabulary.txt, sources in its header) is replaceable by --vocabulary.
The model is the run's CLIP model, loaded once per worker process; the concept matrix
is computed once per model, vocabulary and templates, and cached on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import Any, ClassVar

import numpy as np

from vidcurate.transforms.models.loading import ProcessCache
from vidcurate.transforms.teachers.base import ClipContext, Proposal, Teacher, register

SHIPPED_VOCABULARY = os.path.join(os.path.dirname(__file__), "vocabulary.txt")


def cache_dir() -> str:
    """Where concept matrices are kept between runs ($VIDCURATE_CACHE, else
    ~/.cache/vidcurate/zero_shot); keyed by model, vocabulary and templates."""
    base = os.environ.get("VIDCURATE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "vidcurate")
    return os.path.join(base, "zero_shot")


def read_vocabulary(path: str) -> list[str]:
    """One concept per line; blank lines and lines starting with # are skipped."""
    with open(path, encoding="utf-8") as f:
        concepts = [line.strip() for line in f]
    return list(dict.fromkeys(c for c in concepts if c and not c.startswith("#")))


def concept_matrix(embed_texts: Any, concepts: list[str], templates: tuple[str, ...],
                   batch: int = 256) -> np.ndarray:
    """One L2-normalised row per concept: the mean of its templates' embeddings."""
    rows = []
    for template in templates:
        prompts = [template.format(c) for c in concepts]
        rows.append(np.concatenate([embed_texts(prompts[i:i + batch])
                                    for i in range(0, len(prompts), batch)]))
    mean = np.mean(np.stack(rows), axis=0)
    return (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)


def top_concepts(clip_embedding: np.ndarray, matrix: np.ndarray, concepts: list[str],
                 k: int) -> list[tuple[str, float]]:
    query = clip_embedding / max(float(np.linalg.norm(clip_embedding)), 1e-12)
    sims = matrix @ query.astype(np.float32)
    best = np.argsort(-sims, kind="stable")[:k]
    return [(concepts[i], float(sims[i])) for i in best]


@register
class ZeroShotTeacher(Teacher):
    name = "zero_shot"
    # The concept matrix costs thousands of text-tower passes: build it once per process.
    _matrices: ClassVar[ProcessCache[tuple[list[str], np.ndarray]]] = ProcessCache()

    @property
    def model_id(self) -> str:
        return self.clip_model.model_id

    @property
    def vocabulary_path(self) -> str:
        return self.cfg.vocabulary or SHIPPED_VOCABULARY

    def setup(self) -> None:
        key = (self.clip_model, self.vocabulary_path, self.cfg.zero_shot_templates)

        def build() -> tuple[list[str], np.ndarray]:
            concepts = read_vocabulary(self.vocabulary_path)
            return concepts, self._matrix(concepts)

        self.concepts, self.matrix = self._matrices.get(key, build)

    def _matrix(self, concepts: list[str]) -> np.ndarray:
        """The concept matrix from the on-disk cache, else computed (a few thousand text
        passes: ~100 s for ViT-B-32 on 2 cores) and cached for the next process."""
        from vidcurate.transforms.models.clip import embed_texts, shared_clip

        digest = hashlib.sha256(json.dumps(
            [self.clip_model.model_id, concepts, list(self.cfg.zero_shot_templates)]).encode())
        path = os.path.join(cache_dir(), f"{digest.hexdigest()[:32]}.npy")
        if os.path.isfile(path):
            with contextlib.suppress(OSError, ValueError):
                matrix = np.load(path)
                if matrix.shape[0] == len(concepts):
                    return matrix
        model = shared_clip(self.clip_model)
        matrix = concept_matrix(lambda texts: embed_texts(model, texts), concepts,
                                self.cfg.zero_shot_templates)
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp.npy"
            np.save(tmp, matrix)
            os.replace(tmp, path)
        return matrix

    def propose(self, ctx: ClipContext) -> list[Proposal]:
        if ctx.clip.clip_embedding is None:
            return []  # no keyframes embedded: the CLIP stage has its error row
        template = self.cfg.zero_shot_templates[0]
        prompt = "|".join(self.cfg.zero_shot_templates)
        return [Proposal(template.format(concept), prompt=prompt)
                for concept, _ in top_concepts(ctx.clip.clip_embedding, self.matrix,
                                                 self.concepts, self.cfg.zero_shot_top_k)]
