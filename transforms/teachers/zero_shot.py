"""zero_shot: CLIP picks the concepts of a vocabulary that best match the clip.

Every concept is written into each prompt template ("a video of {}.") and the
templates' text embeddings are averaged (CLIP's prompt ensembling); the clip embedding
from the CLIP stage is compared with all of them once, and the best
--zero-shot-top-k concepts each become a candidate ("a video of a kitchen.").
The vocabulary (vocabulary.txt, sources in its header) is replaceable by --vocabulary.
The model is the run's CLIP model, loaded once per worker process.
"""

from __future__ import annotations

import os
import threading
from typing import Any, ClassVar

import numpy as np

from transforms.teachers.base import ClipContext, Proposal, Teacher, register

SHIPPED_VOCABULARY = os.path.join(os.path.dirname(__file__), "vocabulary.txt")


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
    _matrices: ClassVar[dict[tuple, tuple[list[str], np.ndarray]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.clip.model_id

    @property
    def vocabulary_path(self) -> str:
        return self.cfg.vocabulary or SHIPPED_VOCABULARY

    def setup(self) -> None:
        from transforms.models.clip import embed_texts, load_clip

        key = (self.clip, self.vocabulary_path, self.cfg.zero_shot_templates)
        with self._lock:
            if key not in self._matrices:
                model = load_clip(self.clip)
                concepts = read_vocabulary(self.vocabulary_path)
                matrix = concept_matrix(lambda texts: embed_texts(model, texts), concepts,
                                        self.cfg.zero_shot_templates)
                self._matrices[key] = (concepts, matrix)
        self.concepts, self.matrix = self._matrices[key]

    def propose(self, ctx: ClipContext) -> list[Proposal]:
        if ctx.clip.clip_embedding is None:
            return []  # no keyframes embedded: the CLIP stage has its error row
        template = self.cfg.zero_shot_templates[0]
        prompt = "|".join(self.cfg.zero_shot_templates)
        return [Proposal(template.format(concept), prompt=prompt)
                for concept, _ in top_concepts(ctx.clip.clip_embedding, self.matrix,
                                                 self.concepts, self.cfg.zero_shot_top_k)]
