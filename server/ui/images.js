// images.js: the panels that are pictures from one URL each — samples,
// reconstructions, interpolation (with its test-image picker and the tag a
// dashboard embeds) and the latent traversal.
import { fillForm, formState, getState, modelQuery, postImage, setState, showError,
  showImage, withQuery } from './api.js';

const SHEET = 16;   // images per page of the interpolation picker
const SHEET_SCALE = 2;

// A conditional model's class row: "every class" (sample i of class i mod
// K, so each grid row runs through the classes) or one class.
function classRow(version, current) {
  const row = document.getElementById('samples-classes');
  const k = version && version.config ? version.config.n_classes || 0 : 0;
  row.hidden = k === 0;
  row.replaceChildren();
  if (!k) return;
  const button = (label, value) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.dataset.label = value;
    b.setAttribute('aria-pressed', String(value === current));
    b.addEventListener('click', () => setState({ 's.label': value }));
    row.append(b);
  };
  button('every class', '');
  for (let c = 0; c < k; c++) button(`class ${c}`, String(c));
}

export async function renderSamples(version) {
  const form = document.getElementById('samples-form');
  fillForm(form, 's.');
  const f = formState(form, 's.');
  const label = getState().get('s.label') || '';
  const conditional = version && version.config && version.config.n_classes > 0;
  classRow(version, label);
  const q = modelQuery();
  q.set('n', f['s.n']); q.set('seed', f['s.seed']); q.set('temperature', f['s.t']); q.set('scale', 2);
  if (conditional && label !== '') q.set('label', label);
  const img = document.getElementById('samples-img');
  const what = !conditional ? '' : label !== '' ? ` of class ${label}` : ', a row through the classes';
  img.alt = `${f['s.n']} samples${what}, seed ${f['s.seed']}, temperature ${f['s.t']}`;
  document.getElementById('samples-caption').textContent = img.alt;
  try {
    const resp = await postImage(img, withQuery('/sample', q));
    img.dataset.seed = resp.headers.get('X-Seed') || '';
  } catch (e) { showError(e); }
}

export function bindSamples() {
  const form = document.getElementById('samples-form');
  form.addEventListener('submit', (ev) => { ev.preventDefault(); setState(formState(form, 's.')); });
  document.getElementById('samples-next').addEventListener('click', () => {
    form.elements.seed.value = String(Number(form.elements.seed.value || 0) + 1);
    setState(formState(form, 's.'));
  });
}

export function renderReconstructions() {
  const form = document.getElementById('recon-form');
  fillForm(form, 'r.');
  const f = formState(form, 'r.');
  const q = modelQuery();
  q.set('from', `${f['r.data']}:${f['r.split']}:${f['r.first']}-${f['r.last']}`);
  q.set('scale', 2);
  return showImage(document.getElementById('recon-img'), withQuery('/reconstruct', q),
    `${f['r.data']} ${f['r.split']} images ${f['r.first']} to ${f['r.last']} above their reconstructions`);
}

export function bindReconstructions() {
  const form = document.getElementById('recon-form');
  form.addEventListener('submit', (ev) => { ev.preventDefault(); setState(formState(form, 'r.')); });
}

function interpURL(f) {
  const q = modelQuery();
  q.set('from', `${f['i.data']}:test:${f['i.from']}`);
  q.set('to', `${f['i.data']}:test:${f['i.to']}`);
  q.set('steps', f['i.steps']);
  q.set('mode', f['i.mode']);
  q.set('scale', 2);
  return withQuery('/interpolate', q);
}

export function renderInterpolation() {
  const form = document.getElementById('interp-form');
  fillForm(form, 'i.');
  const f = formState(form, 'i.');
  const start = Math.max(0, Number(f['i.start']) || 0);
  const sheet = document.getElementById('interp-sheet');
  const sheetDone = showImage(sheet, `/data/${f['i.data']}/test?start=${start}&count=${SHEET}&cols=${SHEET}&scale=${SHEET_SCALE}`,
    `${f['i.data']} test images ${start} to ${start + SHEET - 1}: click one to pick an end`);
  sheet.dataset.start = String(start);
  const url = interpURL(f);
  const strip = showImage(document.getElementById('interp-img'), url,
    `${f['i.mode']} interpolation in ${f['i.steps']} steps from ${f['i.data']} test image ${f['i.from']} to ${f['i.to']}`);
  document.getElementById('interp-caption').textContent = url;
  document.getElementById('interp-tag').value = '';
  return Promise.all([sheetDone, strip]);
}

// The exact tag a dashboard embeds: the absolute GET /interpolate URL.
export function imgTag() {
  const f = formState(document.getElementById('interp-form'), 'i.');
  const src = new URL(interpURL(f), location.href).href.replace(/&/g, '&amp;');
  return `<img src="${src}" alt="interpolation from ${f['i.data']} test image ${f['i.from']} to ${f['i.to']}">`;
}

function base64Of(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).replace(/^data:[^,]*,/, ''));
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

export function bindInterpolation() {
  const form = document.getElementById('interp-form');
  const sheet = document.getElementById('interp-sheet');
  let picking = 'from', cursor = 0;
  form.addEventListener('submit', (ev) => { ev.preventDefault(); setState(formState(form, 'i.')); });
  const page = (delta) => {
    form.elements.start.value = String(Math.max(0, Number(form.elements.start.value) + delta * SHEET));
    setState(formState(form, 'i.'));
  };
  document.getElementById('interp-prev').addEventListener('click', () => page(-1));
  document.getElementById('interp-next').addEventListener('click', () => page(1));
  const pick = (cell) => {
    const index = Number(sheet.dataset.start) + cell;
    form.elements[picking].value = String(index);
    picking = picking === 'from' ? 'to' : 'from';
    setState(formState(form, 'i.'));
  };
  sheet.addEventListener('click', (ev) => {
    const rect = sheet.getBoundingClientRect();
    pick(Math.min(SHEET - 1, Math.floor(((ev.clientX - rect.left) / rect.width) * SHEET)));
  });
  sheet.addEventListener('keydown', (ev) => {
    if (ev.key === 'ArrowRight') cursor = Math.min(SHEET - 1, cursor + 1);
    else if (ev.key === 'ArrowLeft') cursor = Math.max(0, cursor - 1);
    else if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); pick(cursor); return; }
    else return;
    ev.preventDefault();
    sheet.title = `image ${Number(sheet.dataset.start) + cursor} (Enter picks it)`;
    sheet.setAttribute('aria-label', sheet.title);
  });
  document.getElementById('interp-copy').addEventListener('click', async () => {
    const tag = imgTag();
    const out = document.getElementById('interp-tag');
    out.value = tag;
    out.select();
    try { await navigator.clipboard.writeText(tag); } catch (_) { /* the field holds it selected */ }
  });
  document.getElementById('interp-upload').addEventListener('click', async () => {
    const a = document.getElementById('interp-file-a').files[0];
    const b = document.getElementById('interp-file-b').files[0];
    if (!a || !b) { showError('choose two PNG files first'); return; }
    const f = formState(form, 'i.');
    try {
      const json = { from: { png_base64: await base64Of(a) }, to: { png_base64: await base64Of(b) },
        steps: Number(f['i.steps']), mode: f['i.mode'] };
      const q = modelQuery(); q.set('scale', 2);
      const img = document.getElementById('interp-img');
      img.alt = `interpolation between ${a.name} and ${b.name}`;
      await postImage(img, withQuery('/interpolate', q), { json });
      document.getElementById('interp-caption').textContent = `POST /interpolate: ${a.name} to ${b.name}`;
    } catch (e) { showError(e); }
  });
}

export function renderTraversal() {
  const form = document.getElementById('trav-form');
  fillForm(form, 't.');
  const f = formState(form, 't.');
  const q = modelQuery();
  q.set('from', `${f['t.data']}:test:${f['t.index']}`);
  if (f['t.dims']) q.set('dims', f['t.dims']);
  q.set('range', f['t.range']); q.set('steps', f['t.steps']); q.set('scale', 2);
  return Promise.all([
    showImage(document.getElementById('trav-src'), `/data/${f['t.data']}/test/${f['t.index']}?scale=4`,
      `${f['t.data']} test image ${f['t.index']}`),
    showImage(document.getElementById('trav-img'), withQuery('/traverse', q),
      `latent traversal of ${f['t.data']} test image ${f['t.index']}: dimensions ${f['t.dims']}, ±${f['t.range']} in ${f['t.steps']} steps`),
  ]);
}

export function bindTraversal() {
  const form = document.getElementById('trav-form');
  form.addEventListener('submit', (ev) => { ev.preventDefault(); setState(formState(form, 't.')); });
}

