// The web terminal: sign in with an API key, follow your runs, trigger deployments, open assets.
// Everything goes through the same JSON API as any other client; server text is only ever set
// with textContent (never as HTML).
import { createViewer } from './viewer.js';
import {
  $, api, apiKey, authHeaders, clearApiKey, el, formatBytes, formatTime, onUnauthorized, renderNav, setApiKey,
} from './common.js';

const POLL_MS = 3000;

// --- sign in / out ---------------------------------------------------------------------
let pollTimer = null;
let viewer = null;

async function signIn(key) {
  setApiKey(key);
  try {
    const me = await api('/me');
    $('who').textContent = `${me.name}${me.is_admin ? ' (admin)' : ''}`;
    $('who').hidden = false;
    $('sign-out').hidden = false;
    $('sign-in').hidden = true;
    $('terminal').hidden = false;
    $('sign-in-error').textContent = '';
    await Promise.all([refreshRuns(), refreshAssets(), loadDeployments()]);
    pollTimer = setInterval(refreshRuns, POLL_MS);
  } catch (err) {
    clearApiKey();
    $('sign-in-error').textContent = err.detail || String(err);
  }
}

function signOut(reason) {
  clearApiKey();
  clearInterval(pollTimer);
  $('terminal').hidden = true;
  $('sign-in').hidden = false;
  $('who').hidden = true;
  $('sign-out').hidden = true;
  if (reason) $('sign-in-error').textContent = reason;
}

// --- runs -------------------------------------------------------------------------------
let selectedRun = null;

async function refreshRuns() {
  const runs = await api('/runs?limit=50');
  const body = $('runs').querySelector('tbody');
  body.replaceChildren(...runs.map((run) => {
    const row = el('tr');
    row.dataset.runId = run.id;
    row.append(el('td', run.id.slice(0, 8)), el('td', run.deployment || run.flow_name));
    const state = el('td');
    state.append(el('span', run.state_name || run.state, `state ${run.state}`));
    row.append(state, el('td', formatTime(run.started_at)));
    row.addEventListener('click', () => showRun(run));
    return row;
  }));
  $('runs-empty').hidden = runs.length > 0;
  $('runs-updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  if (selectedRun) {
    const fresh = runs.find((r) => r.id === selectedRun);
    if (fresh) showRun(fresh);
  }
}

async function showRun(run) {
  selectedRun = run.id;
  $('run-detail').hidden = false;
  $('run-detail-title').textContent = `${run.deployment || run.flow_name} · ${run.state_name || run.state}`;
  $('run-detail-ui').href = run.ui_url;
  const logs = await api(`/runs/${run.id}/logs?limit=200`);
  $('run-logs').textContent = logs.length
    ? logs.map((l) => `${new Date(l.timestamp).toLocaleTimeString()} ${l.level_name} ${l.message}`).join('\n')
    : '(no log lines yet)';
}

// --- trigger ----------------------------------------------------------------------------
let deployments = [];

async function loadDeployments() {
  deployments = await api('/deployments');
  const select = $('deployment');
  select.replaceChildren(...deployments.map((d) => {
    const option = el('option', d.name);
    option.value = d.name;
    return option;
  }));
  renderParameterFields();
}

function renderParameterFields() {
  const deployment = deployments.find((d) => d.name === $('deployment').value);
  const fields = $('parameter-fields');
  fields.replaceChildren();
  if (!deployment) return;
  const schema = deployment.parameter_schema || {};
  const required = new Set(schema.required || []);
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    const label = el('label', `${name}${required.has(name) ? ' *' : ''} (${prop.type || 'json'})`);
    const input = el('input');
    input.name = name;
    input.dataset.type = prop.type || 'json';
    if (prop.default !== undefined) input.value = typeof prop.default === 'string' ? prop.default : JSON.stringify(prop.default);
    label.append(input);
    fields.append(label);
  }
}

function readParameters() {
  const parameters = {};
  for (const input of $('parameter-fields').querySelectorAll('input')) {
    if (input.value === '') continue;
    const type = input.dataset.type;
    if (type === 'string') parameters[input.name] = input.value;
    else {
      try { parameters[input.name] = JSON.parse(input.value); } catch { parameters[input.name] = input.value; }
    }
  }
  return parameters;
}

async function triggerRun(event) {
  event.preventDefault();
  const result = $('trigger-result');
  result.className = '';
  try {
    const run = await api('/runs', { method: 'POST', json: { flow: $('deployment').value, parameters: readParameters() } });
    result.textContent = `started ${run.id.slice(0, 8)} (${run.state})`;
    await refreshRuns();
  } catch (err) {
    result.className = 'error';
    result.textContent = err.detail || String(err);
  }
}

// --- assets -----------------------------------------------------------------------------
async function refreshAssets() {
  const assets = await api('/assets?limit=200');
  const body = $('assets').querySelector('tbody');
  body.replaceChildren(...assets.map((asset) => {
    const row = el('tr');
    row.dataset.key = asset.key;
    const name = asset.key.split('/').pop();
    row.append(el('td', `${name.slice(0, 10)}….${name.split('.').pop()}`), el('td', asset.kind), el('td', formatBytes(asset.bytes)));
    const actions = el('td');
    const download = el('button', 'download', 'link');
    download.type = 'button';
    download.addEventListener('click', (e) => { e.stopPropagation(); downloadAsset(asset.key); });
    actions.append(download);
    row.append(actions);
    row.addEventListener('click', () => openAsset(asset));
    return row;
  }));
  $('assets-empty').hidden = assets.length > 0;
}

const contentUrl = (key) => `/assets/${key}/content`;

async function openAsset(asset) {
  const status = $('viewer-status');
  const preview = $('image-preview');
  if (asset.key.endsWith('.glb')) {
    preview.hidden = true;
    try {
      if (!viewer) viewer = createViewer($('viewer'), { headers: authHeaders() });
      viewer.setHeaders(authHeaders());
      status.textContent = `loading ${asset.key.split('/').pop().slice(0, 12)}…`;
      await viewer.load(contentUrl(asset.key));
      status.textContent = `${asset.kind} · ${formatBytes(asset.bytes)} · drag to orbit`;
    } catch (err) {
      status.textContent = `cannot show this model: ${err.message || err}`;
    }
  } else if (asset.content_type.startsWith('image/')) {
    const response = await fetch(contentUrl(asset.key), { headers: authHeaders() });
    preview.src = URL.createObjectURL(await response.blob());
    preview.hidden = false;
    status.textContent = asset.kind;
  } else {
    await downloadAsset(asset.key);
  }
}

async function downloadAsset(key) {
  const { url } = await api(`/assets/${key}/url`);
  window.open(url, '_blank', 'noopener');
}

async function upload(event) {
  event.preventDefault();
  const file = $('upload-file').files[0];
  const result = $('upload-result');
  if (!file) return;
  const form = new FormData();
  form.append('file', file);
  result.className = '';
  try {
    const asset = await api('/uploads', { method: 'POST', body: form });
    result.textContent = `stored ${asset.key.split('/').pop().slice(0, 12)}… (${formatBytes(asset.bytes)})`;
    await refreshAssets();
  } catch (err) {
    result.className = 'error';
    result.textContent = err.detail || String(err);
  }
}

// --- wiring -----------------------------------------------------------------------------
$('sign-in-form').addEventListener('submit', (event) => {
  event.preventDefault();
  signIn($('api-key').value.trim());
});
$('sign-out').addEventListener('click', () => signOut());
$('deployment').addEventListener('change', renderParameterFields);
$('trigger-form').addEventListener('submit', triggerRun);
$('upload-form').addEventListener('submit', upload);

onUnauthorized((detail) => signOut(detail));
renderNav();
const reason = new URLSearchParams(window.location.search).get('reason');
if (reason) $('sign-in-error').textContent = reason;
if (apiKey()) signIn(apiKey());
