"""`vidcurate search`: find clips by what they show, with the run's own CLIP model.

The query (a text, or an example image) is embedded by the CLIP model that embedded the
clips: the one recorded in the `runs` row of the runs whose clips are searched, resolved
the way `run` resolves it (transforms/models/clip.py resolve_clip: a pretrained tag from
the local cache or a download, or a local checkpoint file, whose sha256 must still be
the one the run recorded). Clips are ranked in DuckDB by cosine similarity between that
vector and clips.clip_embedding. Another model's vectors would rank at random, so a
model that cannot be had, or weights that differ from the run's, stop the search with a
message instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from vidcurate.pipeline.commands import EXPORT_VIEWS
from vidcurate.pipeline.options import ConfigError
from vidcurate.pipeline.output_files import OutputFiles
from vidcurate.pipeline.query import connect
from vidcurate.transforms.models.clip import (
    OFFLINE_HINT,
    ClipModelConfig,
    embed_images,
    embed_texts,
    resolve_clip,
    shared_clip,
)

SEARCH_SQL = """
    SELECT clip_id, video_id, start_s, end_s, best_caption AS caption,
           list_cosine_similarity(clip_embedding::FLOAT[], $query::FLOAT[]) AS score,
           keyframe_uris[1] AS keyframe, media_uri, run_id
    FROM {view}
    WHERE clip_embedding IS NOT NULL AND clip_model = $model
    ORDER BY score DESC, clip_id
    LIMIT $k"""


def recorded_model(output: str, view: str = "clips") -> ClipModelConfig:
    """The CLIP configuration of the run that embedded the view's clips, as that run
    recorded it (options_json: the launcher's resolved ClipModelConfig)."""
    if view not in EXPORT_VIEWS:
        raise ConfigError(f"--view must be one of {', '.join(EXPORT_VIEWS)}: {view}")
    con = connect(output)
    models = con.sql(f"SELECT clip_model, count(*) FROM {view} WHERE clip_embedding IS NOT "
                     "NULL GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
    if not models:
        total = con.sql(f"SELECT count(*) FROM {view}").fetchall()[0][0]
        raise ConfigError(f"no clip embeddings to search in view {view} of {output!r} "
                          f"({total} clips): its runs had no CLIP (--no-clip, or no "
                          "weights); rerun with a CLIP model to search")
    if len(models) > 1:
        listed = ", ".join(f"{m} ({n} clips)" for m, n in models)
        raise ConfigError(f"the clips of view {view} were embedded by {len(models)} CLIP "
                          f"models ({listed}): their vectors are not comparable; publish or "
                          "query one model's clips, or rerun the others")
    model_id = models[0][0]
    found = con.sql("""SELECT r.options_json FROM runs r
                       SEMI JOIN (SELECT DISTINCT run_id FROM clips
                                  WHERE clip_model = $model) c USING (run_id)
                       ORDER BY r.finished_at DESC, r.run_id DESC LIMIT 1""",
                    params={"model": model_id}).fetchall()
    recorded = json.loads(found[0][0] or "{}").get("config", {}).get("clip_model") \
        if found else None
    if not recorded:
        raise ConfigError(f"the runs of {output!r} do not record how to load CLIP model "
                          f"{model_id}")
    names = {f.name for f in dataclasses.fields(ClipModelConfig)}
    cfg = ClipModelConfig(**{k: v for k, v in recorded.items() if k in names})
    if cfg.model_id != model_id:
        raise ConfigError(f"the runs row records CLIP {cfg.model_id} but the clips carry "
                          f"{model_id}")
    return cfg


def query_model(output: str, view: str = "clips", pretrained: str | None = None,
                model_config: str | None = None) -> ClipModelConfig:
    """The recorded model, resolved here: local weights by their recorded path (or the
    one given, for an output moved to another machine) and checked against the recorded
    checksum; named weights from the cache or a download, as `run` does."""
    recorded = recorded_model(output, view)
    cfg = dataclasses.replace(
        recorded, enabled=True,
        pretrained=pretrained or recorded.pretrained,
        model_config=model_config or recorded.model_config,
        checkpoint_path=None, checkpoint_sha256=None, embed_dim=None)
    if cfg.model_config and not os.path.isfile(cfg.model_config):
        raise ConfigError(f"the run's --clip-model-config {cfg.model_config!r} is not a file "
                          "here: pass its copy with --clip-model-config")
    if cfg.local and not os.path.isfile(cfg.pretrained):
        raise ConfigError(f"the run's CLIP weights {cfg.pretrained!r} are not here: pass "
                          "their copy with --clip-pretrained. " + OFFLINE_HINT)
    resolved = resolve_clip(cfg)  # ConfigError, with the offline hint, when unavailable
    if resolved.model_id != recorded.model_id:
        raise ConfigError(f"the weights found give CLIP {resolved.model_id}, but the clips "
                          f"were embedded by {recorded.model_id}: different weights rank at "
                          "random; pass the run's own with --clip-pretrained")
    return resolved


def _image(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as e:
        raise ConfigError(f"--image {path!r} is not an image this machine can read: {e}") \
            from e


def search(output: str, text: str | None = None, image: str | None = None, k: int = 20,
           view: str = "clips", pretrained: str | None = None,
           model_config: str | None = None) -> list[dict[str, Any]]:
    """The k clips most similar to the text or the image, best first: clip id, video id,
    span, caption, cosine score, first keyframe (a path on this machine) and clip file.
    A path is given only when it is a regular file inside the output; a refused one is
    None, and the hit's `refused` lists why."""
    if (text is None) == (image is None):
        raise ConfigError("give a text or --image FILE (one of them)")
    if text is not None and not text.strip():
        raise ConfigError("the search text is empty")
    if k < 1:
        raise ConfigError(f"-k must be >= 1, got {k}")
    if image is not None:
        picture = _image(image)  # a bad file is refused before the model loads
    cfg = query_model(output, view, pretrained, model_config)
    clip = shared_clip(cfg)
    vector = embed_texts(clip, [text])[0] if text is not None else \
        embed_images(clip, [picture])[0]
    con = connect(output)
    rel = con.sql(SEARCH_SQL.format(view=view), params={
        "query": vector.tolist(), "model": cfg.model_id, "k": k})
    hits = [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]
    files = OutputFiles.of(output, con)
    for hit in hits:
        # Printed for the user to open: only the output's own files.
        before = len(files.refused)
        what = f"clip {hit['clip_id']}"
        hit["keyframe"] = files.find(hit["keyframe"], hit["run_id"], what)
        hit["media_uri"] = files.find(hit["media_uri"], hit["run_id"], what)
        hit["refused"] = files.refused[before:]
    return hits
