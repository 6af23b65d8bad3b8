// Shared by every page of the web terminal: the API key (sessionStorage), the JSON API client,
// DOM helpers and the page navigation. Server text is only ever set with textContent.

export const KEY_STORAGE = 'gaiverse.apiKey';
export const $ = (id) => document.getElementById(id);

/** The terminal's pages: index.html plus one page per capability (each its own HTML + JS file). */
export const PAGES = [
  { href: '/', label: 'Runs & assets' },
  { href: '/web/personal.html', label: 'For you' },
  { href: '/web/npc.html', label: 'NPCs' },
  { href: '/web/world.html', label: 'Worlds' },
  { href: '/web/knowledge.html', label: 'Knowledge' },
  { href: '/web/avatar.html', label: 'Avatar' },
  { href: '/web/room.html', label: 'Your room' },
];

export class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

export const apiKey = () => sessionStorage.getItem(KEY_STORAGE);
export const setApiKey = (key) => sessionStorage.setItem(KEY_STORAGE, key);
export const clearApiKey = () => sessionStorage.removeItem(KEY_STORAGE);
export const authHeaders = () => ({ Authorization: `Bearer ${apiKey()}` });

let unauthorized = (detail) => { clearApiKey(); window.location.href = `/?reason=${encodeURIComponent(detail)}`; };
/** Replace what a 401 does (index.html shows its sign-in form instead of redirecting). */
export function onUnauthorized(handler) { unauthorized = handler; }

/** Call the JSON API; throws ApiError(status, detail) on any non-2xx answer. */
export async function api(path, { method = 'GET', json, body, headers: extra = {} } = {}) {
  const headers = { ...authHeaders(), ...extra };
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  const response = await fetch(path, { method, headers, body });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail ?? detail; } catch { /* not JSON */ }
    if (response.status === 401) unauthorized(detail);
    throw new ApiError(response.status, detail);
  }
  const type = response.headers.get('Content-Type') || '';
  return type.includes('application/json') ? response.json() : response;
}

export function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 ** 2).toFixed(1)} MB`;
}

export const formatTime = (iso) => (iso ? new Date(iso).toLocaleString() : '—');

/** Fill <nav id="pages"> with links to every page, marking the current one. */
export function renderNav() {
  const nav = $('pages');
  if (!nav) return;
  nav.replaceChildren(...PAGES.map((page) => {
    const link = el('a', page.label);
    link.href = page.href;
    if (page.href === window.location.pathname) link.setAttribute('aria-current', 'page');
    return link;
  }));
}

/**
 * For pages other than index.html: show who is signed in and wire "Sign out"; without a key,
 * go to the sign-in page. Resolves to the /me record.
 */
export async function requireSignIn() {
  renderNav();
  if (!apiKey()) {
    window.location.href = '/';
    return new Promise(() => {});
  }
  const me = await api('/me');
  const who = $('who');
  if (who) { who.textContent = `${me.name}${me.is_admin ? ' (admin)' : ''}`; who.hidden = false; }
  const out = $('sign-out');
  if (out) {
    out.hidden = false;
    out.addEventListener('click', () => { clearApiKey(); window.location.href = '/'; });
  }
  return me;
}

/** Set the status line ``id`` (class ``status <kind>``: busy, ok or error). */
export function status(id, text, kind = 'ok') {
  const line = $(id);
  line.textContent = text;
  line.className = `status ${kind}`;
}

/** Run one action with its status line: busy text, then its result text, or the API's error detail. */
export async function act(id, busy, fn) {
  status(id, busy, 'busy');
  try {
    const done = await fn();
    if (typeof done === 'string') status(id, done, 'ok');
    return true;
  } catch (err) {
    status(id, err instanceof ApiError ? err.detail : String(err.message || err), 'error');
    return false;
  }
}
