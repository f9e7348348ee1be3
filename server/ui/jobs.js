// jobs.js: the Jobs panel — the queue and history, a form that submits
// POST /jobs, and one job watched live through its event stream (progress,
// images/s, ETA, loss curves), with cancel and a link to the version it
// registered.
import { getJSON, postJSON, request, setState, showError } from './api.js';
import { lineChart } from './charts.js';

const FINAL = new Set(['succeeded', 'failed', 'cancelled']);
let watched = null; // {id, source, live, trainEpoch, testEpoch}
let onRegistered = () => {};

function seconds(s) {
  if (!isFinite(s)) return '—';
  return s < 90 ? `${s.toFixed(0)} s` : `${(s / 60).toFixed(1)} min`;
}

function drawChart() {
  lineChart(document.getElementById('job-chart'), [
    { label: 'train loss (live)', color: '#9ecae1', points: watched.live },
    { label: 'train loss', color: '#1f77b4', points: watched.trainEpoch },
    { label: 'test loss', color: '#d62728', points: watched.testEpoch }], { title: `job ${watched.id}: −ELBO (nats)` });
}

function showState(job) {
  document.getElementById('job-state').textContent = job.state;
  document.getElementById('job-state').dataset.state = job.state;
  document.getElementById('job-cancel').disabled = FINAL.has(job.state);
  const link = document.getElementById('job-result');
  if (job.result) {
    link.hidden = false;
    link.href = `#panel=models&model=${encodeURIComponent(job.result.model)}&version=${job.result.version}`;
    link.textContent = `${job.result.model} version ${job.result.version}`;
  } else {
    link.hidden = true;
  }
  if (job.state === 'failed' && job.error) showError(`job ${job.id} failed: ${job.error}`);
}

function showProgress(p) {
  const bar = document.getElementById('job-progress');
  const done = p.epochs ? (p.epoch - 1 + (p.steps ? p.step / p.steps : 0)) / p.epochs : 0;
  bar.value = Math.max(0, Math.min(1, done));
  document.getElementById('job-stats').textContent =
    `epoch ${p.epoch}/${p.epochs}, step ${p.step}/${p.steps}, ${Math.round(p.images_per_s || 0)} images/s, ETA ${seconds(p.eta_s)}, loss ${isFinite(p.loss) ? p.loss.toFixed(2) : '—'}`;
  if (isFinite(p.loss) && p.steps) watched.live.push([p.epoch - 1 + p.step / p.steps, p.loss]);
}

function addEpoch(e) {
  watched.trainEpoch.push([e.epoch, e.train_loss]);
  if (e.test_loss !== null) watched.testEpoch.push([e.epoch, e.test_loss]);
}

export async function watchJob(id) {
  if (watched && watched.id === id && watched.source) return;
  if (watched && watched.source) watched.source.close();
  watched = { id, source: null, live: [], trainEpoch: [], testEpoch: [] };
  document.getElementById('job-id').textContent = String(id);
  let job;
  try { job = await getJSON(`/jobs/${id}`); } catch (e) { showError(e); return; }
  showState(job);
  drawChart();
  const source = new EventSource(`/jobs/${id}/events`);
  watched.source = source;
  source.addEventListener('progress', (ev) => { showProgress(JSON.parse(ev.data)); drawChart(); });
  source.addEventListener('epoch', (ev) => { addEpoch(JSON.parse(ev.data)); drawChart(); });
  source.addEventListener('state', async (ev) => {
    const s = JSON.parse(ev.data);
    showState({ id, state: s.state, result: s.result, error: s.error });
    if (!FINAL.has(s.state)) return;
    source.close();
    watched.source = null;
    if (s.state === 'succeeded') document.getElementById('job-progress').value = 1;
    await renderJobs();
    if (s.result) onRegistered(s.result);
  });
}

export async function renderJobs() {
  let list;
  try { list = await getJSON('/jobs?limit=50'); } catch (e) { showError(e); return; }
  const body = document.querySelector('#jobs-table tbody');
  body.replaceChildren();
  for (const j of list.jobs.slice().reverse()) {
    const tr = body.insertRow();
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = String(j.id);
    b.setAttribute('aria-label', `watch job ${j.id}`);
    b.addEventListener('click', () => setState({ job: j.id }));
    tr.insertCell().append(b);
    tr.insertCell().textContent = j.state;
    tr.insertCell().textContent = j.config.model;
    tr.insertCell().textContent = j.config.data;
    const p = j.progress;
    tr.insertCell().textContent = p ? `epoch ${p.epoch}/${p.epochs}` : '—';
    const res = tr.insertCell();
    if (j.result) {
      const a = document.createElement('a');
      a.href = `#panel=models&model=${encodeURIComponent(j.result.model)}&version=${j.result.version}`;
      a.textContent = `${j.result.model} v${j.result.version}`;
      res.append(a);
    }
  }
}

export function bindJobs(registered) {
  onRegistered = registered;
  const form = document.getElementById('job-form');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = form.elements;
    const spec = {
      model: f.model.value, data: f.data.value, arch: f.arch.value,
      latent: Number(f.latent.value), epochs: Number(f.epochs.value), batch: Number(f.batch.value),
      lr: Number(f.lr.value), seed: Number(f.seed.value), likelihood: f.likelihood.value,
      beta: Number(f.beta.value), kl_warmup: Number(f.kl_warmup.value),
    };
    if (f.arch.value === 'mlp') spec.hidden = f.hidden.value.split(',').map((s) => Number(s.trim())).filter((n) => n > 0);
    if (f.conditional.checked) spec.conditional = true;
    if (Number(f.limit.value) > 0) spec.limit = Number(f.limit.value);
    try {
      const job = await postJSON('/jobs', spec);
      setState({ job: job.id });
      await renderJobs();
    } catch (e) { showError(e); }
  });
  document.getElementById('job-cancel').addEventListener('click', async () => {
    if (!watched) return;
    try { await request(`/jobs/${watched.id}/cancel`, { method: 'POST' }); } catch (e) { showError(e); }
  });
}
