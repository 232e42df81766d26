// Rendering shared by the page and the widget. Only text nodes and attributes are ever
// created from the user's text or the model's output: nothing is parsed as HTML.

// The schema's labels, in order, get colours chosen in CIELAB, where distance is what the
// eye sees (equal steps of HSL hue are not: its greens and yellows look alike): two rings of
// hues, a light one and a darker, more saturated one, half a step apart, labels taking turns
// and neighbours in the schema far apart on the wheel. Up to 24 types stay clearly apart
// (the browser test measures it); every colour keeps dark text readable (contrast ≥ 4.5:1).
// Other labels hash to a hue.
let palette = new Map();
const RINGS = [{ l: 88, c: 30 }, { l: 72, c: 42 }];

/** Sets the labels whose colours are spread apart (the schema's, in its order). */
export function setPalette(labels) {
  const k = Math.max(1, Math.ceil(labels.length / 2)); // hues per ring
  const stride = [...Array(k).keys()].reverse().find((s) => s <= k / 3 + 1 && gcd(s, k) === 1) || 1;
  palette = new Map(labels.map((label, i) => {
    const ring = RINGS[i % 2];
    const slot = ((i >> 1) * stride) % k;
    return [label, lch(ring.l, ring.c, (slot + (i % 2) / 2) * (360 / k) + 20)];
  }));
}

const gcd = (a, b) => (b ? gcd(b, a % b) : a);

/** `rgb(…)` of CIELAB lightness `l`, chroma `c`, hue `h` (degrees), D65, clipped to sRGB. */
function lch(l, c, h) {
  const [a, b] = [c * Math.cos((h * Math.PI) / 180), c * Math.sin((h * Math.PI) / 180)];
  const fy = (l + 16) / 116;
  const inv = (t) => (t ** 3 > 0.008856 ? t ** 3 : (t - 16 / 116) / 7.787);
  const [x, y, z] = [0.95047 * inv(fy + a / 500), inv(fy), 1.08883 * inv(fy - b / 200)];
  const linear = [
    3.2406 * x - 1.5372 * y - 0.4986 * z,
    -0.9689 * x + 1.8758 * y + 0.0415 * z,
    0.0557 * x - 0.204 * y + 1.057 * z,
  ];
  const gamma = (v) => (v <= 0.0031308 ? 12.92 * v : 1.055 * v ** (1 / 2.4) - 0.055);
  const [r, g, bl] = linear.map((v) => Math.round(255 * Math.min(1, Math.max(0, gamma(v)))));
  return `rgb(${r}, ${g}, ${bl})`;
}

/** A stable colour per label, readable with dark text. */
export function colorOf(label) {
  if (palette.has(label)) return palette.get(label);
  let h = 0;
  for (const c of label) h = (h * 31 + c.codePointAt(0)) >>> 0;
  return lch(RINGS[0].l, RINGS[0].c, h % 360);
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

/** Offers `content` as a file download (a local blob: nothing leaves the machine). */
export function download(name, content, type = 'text/plain') {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([content], { type }));
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}
