// app.js: the dashboard's frame — the model and version picker, the tabs,
// the token field, and the router: every change of view is a change of the
// URL's hash, and each hashchange renders the panel it names.
import { clearError, getJSON, getState, setState, setToken, showError, token } from './api.js';
import { renderModels } from './models.js';
import { bindInterpolation, bindReconstructions, bindSamples, bindTraversal, renderInterpolation,
  renderReconstructions, renderSamples, renderTraversal } from './images.js';
import { bindMap, renderMap } from './map.js';
import { bindJobs, renderJobs, watchJob } from './jobs.js';

const PANELS = ['models', 'samples', 'reconstructions', 'interpolation', 'traversal', 'map', 'jobs'];
let models = [];          // GET /models
let versionInfo = null;   // GET /models/NAME/versions/V of the picked version
let pickedKey = '';

async function loadModels() {
  try { models = (await getJSON('/models')).models; } catch (e) { showError(e); models = []; }
  const sel = document.getElementById('model');
  sel.replaceChildren(...models.map((m) => new Option(m.name, m.name)));
  if (!models.length) sel.add(new Option('(no model yet)', ''));
}

// The version picker of the picked model: its aliases, then every version.
async function loadVersions(name) {
  const sel = document.getElementById('version');
  sel.replaceChildren(new Option('latest', ''));
  if (!name) return [];
  let m;
  try { m = await getJSON(`/models/${encodeURIComponent(name)}`); } catch (e) { showError(e); return []; }
  for (const alias of Object.keys(m.aliases || {})) if (alias !== 'latest') sel.add(new Option(`${alias} → ${m.aliases[alias]}`, alias));
  for (const v of m.versions.slice().reverse()) sel.add(new Option(`version ${v.version}`, String(v.version)));
  return m.versions;
}

export async function refreshModels(result) {
  await loadModels();
  pickedKey = '';
  if (result) setState({ model: result.model, version: result.version });
  else render();
}

let versions = [];
async function render() {
  clearError();
  delete document.body.dataset.rendered;
  const s = getState();
  const panel = PANELS.includes(s.get('panel')) ? s.get('panel') : 'models';
  for (const p of PANELS) document.getElementById(`panel-${p}`).hidden = p !== panel;
  for (const b of document.querySelectorAll('#tabs button')) {
    const on = b.dataset.panel === panel;
    b.setAttribute('aria-selected', String(on));
    b.tabIndex = on ? 0 : -1;
  }
  let model = s.get('model') || '';
  if (!model && models.length) {
    // as the daemon picks without --default-model: the most recently updated
    model = models.reduce((a, b) => (b.updated_at > a.updated_at ? b : a)).name;
    setState({ model }, { replace: true }); // the view in the URL names its model
  }
  const hash = location.hash; // the view this render draws
  const modelSel = document.getElementById('model');
  modelSel.value = model;
  const key = `${model}|${s.get('version') || ''}`;
  if (key !== pickedKey) {
    pickedKey = key;
    versions = await loadVersions(model);
    versionInfo = null;
    if (model) {
      try { versionInfo = await getJSON(`/models/${encodeURIComponent(model)}/versions/${encodeURIComponent(s.get('version') || 'latest')}`); } catch (e) { showError(e); }
    }
  }
  document.getElementById('version').value = s.get('version') || '';
  document.body.dataset.panel = panel;
  try {
    if (panel === 'models') await renderModels(versions);
    else if (panel === 'samples') await renderSamples(versionInfo);
    else if (panel === 'reconstructions') await renderReconstructions();
    else if (panel === 'interpolation') await renderInterpolation();
    else if (panel === 'traversal') await renderTraversal();
    else if (panel === 'map') await renderMap(versionInfo);
    else if (panel === 'jobs') {
      await renderJobs();
      if (s.get('job')) await watchJob(Number(s.get('job')));
    }
  } catch (e) { showError(e); }
  // for people's tools and the browser test: this view is on the screen
  if (location.hash === hash) { // else a newer view is on its way
    document.body.dataset.rendered = panel;
    document.body.dataset.renderedHash = location.hash;
  }
}

function bindFrame() {
  const tabs = [...document.querySelectorAll('#tabs button')];
  for (const b of tabs) {
    b.addEventListener('click', () => { clearError(); setState({ panel: b.dataset.panel }); });
    b.addEventListener('keydown', (ev) => {
      const i = tabs.indexOf(b);
      const next = ev.key === 'ArrowRight' ? tabs[(i + 1) % tabs.length]
        : ev.key === 'ArrowLeft' ? tabs[(i + tabs.length - 1) % tabs.length] : null;
      if (next) { ev.preventDefault(); next.focus(); next.click(); }
    });
  }
  document.getElementById('model').addEventListener('change', (ev) => {
    clearError();
    setState({ model: ev.target.value, version: '', compare: '' });
  });
  document.getElementById('version').addEventListener('change', (ev) => { clearError(); setState({ version: ev.target.value }); });
  document.getElementById('compare').addEventListener('change', (ev) => setState({ compare: ev.target.value }));
  const tokenInput = document.getElementById('token');
  tokenInput.value = token();
  tokenInput.addEventListener('change', () => setToken(tokenInput.value.trim()));
  document.getElementById('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    setToken(tokenInput.value.trim());
  });
}

async function main() {
  bindFrame();
  bindSamples();
  bindReconstructions();
  bindInterpolation();
  bindTraversal();
  bindMap();
  bindJobs((result) => refreshModels(result));
  await loadModels();
  window.addEventListener('hashchange', render);
  await render();
}

main();
