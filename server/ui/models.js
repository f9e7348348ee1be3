// models.js: the Models panel — a version's config, metrics, per-epoch
// curves and samples, and a second version beside it on the same seed.
import { getJSON, getState, postImage, showError } from './api.js';
import { lineChart } from './charts.js';

const CONFIG_KEYS = ['arch', 'hidden', 'conv_channels', 'latent', 'n_classes', 'likelihood',
  'activation', 'beta', 'kl_warmup', 'batch', 'epochs', 'lr', 'seed'];

function fmt(v) {
  if (v === null || v === undefined) return '—';
  if (Array.isArray(v)) return v.join(', ');
  if (typeof v === 'number' && !Number.isInteger(v)) return v.toPrecision(5);
  return String(v);
}

function table(rows) {
  const t = document.createElement('table');
  for (const [k, v] of rows) {
    const tr = t.insertRow();
    const th = document.createElement('th');
    th.textContent = k;
    tr.appendChild(th);
    tr.insertCell().textContent = fmt(v);
  }
  return t;
}

function canvas(label) {
  const c = document.createElement('canvas');
  c.width = 460; c.height = 200;
  c.setAttribute('aria-label', label);
  c.setAttribute('role', 'img');
  return c;
}

// One version into box: what it is, how it did, what it draws.
export async function renderVersion(box, model, version) {
  box.replaceChildren();
  if (!model) { box.textContent = 'No model in the registry yet: train one in the Jobs panel.'; return; }
  let v;
  try {
    v = await getJSON(`/models/${encodeURIComponent(model)}/versions/${encodeURIComponent(version || 'latest')}`);
  } catch (e) { showError(e); return; }
  const h = document.createElement('h2');
  h.textContent = `${v.model} version ${v.version}${v.aliases && v.aliases.length ? ` (${v.aliases.join(', ')})` : ''}`;
  h.className = 'version-title';
  const m = v.metrics || {};
  const cfg = v.config || {};
  const metrics = table([
    ['test −ELBO', m.test_loss], ['test reconstruction', m.test_recon], ['test KL', m.test_kl],
    [`IWAE bound${m.iwae_k ? ` (K=${m.iwae_k})` : ''}`, m.test_iwae_nll],
    ['active units', m.active_units], ['epochs', m.epochs], ['source', v.source],
    ['created', v.created_at]]);
  metrics.className = 'metrics';
  const config = table(CONFIG_KEYS.filter((k) => k in cfg && !(k === 'conv_channels' && cfg.arch !== 'conv')).map((k) => [k, cfg[k]]));
  config.className = 'config';
  const per = m.per_epoch || [];
  const loss = canvas(`loss per epoch of ${v.model} version ${v.version}`);
  const parts = canvas(`reconstruction and KL per epoch of ${v.model} version ${v.version}`);
  const seed = getState().get('s.seed') || '1';
  const fig = document.createElement('figure');
  const img = document.createElement('img');
  img.className = 'version-samples';
  img.alt = `16 samples of ${v.model} version ${v.version}, seed ${seed}`;
  const cap = document.createElement('figcaption');
  cap.textContent = `samples, seed ${seed}`;
  fig.append(img, cap);
  const row = document.createElement('div');
  row.className = 'row';
  const left = document.createElement('div');
  left.append(metrics, config);
  row.append(left, fig);
  box.append(h, row, loss, parts);
  const ep = (key) => per.map((e) => [e.epoch, e[key]]);
  lineChart(loss, [
    { label: 'train loss', color: '#1f77b4', points: ep('train_loss') },
    { label: 'test loss', color: '#d62728', points: ep('test_loss') }], { title: '−ELBO (nats)' });
  lineChart(parts, [
    { label: 'train recon', color: '#1f77b4', points: ep('train_recon') },
    { label: 'test recon', color: '#d62728', points: ep('test_recon') },
    { label: 'train KL', color: '#2ca02c', points: ep('train_kl') },
    { label: 'test KL', color: '#9467bd', points: ep('test_kl') }], { title: 'reconstruction and KL (nats)' });
  const q = new URLSearchParams({ n: 16, seed, scale: 2, model: v.model, version: v.version });
  try { await postImage(img, `/sample?${q}`); } catch (e) { showError(e); }
}

export async function renderModels(versions) {
  const s = getState();
  const compare = document.getElementById('compare');
  const keep = s.get('compare') || '';
  compare.replaceChildren(new Option('(none)', ''));
  for (const v of versions) compare.add(new Option(`version ${v.version}`, String(v.version)));
  compare.value = keep;
  await Promise.all([
    renderVersion(document.getElementById('models-a'), s.get('model'), s.get('version')),
    keep ? renderVersion(document.getElementById('models-b'), s.get('model'), keep)
      : Promise.resolve(document.getElementById('models-b').replaceChildren()),
  ]);
}
