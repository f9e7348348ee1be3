// map.js: the Latent map panel — the data set's mu in 2-D (from GET
// /latent-map), coloured by label; hovering shows the image under the
// pointer, clicking decodes that point of the map (POST /decode of
// mean + u axes[0] + v axes[1]); the decoded manifold is a grid of such
// points over the map.
import { fillForm, formState, getJSON, modelQuery, postImage, setState, showError,
  withQuery } from './api.js';
import { PALETTE, boundsOf, scatter } from './charts.js';

const GRID = 15;
let current = null; // {map, view, bounds, data}

function latentOf(map, u, v) {
  const { mean, axes } = map.projection;
  return mean.map((m, k) => m + u * axes[0][k] + v * axes[1][k]);
}

function nearest(points, view, cx, cy) {
  let best = null, bestD = 64; // within 8 pixels
  for (const p of points) {
    const [x, y] = view.toCanvas(p[0], p[1]);
    const d = (x - cx) ** 2 + (y - cy) ** 2;
    if (d < bestD) { bestD = d; best = p; }
  }
  return best;
}

function legend(map) {
  const box = document.getElementById('map-legend');
  box.replaceChildren();
  const labels = [...new Set(map.points.map((p) => p[2]))].sort((a, b) => a - b);
  for (const l of labels) {
    const item = document.createElement('span');
    item.className = 'legend-item';
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = l === null ? '#555' : PALETTE[l % PALETTE.length];
    item.append(sw, document.createTextNode(l === null ? 'no label' : `label ${l}`));
    box.append(item);
  }
}

// A conditional model decodes a point as a class: the one chosen here.
function classChoice(version) {
  const k = version && version.config ? version.config.n_classes || 0 : 0;
  const sel = document.getElementById('map-class');
  document.getElementById('map-class-label').hidden = k === 0;
  const keep = sel.value || '0';
  sel.replaceChildren();
  for (let c = 0; c < k; c++) sel.add(new Option(String(c), String(c)));
  if (k) sel.value = Number(keep) < k ? keep : '0';
  return k;
}

function decodeBody(z) {
  const body = { z };
  if (current && current.classes) body.label = Number(document.getElementById('map-class').value);
  return body;
}

export async function renderMap(version) {
  const classes = classChoice(version);
  const form = document.getElementById('map-form');
  fillForm(form, 'm.');
  const f = formState(form, 'm.');
  const q = modelQuery();
  q.set('data', `${f['m.data']}:test`);
  q.set('limit', f['m.limit']);
  const canvas = document.getElementById('map-canvas');
  let map;
  try { map = await getJSON(withQuery('/latent-map', q)); } catch (e) { showError(e); return; }
  const bounds = boundsOf(map.points);
  const view = scatter(canvas, map.points, bounds);
  canvas.dataset.points = String(map.points.length);
  // where the first point is drawn, for tools that point at one (the browser test)
  if (map.points.length) canvas.dataset.first = view.toCanvas(map.points[0][0], map.points[0][1]).map(Math.round).join(',');
  current = { map, view, bounds, data: f['m.data'], classes };
  legend(map);
  const kind = map.projection.kind === 'pca'
    ? `PCA of a ${map.latent}-d latent (variance ${map.projection.variance.map((v) => v.toPrecision(3)).join(', ')})`
    : 'the 2-d latent itself';
  document.getElementById('map-info').textContent =
    `${map.count} points of ${map.data}, ${map.model} version ${map.version}: ${kind}`;
}

async function decodeAt(u, v) {
  const z = latentOf(current.map, u, v);
  const q = modelQuery(); q.set('scale', 4);
  const img = document.getElementById('map-decoded');
  img.alt = `the decoded point (${u.toFixed(2)}, ${v.toFixed(2)}) of the map`;
  try {
    await postImage(img, withQuery('/decode', q), { json: decodeBody([z]) });
    document.getElementById('map-decoded-caption').textContent = `decoded at (${u.toFixed(2)}, ${v.toFixed(2)})`;
  } catch (e) { showError(e); }
}

async function manifold() {
  if (!current) return;
  const { x0, x1, y0, y1 } = current.bounds;
  const z = [];
  for (let r = 0; r < GRID; r++) {
    for (let c = 0; c < GRID; c++) {
      z.push(latentOf(current.map, x0 + ((c + 0.5) / GRID) * (x1 - x0), y1 - ((r + 0.5) / GRID) * (y1 - y0)));
    }
  }
  const q = modelQuery(); q.set('scale', 1);
  const img = document.getElementById('map-manifold');
  img.hidden = false;
  img.alt = `decoded manifold: a ${GRID}x${GRID} grid of points over the map`;
  try {
    await postImage(img, withQuery('/decode', q), { json: decodeBody(z) });
    document.getElementById('map-manifold-caption').textContent = `${GRID}×${GRID} points of the map, decoded`;
  } catch (e) { showError(e); }
}

export function bindMap() {
  const form = document.getElementById('map-form');
  form.addEventListener('submit', (ev) => { ev.preventDefault(); setState(formState(form, 'm.')); });
  const canvas = document.getElementById('map-canvas');
  const tip = document.getElementById('map-tip');
  const scaleXY = (ev) => {
    const r = canvas.getBoundingClientRect();
    return [((ev.clientX - r.left) / r.width) * canvas.width, ((ev.clientY - r.top) / r.height) * canvas.height];
  };
  canvas.addEventListener('mousemove', (ev) => {
    if (!current) return;
    const [cx, cy] = scaleXY(ev);
    const p = nearest(current.map.points, current.view, cx, cy);
    if (!p) { tip.hidden = true; return; }
    const img = document.getElementById('map-tip-img');
    const src = `/data/${current.data}/test/${p[3]}?scale=2`;
    if (!img.src.endsWith(src)) {
      img.src = src;
      img.alt = `${current.data} test image ${p[3]}, label ${p[2]}`;
    }
    document.getElementById('map-tip-text').textContent = `#${p[3]} label ${p[2]}`;
    tip.style.left = `${ev.offsetX + 12}px`;
    tip.style.top = `${ev.offsetY + 12}px`;
    tip.hidden = false;
  });
  canvas.addEventListener('mouseleave', () => { tip.hidden = true; });
  canvas.addEventListener('click', (ev) => {
    if (!current) return;
    const [u, v] = current.view.toData(...scaleXY(ev));
    decodeAt(u, v);
  });
  canvas.addEventListener('keydown', (ev) => {
    if (!current || (ev.key !== 'Enter' && ev.key !== ' ')) return;
    ev.preventDefault();
    const { x0, x1, y0, y1 } = current.bounds;
    decodeAt((x0 + x1) / 2, (y0 + y1) / 2); // the keyboard decodes the map's centre
  });
  document.getElementById('map-grid').addEventListener('click', manifold);
}
