// api.js: talking to the daemon that served this page, and the page's state.
//
// Every request goes to this origin. A JSON error body
// {"error":{"code","message"}} becomes an ApiError whose message is the
// daemon's, and showError puts it in front of the person. The token is kept
// in sessionStorage (this tab only) and sent as a bearer header on
// mutations; it never appears in a URL. Mutations send Content-Type
// application/json, which the daemon requires of JSON bodies.
//
// The view (panel, model, version, each panel's fields) lives in the URL's
// hash, so a view can be bookmarked and shared: getState / setState.

const TOKEN_KEY = 'vaed-token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

export function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }
export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
}

async function errorOf(resp) {
  let code = 'error', message = resp.statusText;
  try {
    const body = await resp.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch (_) { /* not JSON: keep the status text */ }
  return new ApiError(resp.status, code, message);
}

export async function request(path, { method = 'GET', json, body, type } = {}) {
  const headers = {};
  if (json !== undefined) { headers['Content-Type'] = 'application/json'; body = JSON.stringify(json); }
  else if (type) headers['Content-Type'] = type;
  if (method !== 'GET' && token()) headers.Authorization = `Bearer ${token()}`;
  const resp = await fetch(path, { method, headers, body });
  if (!resp.ok) throw await errorOf(resp);
  return resp;
}

export async function getJSON(path) { return (await request(path)).json(); }
export async function postJSON(path, json) { return (await request(path, { method: 'POST', json })).json(); }

// An image answer of a POST (blob URL for an <img>); the previous URL of img is freed.
export async function postImage(img, path, options = {}) {
  const resp = await request(path, { method: 'POST', ...options });
  const url = URL.createObjectURL(await resp.blob());
  if (img.src.startsWith('blob:')) URL.revokeObjectURL(img.src);
  img.src = url;
  return resp;
}

// A GET image: the URL is the <img>'s src itself; a failure fetches the same
// URL to read the JSON error, and resolves either way once settled.
export function showImage(img, path, alt) {
  img.alt = alt;
  return new Promise((resolve) => {
    img.onload = () => { img.dataset.ok = '1'; resolve(true); };
    img.onerror = async () => {
      img.dataset.ok = '0';
      try { await request(path); } catch (e) { showError(e); }
      resolve(false);
    };
    delete img.dataset.ok;
    img.src = path;
  });
}

export function showError(e) {
  const box = document.getElementById('error');
  box.textContent = e instanceof ApiError ? e.message : String(e && e.message ? e.message : e);
  box.hidden = false;
}
export function clearError() {
  const box = document.getElementById('error');
  box.hidden = true;
  box.textContent = '';
}

export function getState() { return new URLSearchParams(location.hash.slice(1)); }
export function setState(changes, { replace = false } = {}) {
  const s = getState();
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined || v === '') s.delete(k); else s.set(k, String(v));
  }
  const hash = '#' + s.toString();
  if (hash === location.hash) return false;
  if (replace) history.replaceState(null, '', hash); else location.hash = hash;
  return true;
}

// ?model=&version= of the model chosen in the header.
export function modelQuery() {
  const s = getState(), q = new URLSearchParams();
  if (s.get('model')) q.set('model', s.get('model'));
  if (s.get('version')) q.set('version', s.get('version'));
  return q;
}

export function withQuery(path, params) {
  const q = params.toString();
  return q ? `${path}?${q}` : path;
}

// Form fields from the state (names prefixed), and back.
export function fillForm(form, prefix) {
  const s = getState();
  for (const el of form.elements) {
    if (el.name && s.has(prefix + el.name)) el.value = s.get(prefix + el.name);
  }
}
export function formState(form, prefix) {
  const out = {};
  for (const el of form.elements) if (el.name) out[prefix + el.name] = el.value;
  return out;
}
