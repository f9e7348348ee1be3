// The dashboard in a real browser (Debian's chromium, driven by
// playwright-core), as a person goes through it, against a real vaed:
//   node tests/browser/dashboard.mjs BASE_URL OUT_DIR
// BASE_URL is the daemon (http://127.0.0.1:PORT, tokenless, serving model
// "digits" with versions 1 and 2, latent 2, and MNIST as data); OUT_DIR gets
// a screenshot of each panel. Every request the page makes is intercepted:
// one that leaves BASE_URL's host is refused and fails the test, and so does
// any console error or page error outside the one step that feeds the page
// a bad input on purpose. Exits 0 when every check passed, 1 otherwise.
import { mkdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { chromium } from 'playwright-core';

const [base, outDir] = process.argv.slice(2);
if (!base || !outDir) {
  console.error('usage: node dashboard.mjs BASE_URL OUT_DIR');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const origin = new URL(base);
const TIMEOUT = Number(process.env.VAED_BROWSER_TIMEOUT_MS || 30000);
const failures = [];
const consoleErrors = [];
const foreign = [];
let expectErrors = false;
const posts = [];

const t0 = Date.now();
function check(ok, what) {
  if (ok) console.log(`ok (${((Date.now() - t0) / 1000).toFixed(1)} s): ${what}`);
  else { console.log(`FAIL: ${what}`); failures.push(what); }
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
    '--disable-default-apps', '--disable-sync', '--no-first-run', '--disable-extensions'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
await context.route('**/*', (route) => {
  const url = new URL(route.request().url());
  if (url.protocol === 'blob:' || url.protocol === 'data:' || url.host === origin.host) {
    if (route.request().method() === 'POST') {
      posts.push({ url: url.pathname + url.search, headers: route.request().headers(),
        body: route.request().postData() || '' });
    }
    return route.continue();
  }
  foreign.push(route.request().url());
  return route.abort();
});
const page = await context.newPage();
page.setDefaultTimeout(TIMEOUT);
page.on('console', (m) => {
  if (m.type() !== 'error') return;
  if (expectErrors && /status of 422/.test(m.text())) return; // the bad input's own answer
  consoleErrors.push(m.text());
});
page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));

// The panel is drawn for the URL as it is now (not a view before the last change).
const rendered = (panel) => page.waitForFunction((p) => document.body.dataset.rendered === p &&
  document.body.dataset.renderedHash === location.hash, panel);
// An <img> that has loaded, with a non-zero size: its natural size.
async function loaded(selector) {
  await page.waitForFunction((sel) => {
    const img = document.querySelector(sel);
    return img && img.complete && img.naturalWidth > 0 && img.src;
  }, selector);
  return page.$eval(selector, (img) => [img.naturalWidth, img.naturalHeight]);
}
// A hash of an image's pixels, as drawn.
function pixels(selector) {
  return page.$eval(selector, (img) => {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    return Array.from(ctx.getImageData(0, 0, c.width, c.height).data).join(',');
  }).then((s) => createHash('sha256').update(s).digest('hex'));
}
// Pixels of a canvas that are not the background: something was drawn.
const inked = (selector) => page.$eval(selector, (c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return n;
});
const shot = (name) => page.screenshot({ path: `${outDir}/${name}.png`, fullPage: true });
async function tab(name) {
  await page.click(`#tabs button[data-panel="${name}"]`);
  await rendered(name);
}

try {
  // ---- Models: pick a model, its numbers and curves, two versions side by side
  await page.goto(`${base}/`);
  await rendered('models');
  const newest = (await (await fetch(`${base}/models`)).json()).models
    .reduce((a, b) => (b.updated_at > a.updated_at ? b : a)).name;
  check(page.url().includes(`model=${newest}`), `with no model named, the page shows the most recently updated one (${newest})`);
  await page.goto(`${base}/#model=digits`);
  await rendered('models');
  const names = await page.$$eval('#model option', (o) => o.map((x) => x.value));
  check(names.includes('digits') && names.includes('classes'), `the picker lists the models (${names})`);
  await page.waitForSelector('#models-a .version-title');
  check(/digits version 2/.test(await page.textContent('#models-a .version-title')), 'latest is digits version 2');
  const elbo = await page.$eval('#models-a table.metrics tr td', (td) => td.textContent);
  check(/^\d+(\.\d+)?$/.test(elbo), `test −ELBO is a number (${elbo})`);
  check((await inked('#models-a canvas')) > 500, 'the per-epoch loss chart is drawn');
  await loaded('#models-a img.version-samples');
  await page.selectOption('#compare', '1');
  await page.waitForFunction(() => /version 1/.test(document.querySelector('#models-b .version-title')?.textContent || ''));
  await loaded('#models-b img.version-samples');
  check(await pixels('#models-a img.version-samples') !== await pixels('#models-b img.version-samples'),
    'versions 1 and 2 side by side draw different samples on the same seed');
  check(/compare=1/.test(page.url()) && /model=digits/.test(page.url()), 'the view is in the URL');
  await shot('models');

  // ---- Samples, reached with the keyboard: same seed same picture, new seed new one
  await page.focus('#tabs button[data-panel="models"]');
  await page.keyboard.press('ArrowRight');
  await rendered('samples');
  const [sw] = await loaded('#samples-img');
  check(sw === 4 * 28 * 2, `16 samples in 4 columns at scale 2 (${sw} px wide)`);
  const first = await pixels('#samples-img');
  await page.click('#samples-next');
  await page.waitForFunction(() => /s\.seed=2/.test(location.hash));
  await rendered('samples');
  await loaded('#samples-img');
  const second = await pixels('#samples-img');
  check(first !== second, 'a new seed draws a new grid');
  await page.fill('#samples-form input[name=seed]', '1');
  await page.press('#samples-form input[name=seed]', 'Enter');
  await page.waitForFunction(() => /s\.seed=1/.test(location.hash));
  await rendered('samples');
  await loaded('#samples-img');
  check(await pixels('#samples-img') === first, 'the same seed draws the same grid again');
  check((await page.getAttribute('#samples-img', 'alt')).includes('seed 1'), 'the grid has alt text');
  await shot('samples');
  // a conditional model: a class row; a class draws that class
  await page.selectOption('#model', 'classes');
  await page.waitForFunction(() => /model=classes/.test(location.hash));
  await rendered('samples');
  await page.waitForSelector('#samples-classes:not([hidden])');
  check((await page.$$('#samples-classes button')).length === 11, 'a conditional model shows a row of its 10 classes');
  const [allW] = await loaded('#samples-img');
  check(allW === 10 * 56, `without a class, each grid row runs through the classes (${allW} px wide)`);
  await page.click('#samples-classes button[data-label="3"]');
  await page.waitForFunction(() => /s\.label=3/.test(location.hash));
  await rendered('samples');
  await loaded('#samples-img');
  check(posts.some((p) => p.url.startsWith('/sample?') && /[?&]label=3(&|$)/.test(p.url) && /model=classes/.test(p.url)),
    'class 3 asks /sample for label=3');
  check(await page.getAttribute('#samples-classes button[data-label="3"]', 'aria-pressed') === 'true' &&
    (await page.getAttribute('#samples-img', 'alt')).includes('of class 3'), 'the class is shown as chosen');
  await shot('samples-conditional');
  await page.selectOption('#model', 'digits');
  await page.waitForFunction(() => /model=digits/.test(location.hash));
  await rendered('samples');
  check(await page.isHidden('#samples-classes'), 'an unconditional model has no class row');

  // ---- Reconstructions
  await tab('reconstructions');
  await page.fill('#recon-form input[name=last]', '7');
  await page.click('#recon-form button[type=submit]');
  await page.waitForFunction(() => /r\.last=7/.test(location.hash));
  await rendered('reconstructions');
  const [rw, rh] = await loaded('#recon-img');
  check(rw === 8 * 56 && rh === 2 * 56, `8 test images above their reconstructions (${rw}x${rh})`);
  await shot('reconstructions');

  // ---- Interpolation: pick two ends from the strip, get their strip and its tag
  await tab('interpolation');
  const [sheetW] = await loaded('#interp-sheet');
  const box = await page.$eval('#interp-sheet', (img) => { const r = img.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; });
  const cellW = box[2] / 16;
  await page.mouse.click(box[0] + cellW * 2.5, box[1] + box[3] / 2);
  await page.waitForFunction(() => /i\.from=2/.test(location.hash));
  await rendered('interpolation');
  await page.mouse.click(box[0] + cellW * 9.5, box[1] + box[3] / 2);
  await page.waitForFunction(() => /i\.to=9/.test(location.hash));
  await rendered('interpolation');
  const [iw, ih] = await loaded('#interp-img');
  const src = await page.getAttribute('#interp-img', 'src');
  check(sheetW === 16 * 56 && /from=mnist%3Atest%3A2/.test(src) && /to=mnist%3Atest%3A9/.test(src),
    `picked test images 2 and 9 from the strip (${src})`);
  check(iw === 10 * 56 && ih === 56, `the strip is 10 steps at scale 2 (${iw}x${ih})`);
  await page.click('#interp-copy');
  const tag = await page.inputValue('#interp-tag');
  check(tag === `<img src="${new URL(src, base).href.replace(/&/g, '&amp;')}" alt="interpolation from mnist test image 2 to 9">`,
    `copy <img> gives the GET /interpolate URL itself (${tag})`);
  await shot('interpolation');
  // the keyboard picks too: the third image of the page, as the next "from"
  await page.focus('#interp-sheet');
  for (let i = 0; i < 3; i++) await page.keyboard.press('ArrowRight');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => /i\.from=3/.test(location.hash));
  await rendered('interpolation');
  check(await page.inputValue('#interp-form input[name=from]') === '3', 'Enter on the strip picks the image the arrows reached');
  // two uploaded PNGs: POST /interpolate
  const png = async (i) => Buffer.from(await (await fetch(`${base}/data/mnist/test/${i}`)).arrayBuffer());
  await page.click('#panel-interpolation summary');
  await page.setInputFiles('#interp-file-a', { name: 'four.png', mimeType: 'image/png', buffer: await png(4) });
  await page.setInputFiles('#interp-file-b', { name: 'five.png', mimeType: 'image/png', buffer: await png(5) });
  await page.click('#interp-upload');
  await page.waitForFunction(() => document.querySelector('#interp-img').src.startsWith('blob:'));
  const [uw] = await loaded('#interp-img');
  check(uw === 10 * 56 && /four\.png to five\.png/.test(await page.textContent('#interp-caption')),
    'two uploaded PNGs get their strip');

  // ---- Latent traversal, then a bad input shown as the daemon's JSON error
  await tab('traversal');
  const [tw, th] = await loaded('#trav-img');
  check(tw === 9 * 56 && th === 2 * 56, `one row per latent dimension, 9 steps (${tw}x${th})`);
  await shot('traversal');
  expectErrors = true;
  await page.fill('#trav-form input[name=dims]', '7');
  await page.click('#trav-form button[type=submit]');
  await page.waitForSelector('#error:not([hidden])');
  const shown = await page.textContent('#error');
  const viaCurl = await (await fetch(`${base}/traverse?from=mnist%3Atest%3A3&dims=7&range=3&steps=9&scale=2&model=digits`)).json();
  check(shown === `422 ${viaCurl.error.code}: ${viaCurl.error.message}`,
    `a bad input shows the daemon's error to the person (${shown})`);
  await shot('traversal-error');
  expectErrors = false;

  // ---- Latent map: points, hover shows the image, click decodes, the manifold
  await tab('map');
  await page.waitForFunction(() => document.querySelector('#map-canvas').dataset.points === '3000');
  check((await inked('#map-canvas')) > 2000, 'several thousand points are drawn');
  check((await page.$$('#map-legend .legend-item')).length === 10, 'ten labels in the legend');
  const [fx, fy] = (await page.getAttribute('#map-canvas', 'data-first')).split(',').map(Number);
  const cbox = await page.$eval('#map-canvas', (c) => { const r = c.getBoundingClientRect(); return [r.left, r.top, r.width / c.width]; });
  await page.mouse.move(cbox[0] + fx * cbox[2], cbox[1] + fy * cbox[2]);
  await page.waitForSelector('#map-tip:not([hidden])');
  const [hw] = await loaded('#map-tip-img');
  check(hw === 56 && /label \d/.test(await page.textContent('#map-tip-text')), 'hovering a point shows its image and label');
  await shot('map');
  await page.mouse.click(cbox[0] + fx * cbox[2], cbox[1] + fy * cbox[2]);
  const [dw] = await loaded('#map-decoded');
  check(dw === 28 * 4, 'clicking the map decodes that point');
  await page.click('#map-grid');
  const [mw, mh] = await loaded('#map-manifold');
  check(mw === 15 * 28 && mh === 15 * 28, `the decoded manifold is a 15x15 grid (${mw}x${mh})`);
  await shot('map-manifold');
  // a conditional model's map decodes its points as the class chosen
  await page.selectOption('#model', 'classes');
  await page.waitForFunction(() => /model=classes/.test(location.hash));
  await rendered('map');
  await page.waitForSelector('#map-class-label:not([hidden])');
  await page.selectOption('#map-class', '7');
  const [gx, gy] = (await page.getAttribute('#map-canvas', 'data-first')).split(',').map(Number);
  await page.mouse.click(cbox[0] + gx * cbox[2], cbox[1] + gy * cbox[2]);
  await loaded('#map-decoded');
  const decode = posts.filter((p) => p.url.startsWith('/decode?')).pop();
  check(await page.isHidden('#error') && decode && /model=classes/.test(decode.url) && JSON.parse(decode.body).label === 7,
    'a conditional model decodes a point of its map as the class chosen');
  await page.selectOption('#model', 'digits');
  await page.waitForFunction(() => /model=digits/.test(location.hash));
  await rendered('map');

  // ---- Jobs: a short job from the form, watched to its end, then its version
  await tab('jobs');
  await page.fill('#token', 'a-token-the-tab-keeps');
  await page.press('#token', 'Enter');
  // a bad spec: the daemon's 422, shown on the page as POST /jobs answers it to anyone
  expectErrors = true;
  await page.fill('#job-form input[name=latent]', '100000');
  await page.click('#job-form button[type=submit]');
  await page.waitForSelector('#error:not([hidden])');
  const jobError = await page.textContent('#error');
  const direct = await (await fetch(`${base}/jobs`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'digits', data: 'mnist', arch: 'mlp', latent: 100000, epochs: 10, batch: 128, lr: 0.001, seed: 1,
      likelihood: 'bernoulli', beta: 1, kl_warmup: 0, hidden: [400] }) })).json();
  check(jobError === `422 ${direct.error.code}: ${direct.error.message}`, `a bad job spec shows the daemon's error (${jobError})`);
  expectErrors = false;
  await page.fill('#job-form input[name=model]', 'fresh');
  await page.fill('#job-form input[name=hidden]', '64');
  await page.fill('#job-form input[name=latent]', '2');
  await page.fill('#job-form input[name=epochs]', '8');
  // all of MNIST's training images, a few seconds on a fast machine: progress events come each second
  await page.fill('#job-form input[name=limit]', '60000');
  await page.click('#job-form button[type=submit]');
  await page.waitForFunction(() => /job=\d+/.test(location.hash));
  await page.waitForSelector('#job-state[data-state="running"], #job-state[data-state="succeeded"]');
  // the stats of a progress event, not the progress bar: the bar is full at the end too
  await page.waitForFunction(() => /images\/s/.test(document.querySelector('#job-stats').textContent)
    || document.querySelector('#job-state').dataset.state !== 'running', null, { timeout: 60000 });
  const stats = await page.textContent('#job-stats');
  check(/epoch \d+\/8, step \d+\/\d+, \d+ images\/s, ETA/.test(stats), `live progress (${stats})`);
  await page.waitForSelector('#job-state[data-state="succeeded"]', { timeout: 120000 });
  check(await page.$eval('#job-progress', (p) => p.value) === 1, 'the progress bar ends full');
  check((await inked('#job-chart')) > 500, 'the loss curves are drawn');
  await page.waitForSelector('#job-result:not([hidden])');
  check((await page.textContent('#job-result')) === 'fresh version 1', 'the finished job links to its version');
  await page.waitForFunction(() => [...document.querySelectorAll('#model option')].some((o) => o.value === 'fresh'));
  check(true, 'the new model is in the picker');
  const submit = posts.find((p) => p.url === '/jobs');
  check(submit && submit.headers['content-type'] === 'application/json' &&
    submit.headers.authorization === 'Bearer a-token-the-tab-keeps', 'POST /jobs sent JSON with the bearer token');
  check(!page.url().includes('a-token') && await page.evaluate(() => sessionStorage.getItem('vaed-token')) === 'a-token-the-tab-keeps',
    'the token is in sessionStorage and never in the URL');
  await shot('jobs');

  // ---- A long job cancelled from the page; the history shows both
  await page.fill('#job-form input[name=model]', 'long');
  await page.fill('#job-form input[name=epochs]', '200');
  await page.click('#job-form button[type=submit]');
  await page.waitForFunction(() => !/job=1(&|$)/.test(location.hash) && /job=\d+/.test(location.hash));
  await page.waitForSelector('#job-state[data-state="running"]');
  await page.click('#job-cancel');
  await page.waitForSelector('#job-state[data-state="cancelled"]');
  check(await page.isHidden('#job-result'), 'a cancelled job links to no version');
  const states = await page.$$eval('#jobs-table tbody tr td:nth-child(2)', (tds) => tds.map((t) => t.textContent));
  check(states.includes('succeeded') && states.includes('cancelled'), `the history lists both jobs (${states})`);
  await page.click('#jobs-table tbody tr:last-child button');
  await page.waitForFunction(() => /job=1(&|$)/.test(location.hash));
  await page.waitForSelector('#job-result:not([hidden])');
  await page.click('#job-result');
  await rendered('models');
  await page.waitForFunction(() => /fresh version 1/.test(document.querySelector('#models-a .version-title')?.textContent || ''));
  check(await page.$eval('#model', (s) => s.value) === 'fresh', 'the picker shows the registered version');

  // ---- A bookmarked view comes back as it was
  await page.goto(`${base}/#panel=interpolation&model=digits&i.from=5&i.to=11&i.steps=6`);
  await page.reload();
  await rendered('interpolation');
  const [bw] = await loaded('#interp-img');
  check(bw === 6 * 56 && await page.inputValue('#interp-form input[name=from]') === '5', 'a bookmarked view is restored from its URL');
} catch (e) {
  failures.push(`exception: ${e.stack || e}`);
  console.log(`FAIL: ${e.stack || e}`);
  await shot('failure').catch(() => {});
}
check(consoleErrors.length === 0, `no console errors${consoleErrors.length ? `: ${consoleErrors.join(' | ')}` : ''}`);
check(foreign.length === 0, `no request left ${origin.host}${foreign.length ? `: ${foreign.join(' ')}` : ''}`);
await browser.close();
console.log(`${failures.length ? 'FAILED' : 'passed'}: ${failures.length} failure(s)`);
process.exit(failures.length ? 1 : 0);
