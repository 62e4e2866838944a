// vidcurate review: the clip grid, its filters and keyboard labels.
// Everything from the tables is put on the page as text (textContent), never as HTML.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const withToken = (path) => path + (path.includes("?") ? "&" : "?") +
  "token=" + encodeURIComponent(TOKEN);
const $ = (id) => document.getElementById(id);

let data = null;        // the /api/clips answer
let shown = [];         // clips passing the filters, in grid order
let cursor = 0;         // index into shown
let pending = 0;        // labels sent and not yet acknowledged
const retry = [];       // labels the server did not take: sent again every few seconds
const cards = new Map();

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(3);
  return String(v);
}

function status(text, bad) {
  $("status").textContent = text;
  $("status").style.color = bad ? "#c00" : "#080";
}

// ------------------------------------------------------------------ grid
const observer = new IntersectionObserver((entries) => {
  for (const e of entries) {
    const video = e.target;
    if (e.isIntersecting) {
      if (!video.src) video.src = video.dataset.src;
      video.play().catch(() => {});
    } else {
      video.pause();
    }
  }
}, { rootMargin: "100px" });

function makeCard(clip) {
  const card = el("div", null, "card");
  card.dataset.clipId = clip.clip_id;
  const poster = clip.keyframes > 0 ? withToken(`keyframe/${encodeURIComponent(clip.clip_id)}/0`) : "";
  if (clip.has_media) {
    const video = el("video");
    video.muted = true; video.loop = true; video.playsInline = true;
    video.preload = "none";
    if (poster) video.poster = poster;
    video.dataset.src = withToken(`media/${encodeURIComponent(clip.clip_id)}`);
    observer.observe(video);
    card.append(video);
  } else if (poster) {
    const img = el("img"); img.src = poster; img.alt = "keyframe"; card.append(img);
  }
  card.append(el("div", null, "verdict"));
  card.append(el("div", clip.best_caption || "(no caption)", "caption"));
  const flags = el("div", null, "flags");
  for (const f of clip.quality_flags || []) flags.append(el("span", f));
  card.append(flags);
  const signals = data.signals.filter((s) => clip[s] !== null && clip[s] !== undefined)
    .map((s) => `${s} ${fmt(clip[s])}`).join(" · ");
  card.append(el("div", signals, "signals"));
  const outcome = clip.kept === null || clip.kept === undefined ? "not curated"
    : clip.kept ? "kept by curate" : `dropped by ${clip.dropped_by}`;
  card.append(el("div", `${clip.title || clip.video_id} #${clip.clip_index} · ${outcome}`,
                 "signals"));
  card.addEventListener("click", () => { cursor = shown.indexOf(clip); paintCursor(); });
  card.addEventListener("dblclick", () => openDetail(clip));
  cards.set(clip.clip_id, card);
  paintLabel(clip);
  return card;
}

function paintLabel(clip) {
  const card = cards.get(clip.clip_id);
  if (!card) return;
  card.classList.toggle("label-keep", clip.label === "keep");
  card.classList.toggle("label-drop", clip.label === "drop");
  card.classList.toggle("pending", !!clip.pending);
  card.dataset.label = clip.label || "";
  card.querySelector(".verdict").textContent =
    clip.label ? clip.label + (clip.reason ? `: ${clip.reason}` : "") : "";
  $("labelled").textContent = data.clips.filter((c) => c.label).length;
}

function paintCursor() {
  for (const card of document.querySelectorAll(".card.cursor")) card.classList.remove("cursor");
  const clip = shown[cursor];
  if (!clip) return;
  const card = cards.get(clip.clip_id);
  card.classList.add("cursor");
  card.scrollIntoView({ block: "nearest" });
}

// ------------------------------------------------------------------ filters
function passes(clip) {
  const flag = $("f-flag").value, outcome = $("f-outcome").value, rule = $("f-rule").value;
  const label = $("f-label").value, signal = $("f-signal").value;
  const text = $("f-text").value.trim().toLowerCase();
  if (flag && !(clip.quality_flags || []).includes(flag)) return false;
  if (outcome === "kept" && clip.kept !== true) return false;
  if (outcome === "dropped" && clip.kept !== false) return false;
  if (outcome === "none" && clip.kept !== null && clip.kept !== undefined) return false;
  if (rule && clip.dropped_by !== rule) return false;
  if (label === "none" && clip.label) return false;
  if ((label === "keep" || label === "drop") && clip.label !== label) return false;
  if (signal) {
    const v = clip[signal];
    const lo = $("f-min").value, hi = $("f-max").value;
    if ((lo !== "" || hi !== "") && (v === null || v === undefined)) return false;
    if (lo !== "" && v < Number(lo)) return false;
    if (hi !== "" && v > Number(hi)) return false;
  }
  if (text) {
    const hay = [clip.ocr_text, clip.transcript, clip.best_caption, clip.caption_texts]
      .filter(Boolean).join(" ").toLowerCase();
    if (!hay.includes(text)) return false;
  }
  return true;
}

function applyFilters() {
  const current = shown[cursor];
  shown = data.clips.filter(passes);
  const visible = new Set(shown);
  for (const clip of data.clips) cards.get(clip.clip_id).hidden = !visible.has(clip);
  cursor = Math.max(0, shown.indexOf(current));
  $("shown").textContent = shown.length;
  paintCursor();
}

function options(select, values) {
  for (const v of values) {
    const o = el("option", v); o.value = v; select.append(o);
  }
}

// ------------------------------------------------------------------ labels
async function send(items) {
  const r = await fetch("api/labels", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Vidcurate-Token": TOKEN },
    body: JSON.stringify({ labels: items, who: data.who }),
  });
  if (!r.ok) throw new Error((await r.text()).trim() || `HTTP ${r.status}`);
}

async function label(clip, value, reason) {
  clip.label = value; clip.reason = reason || null; clip.pending = true;
  paintLabel(clip);
  pending += 1;
  status("saving…");
  const item = { clip_id: clip.clip_id, label: value, reason: reason || null };
  try {
    await send([item]);
    if (clip.label === value) clip.pending = false;
    status("saved");
  } catch (e) {
    retry.push([clip, item]);
    status(`NOT saved yet (${e.message}); retrying`, true);
  } finally {
    pending -= 1;
    paintLabel(clip);
  }
}

setInterval(async () => {
  if (!retry.length) return;
  const batch = retry.splice(0);
  try {
    await send(batch.map(([, item]) => item));
    for (const [clip] of batch) { clip.pending = false; paintLabel(clip); }
    status("saved");
  } catch (e) {
    retry.unshift(...batch);
    status(`NOT saved yet (${e.message}); retrying`, true);
  }
}, 3000);

window.addEventListener("beforeunload", (e) => {
  if (pending || retry.length) { e.preventDefault(); e.returnValue = ""; }
});

function labelAndNext(value, reason) {
  const clip = shown[cursor];
  if (!clip) return;
  label(clip, value, reason);
  if (cursor < shown.length - 1) cursor += 1;
  paintCursor();
}

// ------------------------------------------------------------------ detail
function table(rows, columns) {
  const t = el("table");
  const head = el("tr");
  for (const c of columns) head.append(el("th", c));
  t.append(head);
  for (const row of rows) {
    const tr = el("tr");
    for (const c of columns) tr.append(el("td", fmt(row[c])));
    t.append(tr);
  }
  return t;
}

async function openDetail(clip) {
  const box = $("detail");
  box.replaceChildren(el("p", "loading…"));
  box.hidden = false;
  const r = await fetch(withToken(`api/clip/${encodeURIComponent(clip.clip_id)}`));
  if (!r.ok) { box.replaceChildren(el("p", `cannot load: HTTP ${r.status}`)); return; }
  const d = await r.json();
  const parts = [el("h2", d.best_caption || "(no caption)")];
  if (clip.has_media) {
    const video = el("video");
    video.controls = true; video.autoplay = true; video.muted = true; video.loop = true;
    video.src = withToken(`media/${encodeURIComponent(clip.clip_id)}`);
    parts.push(video);
  }
  const frames = el("div", null, "frames");
  (d.keyframe_times_s || []).forEach((t, i) => {
    const img = el("img");
    img.src = withToken(`keyframe/${encodeURIComponent(clip.clip_id)}/${i}`);
    img.alt = `keyframe at ${fmt(t)} s`; img.title = img.alt;
    frames.append(img);
  });
  parts.push(el("h3", "Keyframes"), frames);
  parts.push(el("h3", "Candidate captions"),
             table(d.captions, ["teacher", "model", "text", "clip_score", "rank", "selected"]));
  const lineage = [
    ["clip", d.clip_id], ["span", `${fmt(d.start_s)}–${fmt(d.end_s)} s (${fmt(d.duration_s)} s)`],
    ["media span", `${fmt(d.media_start_s)}–${fmt(d.media_end_s)} s, ${d.media_mode}`],
    ["video", `${d.video_id}: ${d.title || ""}`], ["source", d.source_uri],
    ["video facts", `${fmt(d.video_duration_s)} s, ${d.width}x${d.height} @ ${fmt(d.fps)} fps`],
    ["licence", d.license], ["run", `${d.run_id} (${d.runner}, ${d.device || ""}), ` +
      `finished ${d.run_finished_at}`], ["split parameters", d.split_params_hash],
    ["clip model", d.clip_model],
    ["curation", d.curate_pass ? `${d.profile}: ${d.kept ? "kept" : "dropped by " + d.dropped_by}` +
      (d.unmeasured && d.unmeasured.length ? `; unmeasured: ${d.unmeasured.join(", ")}` : "")
      : "not curated"],
    ["flags", (d.quality_flags || []).join(", ")],
    ["on-screen text", d.ocr_text], ["speech", d.transcript],
  ].map(([what, value]) => ({ what, value }));
  parts.push(el("h3", "Lineage"), table(lineage, ["what", "value"]));
  parts.push(el("h3", "Labels (newest last)"),
             table(d.labels, ["label", "reason", "labelled_by", "labelled_at", "source"]));
  parts.push(el("p", "Esc closes"));
  box.replaceChildren(...parts);
}

function closeDetail() {
  const box = $("detail");
  for (const v of box.querySelectorAll("video")) v.pause();
  box.hidden = true;
  box.replaceChildren();
}

// ------------------------------------------------------------------ keyboard
function columns() {
  const visible = shown.map((c) => cards.get(c.clip_id));
  if (!visible.length) return 1;
  const top = visible[0].offsetTop;
  const n = visible.findIndex((card) => card.offsetTop !== top);
  return n === -1 ? visible.length : n;
}

function openReason() {
  if (!shown[cursor]) return;
  $("reason-box").hidden = false;
  $("reason").value = "";
  $("reason").focus();
}

$("reason").addEventListener("keydown", (e) => {
  if (e.key === "Enter") {
    e.preventDefault();
    $("reason-box").hidden = true;
    $("reason").blur();
    labelAndNext("drop", $("reason").value.trim());
  } else if (e.key === "Escape") {
    $("reason-box").hidden = true;
    $("reason").blur();
  }
  e.stopPropagation();
});

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const tag = (document.activeElement || {}).tagName;
  if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") {
    if (e.key === "Escape") document.activeElement.blur();
    return;
  }
  if (!$("detail").hidden) {
    if (e.key === "Escape") closeDetail();
    return;
  }
  const n = shown.length;
  const move = { ArrowRight: 1, l: 1, ArrowLeft: -1, h: -1,
                 ArrowDown: columns(), j: columns(), ArrowUp: -columns(), k: -columns() };
  if (e.key in move) {
    cursor = Math.min(Math.max(cursor + move[e.key], 0), Math.max(n - 1, 0));
    paintCursor();
  } else if (e.key === "y") {
    labelAndNext("keep", null);
  } else if (e.key === "n") {
    labelAndNext("drop", null);
  } else if (/^[1-9]$/.test(e.key) && data.rules[Number(e.key) - 1]) {
    labelAndNext("drop", data.rules[Number(e.key) - 1]);
  } else if (e.key === "r") {
    openReason();
  } else if (e.key === "o" || e.key === "Enter") {
    if (shown[cursor]) openDetail(shown[cursor]);
  } else {
    return;
  }
  e.preventDefault();
});

// ------------------------------------------------------------------ start
async function start() {
  const r = await fetch(withToken("api/clips"));
  if (!r.ok) { status(`cannot load clips: HTTP ${r.status}`, true); return; }
  data = await r.json();
  $("total").textContent = data.total;
  const flags = new Set(), rules = new Set(data.rules);
  for (const c of data.clips) {
    for (const f of c.quality_flags || []) flags.add(f);
    if (c.dropped_by) rules.add(c.dropped_by);
  }
  options($("f-flag"), [...flags].sort());
  options($("f-rule"), [...rules]);
  options($("f-signal"), data.signals);
  options($("rules"), data.rules);
  $("rule-keys").textContent = data.rules.slice(0, 9)
    .map((rule, i) => `${i + 1} ${rule}`).join(" · ");
  const grid = $("grid");
  for (const clip of data.clips) grid.append(makeCard(clip));
  for (const id of ["f-flag", "f-outcome", "f-rule", "f-label", "f-signal", "f-min", "f-max",
                    "f-text"]) {
    $(id).addEventListener("input", applyFilters);
    $(id).addEventListener("change", applyFilters);
  }
  applyFilters();
  status(data.clips.length < data.total ? `showing the first ${data.clips.length}` : "ready");
  document.body.dataset.ready = "1";
}

start();
