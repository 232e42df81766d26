// Rendering shared by the page and the widget. Only text nodes and attributes are ever
// created from the user's text or the model's output: nothing is parsed as HTML.

// The schema's labels, in order, get hues spread evenly round the wheel, neighbours in the
// schema a third of the wheel apart and lightness alternating, so no two of a schema's types
// look alike (hashed hues put PERSON and PHONE_NUMBER side by side). Other labels hash.
let palette = new Map();

/** Sets the labels whose colours are spread evenly (the schema's, in its order). */
export function setPalette(labels) {
  const n = labels.length;
  const stride = [...Array(n).keys()].reverse().find((k) => k <= n / 3 + 1 && gcd(k, n) === 1) || 1;
  palette = new Map(labels.map((l, i) => [l, `hsl(${Math.round(((i * stride) % n) * (360 / n))} 80% ${i % 2 ? 86 : 76}%)`]));
}

const gcd = (a, b) => (b ? gcd(b, a % b) : a);

/** A stable colour per label, readable on white. */
export function colorOf(label) {
  if (palette.has(label)) return palette.get(label);
  let h = 0;
  for (const c of label) h = (h * 31 + c.codePointAt(0)) >>> 0;
  return `hsl(${h % 360} 85% 80%)`;
}

/** `text` with `entities` (UTF-16 offsets) as focusable <mark>s; `guideline(label)` goes
 *  into each mark's tooltip. */
export function renderHighlights(box, text, entities, guideline = () => '') {
  box.replaceChildren();
  let at = 0;
  for (const e of [...entities].sort((a, b) => a.start - b.start)) {
    if (e.start < at) continue;
    box.append(document.createTextNode(text.slice(at, e.start)));
    const mark = document.createElement('mark');
    mark.textContent = text.slice(e.start, e.end);
    Object.assign(mark.dataset, { testid: 'entity', label: e.label, start: e.start, end: e.end, source: e.source });
    mark.style.background = colorOf(e.label);
    const g = guideline(e.label);
    mark.title = `${e.label} · ${e.source} · score ${e.score.toFixed(2)}${g ? '\n' + g : ''}`;
    mark.setAttribute('aria-label', `${e.label}: ${mark.textContent}, score ${e.score.toFixed(2)}, ${e.source}`);
    mark.tabIndex = 0;
    box.append(mark);
    at = e.end;
  }
  box.append(document.createTextNode(text.slice(at)));
}

/** One swatch per label. */
export function renderLegend(box, labels) {
  box.replaceChildren(...labels.map((l) => {
    const s = document.createElement('span');
    s.className = 'swatch';
    s.style.background = colorOf(l);
    s.textContent = l;
    return s;
  }));
}

/** "1 entity", "3 entities". */
export const countEntities = (n) => `${n} ${n === 1 ? 'entity' : 'entities'}`;

/** UTF-16 offset → code-point offset (the JSONL files count code points). */
export function codePoints(text, i) {
  return [...text.slice(0, i)].length;
}

/** Entities as the eval JSONL line: `{text, entities}` with code-point offsets. */
export function asJsonlRecord(text, entities, id) {
  const ents = entities.map((e) => ({
    start: codePoints(text, e.start), end: codePoints(text, e.end), label: e.label, text: e.text, score: e.score, source: e.source,
  }));
  return { ...(id === undefined ? {} : { id }), text, entities: ents };
}

/** Offers `content` as a file download (a local blob: nothing leaves the machine). */
export function download(name, content, type = 'text/plain') {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([content], { type }));
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}
