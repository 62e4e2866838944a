// The report's clip gallery: cards built with textContent only (captions are data,
// never markup), links to each card's nearest neighbours, and filters (CLIP score,
// teacher, NSFW score, personal data, camera motion).
const clips = JSON.parse(document.getElementById('clip-data').textContent);
const byId = new Map(clips.map(c => [c.id, c]));
const gallery = document.getElementById('gallery');
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function card(c) {
  const d = el('div', null, 'clip-card');
  d.id = 'clip-' + c.id;
  d.dataset.score = c.score === null ? '' : c.score;
  d.dataset.teacher = c.teacher || '';
  d.dataset.camera = c.camera || '';
  d.dataset.nsfw = c.nsfw === null || c.nsfw === undefined ? '' : c.nsfw;
  d.dataset.personal = c.personal === null || c.personal === undefined ? ''
    : (c.personal.length ? 'found' : 'none');
  for (const f of c.frames) { const i = el('img'); i.src = f; i.alt = c.id; d.appendChild(i); }
  if (c.media) {
    const v = el('video'); v.src = c.media; v.controls = true; v.preload = 'none';
    v.style.width = '100%'; d.appendChild(v);
  }
  d.appendChild(el('div', c.caption || '(no caption)', 'caption'));
  const score = c.score === null ? 'no CLIP score' : 'CLIP ' + c.score.toFixed(3);
  d.appendChild(el('div', (c.teacher || '-') + ' · ' + score + ' · ' + (c.method || ''), 'meta'));
  d.appendChild(el('div', c.title + ' · ' + c.start + '–' + c.end + ' s'
                        + (c.camera ? ' · camera ' + c.camera : ''), 'meta'));
  // Safety signals: the NSFW score and the kinds of personal data (never the values).
  const nsfw = c.nsfw === null || c.nsfw === undefined ? 'NSFW not scored' : 'NSFW ' + c.nsfw.toFixed(3);
  const personal = !c.personal ? 'personal data not scanned'
    : (c.personal.length ? 'personal data: ' + c.personal.join(', ') : 'no personal data found');
  d.appendChild(el('div', nsfw + ' · ' + personal, 'safety'));
  const more = el('details'); more.appendChild(el('summary', c.candidates.length + ' candidates, transcript, OCR'));
  const list = el('ol');
  for (const k of c.candidates) {
    const li = el('li', '[' + k.teacher + (k.score === null ? '' : ' ' + k.score.toFixed(3)) + '] ' + k.text,
                  k.selected ? 'selected' : '');
    list.appendChild(li);
  }
  more.appendChild(list);
  if (c.neighbours.length) {
    // The nearest clips by CLIP embedding: a link scrolls to that clip's card.
    const similar = el('div', 'similar: ', 'meta similar');
    for (const n of c.neighbours) {
      const a = el('a', (n.score).toFixed(3));
      a.href = '#clip-' + n.id;
      const other = byId.get(n.id);
      a.title = other ? (other.caption || other.id) : n.id;
      similar.appendChild(a);
    }
    d.appendChild(similar);
  }
  if (c.transcript) more.appendChild(el('p', 'Speech: ' + c.transcript));
  if (c.ocr) more.appendChild(el('p', 'On-screen text: ' + c.ocr));
  d.appendChild(more);
  return d;
}
for (const c of clips) gallery.appendChild(card(c));
function apply() {
  const raw = document.getElementById('min-score').value;
  const min = raw === '' ? null : parseFloat(raw);
  const teacher = document.getElementById('teacher').value;
  const rawNsfw = document.getElementById('max-nsfw').value;
  const maxNsfw = rawNsfw === '' ? null : parseFloat(rawNsfw);
  const personal = document.getElementById('personal').value;
  const camera = document.getElementById('camera').value;
  let shown = 0;
  for (const d of gallery.children) {
    const s = d.dataset.score === '' ? null : parseFloat(d.dataset.score);
    const n = d.dataset.nsfw === '' ? null : parseFloat(d.dataset.nsfw);
    const ok = (min === null || (s !== null && s >= min)) && (!teacher || d.dataset.teacher === teacher)
      && (maxNsfw === null || (n !== null && n <= maxNsfw))
      && (!personal || d.dataset.personal === personal)
      && (!camera || d.dataset.camera === camera);
    d.style.display = ok ? '' : 'none';
    if (ok) shown++;
  }
  document.getElementById('shown').textContent = shown;
}
document.getElementById('min-score').addEventListener('input', apply);
document.getElementById('teacher').addEventListener('change', apply);
document.getElementById('max-nsfw').addEventListener('input', apply);
document.getElementById('personal').addEventListener('change', apply);
document.getElementById('camera').addEventListener('change', apply);
apply();
