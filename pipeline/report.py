"""`vidcurate report`: a static HTML report of an output that opens offline.

One folder: index.html (plotly.js inlined once, the plots, a dataset card and a clip
gallery whose data is embedded as JSON; each clip card links to its five nearest
neighbours in the gallery by CLIP embedding, computed here) and thumbs/ (small copies
of the keyframes).
No server and no network: open index.html from disk. Clip files are linked relative
to the report when the report sits on the same disk as the output.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import os
import shutil
from typing import Any

import numpy as np

from vidcurate.pipeline.output_files import MAX_IMAGE_BYTES, OutputFiles
from vidcurate.pipeline.query import connect
from vidcurate.pipeline.redaction import TextRedactor, run_regions

THUMB_WIDTH = 320

CARD_QUERIES = {
    "videos": "SELECT status, count(*) AS n, round(sum(duration_s) / 3600, 3) AS hours "
              "FROM videos GROUP BY 1 ORDER BY 1",
    "clips": "SELECT count(*) AS clips, round(coalesce(sum(duration_s), 0) / 3600, 3) AS "
             "hours, count(*) FILTER (WHERE clip_embedding IS NOT NULL) AS embedded, "
             "count(*) FILTER (WHERE best_caption IS NOT NULL) AS captioned FROM clips",
    "languages": "SELECT coalesce(language, 'none') AS language, count(*) AS videos "
                 "FROM videos GROUP BY 1 ORDER BY 2 DESC, 1",
    # One entry per run: a run made in batches has a runs row per batch (batch_of).
    "runs": "SELECT coalesce(batch_of, run_id) AS run, max(finished_at) AS finished_at, "
            "arg_max(runner, finished_at), arg_max(clip_model, finished_at), "
            "arg_max(notes, finished_at), arg_max(versions_json, finished_at), "
            "arg_max(options_json, finished_at) FROM runs GROUP BY run "
            "ORDER BY finished_at DESC LIMIT 5",
}
GALLERY_QUERY = """
    SELECT c.clip_id, c.video_id, c.run_id, v.title, v.source_uri, c.start_s, c.end_s,
           c.media_uri,
           c.keyframe_uris, c.best_caption, c.best_teacher, c.clip_score, c.clip_model,
           c.clip_embedding::FLOAT[] AS clip_embedding,
           c.selection_method, c.transcript, c.ocr_text, c.nsfw_score, c.personal_data,
           c.camera_motion,
           (SELECT list({'teacher': k.teacher, 'text': k.text, 'score': k.clip_score,
                         'selected': k.selected} ORDER BY k.rank)
            FROM captions k WHERE k.clip_id = c.clip_id) AS candidates
    FROM clips c JOIN videos v USING (video_id)
    ORDER BY c.clip_score DESC NULLS LAST, c.video_id, c.clip_index
    LIMIT {limit}"""


def _figures(con: Any) -> list[tuple[str, str, str | None]]:
    """(title, plot html or '', note) per plot."""
    import plotly.graph_objects as go

    def html_of(fig: Any, height: int = 320) -> str:
        fig.update_layout(height=height, margin={"l": 40, "r": 10, "t": 30, "b": 40},
                          template="plotly_white")
        return fig.to_html(full_html=False, include_plotlyjs=False,
                           config={"displaylogo": False, "responsive": True})

    def histogram(values: list[float], bins: int, x_title: str, y_title: str) -> str:
        fig = go.Figure(go.Histogram(x=values, nbinsx=bins))
        fig.update_layout(xaxis_title=x_title, yaxis_title=y_title)
        return html_of(fig)

    out: list[tuple[str, str, str | None]] = []
    lengths = [r[0] for r in con.sql("SELECT duration_s FROM clips").fetchall()]
    out.append(("Clip length", histogram(lengths, 30, "seconds", "clips") if lengths else "",
                None if lengths else "no clips"))
    scores = con.sql("SELECT clip_score, selected FROM captions WHERE clip_score IS NOT NULL"
                     ).fetchall()
    if scores:
        fig = go.Figure()
        fig.add_histogram(x=[s for s, _ in scores], name="all candidates", opacity=0.6)
        fig.add_histogram(x=[s for s, sel in scores if sel], name="selected", opacity=0.6)
        fig.update_layout(barmode="overlay", xaxis_title="CLIP score (cosine)")
        out.append(("CLIP score", html_of(fig), None))
    else:
        out.append(("CLIP score", "", "no CLIP scores: the runs had no CLIP (see the card)"))
    wins = con.sql("SELECT teacher, count(*) AS candidates, count(*) FILTER (WHERE selected) "
                   "AS selected FROM captions GROUP BY 1 ORDER BY 3 DESC, 1").fetchall()
    if wins:
        fig = go.Figure()
        fig.add_bar(x=[w[0] for w in wins], y=[w[1] for w in wins], name="candidates")
        fig.add_bar(x=[w[0] for w in wins], y=[w[2] for w in wins], name="selected")
        out.append(("Teachers: candidates and wins", html_of(fig), None))
    else:
        out.append(("Teachers: candidates and wins", "", "no captions"))
    coverage = [r[0] for r in con.sql("SELECT ocr_coverage_max FROM clips "
                                      "WHERE ocr_coverage_max IS NOT NULL").fetchall()]
    out.append(("On-screen text coverage (max per clip)",
                histogram(coverage, 20, "fraction of the frame", "clips") if coverage else "",
                None if coverage else "no OCR"))
    cameras = con.sql("SELECT camera_motion, count(*) FROM clips WHERE camera_motion IS NOT "
                      "NULL GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
    fig = go.Figure(go.Bar(x=[r[0] for r in cameras], y=[r[1] for r in cameras]))
    fig.update_layout(xaxis_title="camera motion", yaxis_title="clips")
    out.append(("Camera motion", html_of(fig) if cameras else "",
                None if cameras else "no camera motion measured"))
    langs = con.sql("SELECT coalesce(language, 'none'), count(*) FROM videos GROUP BY 1 "
                    "ORDER BY 2 DESC").fetchall()
    fig = go.Figure(go.Bar(x=[r[0] for r in langs], y=[r[1] for r in langs]))
    fig.update_layout(xaxis_title="language", yaxis_title="videos")
    out.append(("Spoken language (ASR)", html_of(fig) if langs else "",
                None if langs else "no videos"))
    errors = con.sql("SELECT stage, error_type, count(*) FROM errors GROUP BY 1, 2 "
                     "ORDER BY 3 DESC").fetchall()
    fig = go.Figure([go.Bar(name=t, x=[e[0] for e in errors if e[1] == t],
                            y=[e[2] for e in errors if e[1] == t])
                     for t in sorted({e[1] for e in errors})])
    fig.update_layout(barmode="stack", xaxis_title="stage", yaxis_title="errors")
    out.append(("Errors by stage and type", html_of(fig) if errors else "",
                None if errors else "no errors"))
    curation = _curation_funnel(con)
    if curation is not None:  # only once a curate pass exists: plots without it say nothing
        title, steps, clips = curation
        # One line per bar: what is left, and what this rule took and could not judge.
        text = [f"{clips} clips"] + [
            f"{s['kept_after']} kept, {s['dropped']} dropped"
            + (f", {s['unmeasured']} unmeasured ({s['if_null']})" if s["unmeasured"] else "")
            for s in steps]
        fig = go.Figure(go.Funnel(y=["all clips"] + [s["rule"] for s in steps],
                                  x=[clips] + [s["kept_after"] for s in steps],
                                  text=text, textinfo="text", textposition="inside",
                                  insidetextanchor="middle"))
        fig.update_layout(xaxis_title="clips kept after each rule", uniformtext_minsize=10)
        out.append((title, html_of(fig, max(320, 60 + 28 * len(text))), None))
    from vidcurate.pipeline.calibrate import calibration_figures

    out += calibration_figures(con, html_of)  # once `curate --calibrate` ran
    return out


def _curation_funnel(con: Any) -> tuple[str, list[dict[str, Any]], int] | None:
    """(plot title, funnel steps, clip count) of the newest curate pass, or None."""
    row = con.sql("SELECT summary_json FROM passes WHERE kind = 'curate' "
                  "ORDER BY created_at DESC, pass_id DESC LIMIT 1").fetchall()
    if not row:
        return None
    summary = json.loads(row[0][0])
    return (f"Curation funnel (profile {summary['profile']}, kept {summary['kept']} of "
            f"{summary['clips']})", summary["funnel"], summary["clips"])


def _thumb(data: bytes, dest: str) -> bool:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMB_WIDTH, THUMB_WIDTH))
            im.save(dest, quality=80)
        return True
    except Exception:  # an unreadable keyframe leaves a gap in the gallery, not a crash
        return False


def _relative(path: str | None, start: str) -> str | None:
    """A link from the report folder to a file of the output. Both sides are real paths
    (the file's was resolved), so a report inside the output links within it, and a
    copy of the output (cp -r) plays its own files, not the original's."""
    if not path or "://" in path:
        return None  # a remote output's file: no link the page could follow offline
    try:
        return os.path.relpath(path, os.path.realpath(start))
    except ValueError:  # another drive (Windows)
        return None


def _table(rows: list[tuple], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>"
                                    for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _card(con: Any) -> str:
    parts = []
    for title in ("videos", "clips", "languages"):
        rel = con.sql(CARD_QUERIES[title])
        parts.append(f"<h3>{title}</h3>" + _table(rel.fetchall(), rel.columns))
    runs = con.sql(CARD_QUERIES["runs"]).fetchall()
    items = []
    for run_id, finished, runner, clip_model, notes, versions, options in runs:
        cfg = json.loads(options).get("config", {})
        asr = cfg.get("asr", {})
        teachers = cfg.get("teachers", {}).get("names")
        items.append(
            f"<li><b>{html.escape(run_id)}</b> ({html.escape(str(finished))}, "
            f"{html.escape(runner or '')}): CLIP {html.escape(clip_model or 'off')}; ASR "
            f"{html.escape(asr.get('model', '') if asr.get('enabled') else 'off')}; "
            f"teachers {html.escape(', '.join(teachers or []))}"
            f"<br><small>{html.escape('; '.join(notes or []))}</small>"
            f"<details><summary>versions and options</summary><pre>"
            f"{html.escape(json.dumps(json.loads(versions), indent=1))}\n"
            f"{html.escape(json.dumps(cfg, indent=1, sort_keys=True))}</pre></details></li>")
    parts.append("<h3>runs (newest first)</h3><ul>" + "".join(items) + "</ul>")
    return "\n".join(parts)


NEIGHBOURS = 5


def nearest_neighbours(ids: list[str], embeddings: list[list[float] | None],
                       models: list[str | None], k: int = NEIGHBOURS
                       ) -> dict[str, list[tuple[str, float]]]:
    """Each clip's k most similar other clips (cosine of the clip embeddings, ties by
    clip id), among the clips embedded by the same CLIP model: another model's vectors
    are not comparable. Clips without an embedding have none."""
    out: dict[str, list[tuple[str, float]]] = {}
    groups: dict[str, list[int]] = {}
    for i, (vector, model) in enumerate(zip(embeddings, models, strict=True)):
        if vector is not None and model is not None:
            groups.setdefault(model, []).append(i)
    for members in groups.values():
        vectors = np.asarray([embeddings[i] for i in members], np.float64)
        if len({len(embeddings[i] or []) for i in members}) != 1:
            continue  # one model, two sizes: rows damaged by hand; no neighbours
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        similarity = vectors @ vectors.T
        for row, i in enumerate(members):
            ranked = sorted((j for j in range(len(members)) if j != row),
                            key=lambda j, row=row: (-similarity[row, j], ids[members[j]]))
            out[ids[i]] = [(ids[members[j]], float(similarity[row, j])) for j in ranked[:k]]
    return out


def _gallery_data(con: Any, files: OutputFiles, out_dir: str, limit: int
                  ) -> list[dict[str, Any]]:
    thumbs = os.path.join(out_dir, "thumbs")
    os.makedirs(thumbs, exist_ok=True)
    rel = con.sql(GALLERY_QUERY.replace("{limit}", str(int(limit))))
    columns = rel.columns
    rows = [dict(zip(columns, values, strict=True)) for values in rel.fetchall()]
    # Among the clips in the gallery, so that every link leads to a card.
    neighbours = nearest_neighbours([r["clip_id"] for r in rows],
                                    [r["clip_embedding"] for r in rows],
                                    [r["clip_model"] for r in rows])
    # Clips with personal data show their texts masked: the report is for reading clips,
    # not for passing on phone numbers (the kinds are shown instead).
    redactor = TextRedactor(run_regions([r[0] for r in con.sql(
        "SELECT options_json FROM runs").fetchall()]))
    data = []
    for row in rows:
        if row["personal_data"]:
            for key in ("best_caption", "transcript", "ocr_text", "title"):
                row[key] = redactor.text(row[key])
            row["candidates"] = [{**c, "text": redactor.text(c["text"])}
                                 for c in row["candidates"] or []]
        frames = []
        what = f"clip {row['clip_id']}"
        for i, uri in enumerate(row["keyframe_uris"] or []):
            name = f"{len(data)}_{i}.jpg"  # not the clip id: a name that is ours
            found = files.fetch(uri, row["run_id"], what, MAX_IMAGE_BYTES)
            if found is not None and _thumb(found, os.path.join(thumbs, name)):
                frames.append(f"thumbs/{name}")
        data.append({
            "id": row["clip_id"], "title": row["title"] or row["source_uri"],
            "start": round(row["start_s"], 2), "end": round(row["end_s"], 2),
            "frames": frames,
            "media": _relative(files.find(row["media_uri"], row["run_id"], what), out_dir),
            "caption": row["best_caption"], "teacher": row["best_teacher"],
            "score": None if row["clip_score"] is None else round(row["clip_score"], 4),
            "method": row["selection_method"], "transcript": row["transcript"] or "",
            "ocr": row["ocr_text"] or "",
            "nsfw": None if row["nsfw_score"] is None else round(row["nsfw_score"], 3),
            "personal": row["personal_data"],
            "camera": row["camera_motion"],
            "candidates": [{"teacher": c["teacher"], "text": c["text"],
                            "score": None if c["score"] is None else round(c["score"], 4),
                            "selected": c["selected"]} for c in row["candidates"] or []],
            "neighbours": [{"id": n, "score": round(s, 4)}
                           for n, s in neighbours.get(row["clip_id"], [])],
        })
    return data


# Characters that may not appear raw in JSON inside a <script> element: "</script>" ends
# it and "<!--<script>" puts the HTML parser in a state where it does not end where it
# should; U+2028/9 end lines in older JavaScript. Inside JSON they only occur in strings,
# where the \u escapes decode to the same text.
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                   "\u2029": "\\u2029"}


def _script_json(value: Any) -> str:
    """JSON to embed in a <script> element, whatever the text in it."""
    text = json.dumps(value, ensure_ascii=False)
    for char, escaped in _SCRIPT_ESCAPES.items():
        text = text.replace(char, escaped)
    return text


def _script() -> str:
    with open(os.path.join(os.path.dirname(__file__), "report.js"), encoding="utf-8") as f:
        return f.read()


def write_report(output: str, out_dir: str | None = None, max_clips: int = 500) -> str:
    """Write the report folder; returns the path of index.html."""
    return build_report(output, out_dir, max_clips)["index"]


def build_report(output: str, out_dir: str | None = None, max_clips: int = 500
                 ) -> dict[str, Any]:
    """Write the report folder; returns a summary: index (the path of index.html),
    clips in the gallery, and the paths in the tables that were refused (a keyframe or
    clip file outside the output, not a regular file, too large): the gallery shows
    those clips without them, and the page says how many."""
    import plotly.offline

    con = connect(output)
    out_dir = os.path.abspath(out_dir or os.path.join(output, "report"))
    if os.path.isdir(os.path.join(out_dir, "thumbs")):
        shutil.rmtree(os.path.join(out_dir, "thumbs"))
    os.makedirs(out_dir, exist_ok=True)
    plots = "\n".join(
        f'<section class="plot"><h3>{html.escape(t)}</h3>'
        + (body if body else f'<p class="note">{html.escape(note or "")}</p>') + "</section>"
        for t, body, note in _figures(con))
    files = OutputFiles.of(output, con)
    data = _gallery_data(con, files, out_dir, max_clips)
    refused = (f'<p class="note">{len(files.refused)} keyframe or clip paths in the tables '
               "were refused and are left out: the report shows regular files inside the "
               "output only (`vidcurate report` lists them)</p>" if files.refused else "")
    teachers = sorted({d["teacher"] for d in data if d["teacher"]})
    options = "".join(f'<option value="{html.escape(t)}">{html.escape(t)}</option>'
                      for t in teachers)
    cameras = sorted({d["camera"] for d in data if d["camera"]})
    camera_options = "".join(f'<option value="{html.escape(c)}">{html.escape(c)}</option>'
                             for c in cameras)
    page = PAGE.format(
        title=html.escape(f"vidcurate report: {output}"),
        generated=html.escape(dt.datetime.now(dt.UTC).isoformat(timespec="seconds")),
        plotly=plotly.offline.get_plotlyjs(),
        card=_card(con), plots=plots, options=options, camera_options=camera_options,
        total=len(data), refused=refused,
        data=_script_json(data),
        script=_script())
    index = os.path.join(out_dir, "index.html")
    tmp = index + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, index)
    return {"index": index, "clips": len(data), "refused": files.refused}


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0 2rem 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: .3rem 0 1rem; }}
td, th {{ border: 1px solid #ccc; padding: .2rem .5rem; font-size: .9rem; }}
.plots {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr));
          gap: 1rem; }}
.note {{ color: #777; font-style: italic; }}
#filters {{ position: sticky; top: 0; background: #fff; padding: .5rem 0;
            border-bottom: 1px solid #ddd; z-index: 2; }}
#gallery {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr));
            gap: 1rem; margin-top: 1rem; }}
.clip-card {{ border: 1px solid #ddd; border-radius: 6px; padding: .6rem; }}
.clip-card img {{ width: 32%; margin-right: 1%; }}
.clip-card .caption {{ font-weight: 600; margin: .3rem 0; }}
.clip-card .meta, .clip-card .safety {{ color: #666; font-size: .8rem; }}
.clip-card details {{ font-size: .85rem; }}
.clip-card li.selected {{ font-weight: 600; }}
.clip-card .similar a {{ margin-right: .4rem; }}
.clip-card:target {{ outline: 3px solid #e90; }}
pre {{ white-space: pre-wrap; font-size: .75rem; }}
</style>
<script>{plotly}</script>
</head><body>
<h1>vidcurate report</h1>
<p class="meta">{title}; generated {generated}</p>
<h2>Dataset card</h2>
{card}
<h2>Plots</h2>
<div class="plots">{plots}</div>
<h2>Clips</h2>
<div id="filters">
 <label>min CLIP score <input id="min-score" type="number" step="0.01"
        placeholder="any"></label>
 <label>teacher <select id="teacher"><option value="">all</option>{options}</select></label>
 <label>max NSFW score <input id="max-nsfw" type="number" step="0.05" min="0" max="1"
        placeholder="any"></label>
 <label>personal data <select id="personal"><option value="">any</option>
  <option value="none">none found</option><option value="found">found</option></select></label>
 <label>camera <select id="camera"><option value="">any</option>{camera_options}
  </select></label>
 <span id="shown"></span> of {total} clips shown
</div>
{refused}
<div id="gallery"></div>
<script type="application/json" id="clip-data">{data}</script>
<script>{script}</script>
</body></html>
"""
