// "For you": consent, talk and show (text, image, voice note, audio/video), your history with what was
// derived from it, your profile in words, recommendations with reasons, quests, the task repository,
// export and erasure. Everything goes through /personalization; server text is set with textContent only.
import { $, ApiError, act, api, authHeaders, clearApiKey, el, formatTime, requireSignIn, status } from './common.js';
import { blobToWav, isWav } from './wav.js';

const P = '/personalization';
const MAX_RECORD_MS = 30000;
let me = null;
let session = null;
let currentQuest = null;

// --- consent --------------------------------------------------------------------------------
async function loadConsent() {
  const consent = await api(`${P}/consent`);
  $('policy').textContent = `policy ${consent.policy_version}`;
  $('consents').replaceChildren(...Object.entries(consent.purposes).map(([purpose, what]) => {
    const label = el('label', null, 'consent');
    const box = el('input');
    box.type = 'checkbox';
    box.dataset.purpose = purpose;
    box.checked = Boolean(consent.current[purpose]);
    box.addEventListener('change', () => setConsent(purpose, box.checked));
    label.append(box, el('strong', purpose), el('span', ` — ${what}`, 'hint'));
    return label;
  }));
  return consent;
}

async function setConsent(purpose, granted) {
  await act('consent-status', `${granted ? 'granting' : 'withdrawing'} ${purpose}…`, async () => {
    await api(`${P}/consent/${purpose}`, { method: granted ? 'PUT' : 'DELETE' });
    await loadConsent();
    refreshAfterInput();
    return `${purpose} ${granted ? 'granted' : 'withdrawn'}`;
  });
}

async function grantAll() {
  await act('consent-status', 'granting every purpose…', async () => {
    const consent = await api(`${P}/consent`);
    for (const purpose of Object.keys(consent.purposes)) {
      if (!consent.current[purpose]) await api(`${P}/consent/${purpose}`, { method: 'PUT' });
    }
    await loadConsent();
    refreshAfterInput();
    return 'every purpose granted';
  });
}

// --- talking and showing ------------------------------------------------------------------------
function chatLine(who, text) {
  const item = el('li', null, who);
  item.append(el('span', who === 'you' ? 'you' : 'gaiverse', 'speaker'), el('span', text));
  $('chat').append(item);
  item.scrollIntoView({ block: 'nearest' });
}

async function sendText(event) {
  event.preventDefault();
  const text = $('chat-text').value.trim();
  if (!text) return;
  const ok = await act('chat-status', 'sending…', async () => {
    await api(`${P}/interactions`, { method: 'POST', json: { text, session_id: session } });
    chatLine('you', text);
    $('chat-text').value = '';
    return 'stored; your profile and recommendations are updating';
  });
  if (ok) await refreshAfterInput(true);
}

async function uploadMedia(statusId, blob, filename, text) {
  const form = new FormData();
  form.append('file', blob, filename);
  const params = new URLSearchParams({ session_id: session });
  if (text) params.set('text', text);
  const it = await api(`${P}/interactions/media?${params}`, { method: 'POST', body: form });
  const heard = it.features.transcript ? ` — heard: “${it.features.transcript}”` : '';
  chatLine('you', `[${it.modality}] ${filename}${heard}`);
  return it;
}

async function sendImage(event) {
  event.preventDefault();
  const file = $('image-file').files[0];
  if (!file) return;
  const ok = await act('image-status', `uploading ${file.name}…`, async () => {
    const it = await uploadMedia('image-status', file, file.name, $('image-caption').value.trim());
    $('image-form').reset();
    const hue = it.features.dominant_hue ? `, mostly ${it.features.dominant_hue}` : '';
    return `image stored (${it.features.width}×${it.features.height}${hue})`;
  });
  if (ok) await refreshAfterInput(true);
}

async function sendMediaFile(event) {
  event.preventDefault();
  const file = $('media-file').files[0];
  if (!file) return;
  const ok = await act('voice-status', `preparing ${file.name}…`, async () => {
    let blob = file;
    let name = file.name;
    if (file.type.startsWith('audio/') && !isWav(file)) {  // the API takes WAV: convert other audio here
      status('voice-status', `converting ${file.name} to WAV…`, 'busy');
      blob = await blobToWav(file);
      name = `${name.replace(/\.[^.]+$/, '')}.wav`;
    }
    status('voice-status', `uploading ${name}…`, 'busy');
    const it = await uploadMedia('voice-status', blob, name, $('media-text').value.trim());
    $('media-form').reset();
    return describeStored(it);
  });
  if (ok) await refreshAfterInput(true);
}

function describeStored(it) {
  const f = it.features;
  const parts = [`${it.modality} stored`];
  const seconds = f.duration_s ?? f.video?.duration_s;
  if (seconds) parts.push(`${Number(seconds).toFixed(1)} s`);
  if (f.pitch_hz) parts.push(`pitch ${Math.round(f.pitch_hz)} Hz`);
  if (f.transcript) parts.push(`transcript “${f.transcript}”`);
  return parts.join(', ');
}

// voice notes: MediaRecorder captures the microphone; the browser converts it to 16-bit PCM WAV
const recording = { recorder: null, stream: null, chunks: [], started: 0, timer: null };

async function startRecording() {
  await act('voice-status', 'asking for the microphone…', async () => {
    recording.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    recording.chunks = [];
    recording.recorder = new MediaRecorder(recording.stream);
    recording.recorder.ondataavailable = (e) => { if (e.data.size) recording.chunks.push(e.data); };
    recording.recorder.start(250);
    recording.started = performance.now();
    recording.timer = setInterval(tick, 200);
    $('record').disabled = true;
    $('stop').disabled = false;
    $('record').classList.add('recording');
    return 'recording… press “Stop and send” when you are done';
  });
}

function tick() {
  const ms = performance.now() - recording.started;
  $('record-time').textContent = `${(ms / 1000).toFixed(1)} s`;
  if (ms > MAX_RECORD_MS) stopRecording();
}

async function stopRecording() {
  const { recorder } = recording;
  if (!recorder || recorder.state === 'inactive') return;
  clearInterval(recording.timer);
  $('stop').disabled = true;
  $('record').classList.remove('recording');
  const stopped = new Promise((resolve) => { recorder.onstop = resolve; });
  recorder.stop();
  await stopped;
  recording.stream.getTracks().forEach((track) => track.stop());
  const ok = await act('voice-status', 'converting the recording to WAV…', async () => {
    const wav = await blobToWav(new Blob(recording.chunks, { type: recorder.mimeType }));
    status('voice-status', `uploading the voice note (${(wav.size / 1024).toFixed(0)} KB)…`, 'busy');
    const it = await uploadMedia('voice-status', wav, 'voice-note.wav', $('media-text').value.trim());
    return `voice note: ${describeStored(it)}`;
  });
  $('record').disabled = false;
  $('record-time').textContent = '';
  if (ok) await refreshAfterInput(true);
}

// --- profile, recommendations, history -------------------------------------------------------
async function loadProfile() {
  try {
    const profile = await api(`${P}/profile`);
    $('description').textContent = profile.description;
    const bars = (items) => items.map(({ tag, score }) => {
      const item = el('li');
      const bar = el('span', null, 'bar');
      bar.style.width = `${Math.max(4, Math.min(100, Math.abs(score) * 100))}%`;
      item.append(el('span', tag, 'tag'), bar);
      return item;
    });
    $('interests').replaceChildren(...bars(profile.interests));
    $('aversions').replaceChildren(...bars(profile.aversions));
    const modes = Object.entries(profile.modality_counts).map(([m, n]) => `${m} ${n}`).join(', ') || 'none';
    $('profile-facts').textContent = `${profile.n_inputs} inputs in ${profile.n_sessions} sessions (${modes}); `
      + `difficulty ${profile.difficulty}, sessions of ~${profile.length_minutes} min, `
      + `${profile.social >= 0.5 ? 'with others' : 'solo'} (${profile.social})`;
    $('profile-updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 403) throw err;
    $('description').textContent = `(${err.detail})`;
  }
}

function taskItem(task, extra) {
  const item = el('li');
  item.dataset.taskId = task.task_id;
  const head = el('div', null, 'task-head');
  head.append(el('strong', task.title), el('span', `${task.kind} · difficulty ${task.difficulty} · `
    + `${task.length_minutes} min · ${task.provenance}${task.made_for_you ? ' (made for you)' : ''}`, 'hint'));
  item.append(head, el('p', task.description, 'task-text'));
  const tags = el('div', null, 'tags');
  tags.append(...task.tags.map((t) => el('span', t, 'chip')));
  item.append(tags);
  if (extra) item.append(extra);
  return item;
}

async function loadRecommendations() {
  const recs = await api(`${P}/recommendations?k=6`);
  $('recommendations').replaceChildren(...recs.map((rec) => {
    const extra = el('div');
    extra.append(el('p', rec.reason, 'reason'));
    if (rec.adjustments.length) extra.append(el('p', `adjusted for you: ${rec.adjustments.join('; ')}`, 'hint'));
    const accept = el('button', 'Accept');
    accept.type = 'button';
    accept.className = 'small';
    accept.addEventListener('click', () => taskEvent(rec.task, 'accept', 'recs-status'));
    extra.append(accept);
    return taskItem(rec.task, extra);
  }));
  $('recs-updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
}

const FEATURE_ORDER = ['transcript', 'caption', 'ocr_text', 'dominant_hue', 'dominant_colours', 'brightness',
  'expression', 'n_faces', 'duration_s', 'pitch_hz', 'rms_dbfs', 'words', 'video', 'frames'];
const HIDDEN = new Set(['media', 'asr', 'faces', 'segments', 'analysis_errors', 'chars']);

function featureView(features) {
  const box = el('div', null, 'features');
  const keys = [...FEATURE_ORDER.filter((k) => k in features),
    ...Object.keys(features).filter((k) => !FEATURE_ORDER.includes(k))].filter((k) => !HIDDEN.has(k));
  for (const key of keys) {
    const value = features[key];
    if (value === null || value === undefined || value === '') continue;
    const chip = el('span', null, `feature f-${key}`);
    chip.dataset.feature = key;
    chip.append(el('b', `${key.replace(/_/g, ' ')} `));
    if (key === 'dominant_colours' && Array.isArray(value)) {
      for (const colour of value.slice(0, 5)) {
        const swatch = el('span', null, 'swatch');
        swatch.style.background = /^#[0-9a-f]{6}$/i.test(colour) ? colour : 'transparent';
        swatch.title = colour;
        chip.append(swatch);
      }
    } else if (key === 'frames' && Array.isArray(value)) {
      chip.append(el('span', `${value.length} sampled`));
    } else if (typeof value === 'number') {
      chip.append(el('span', Number.isInteger(value) ? String(value) : value.toFixed(2)));
    } else if (typeof value === 'object') {
      chip.append(el('span', Object.entries(value).filter(([, v]) => typeof v !== 'object')
        .map(([k, v]) => `${k} ${typeof v === 'number' ? +v.toFixed(2) : v}`).join(', ')));
    } else {
      chip.append(el('span', String(value)));
    }
    box.append(chip);
  }
  if (features.analysis_errors) box.append(el('span', `not analysed: ${Object.keys(features.analysis_errors).join(', ')}`, 'hint'));
  return box;
}

const thumbs = new Map();

async function thumbnail(it) {
  if (!thumbs.has(it.interaction_id)) {
    const response = await fetch(`${P}/interactions/${it.interaction_id}/media`, { headers: authHeaders() });
    thumbs.set(it.interaction_id, response.ok ? URL.createObjectURL(await response.blob()) : null);
  }
  const url = thumbs.get(it.interaction_id);
  if (!url) return null;
  const img = el('img', null, 'thumb');
  img.src = url;
  img.alt = 'your image';
  return img;
}

async function loadHistory() {
  let items = [];
  try {
    items = await api(`${P}/interactions?limit=50`);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 403) throw err;
  }
  const rows = await Promise.all(items.slice().reverse().map(async (it) => {
    const row = el('tr');
    row.dataset.interactionId = it.interaction_id;
    row.dataset.modality = it.modality;
    const said = el('td', null, 'said');
    if (it.text) said.append(el('span', it.text));
    if (it.item_id) said.append(el('span', `${it.event} ${it.item_id}`, 'hint'));
    if (it.has_media && it.modality === 'image') {
      const img = await thumbnail(it);
      if (img) said.append(img);
    } else if (it.has_media) {
      said.append(el('span', `[${it.modality}${it.features.media ? ` · ${it.features.media.ext}` : ''}]`, 'hint'));
    }
    const feats = el('td');
    feats.append(featureView(it.features));
    row.append(el('td', formatTime(it.ts)), el('td', `${it.modality} · ${it.event}`), said, feats);
    return row;
  }));
  $('history').querySelector('tbody').replaceChildren(...rows);
  $('history-empty').hidden = rows.length > 0;
}

let refreshing = Promise.resolve();

/** After every input the profile, recommendations and history are read again (they change at once). */
function refreshAfterInput(wait = false) {
  refreshing = refreshing.then(async () => {
    status('recs-status', 'updating your recommendations…', 'busy');
    try {
      await Promise.all([loadProfile(), loadRecommendations(), loadHistory()]);
      status('recs-status', 'up to date with your latest input', 'ok');
    } catch (err) {
      status('recs-status', err instanceof ApiError ? err.detail : String(err), 'error');
    }
  });
  return wait ? refreshing : undefined;
}

// --- quests, tasks, repository -------------------------------------------------------------------
async function generateQuest() {
  await act('quest-status', 'generating a quest from your preferences…', async () => {
    const [quest] = await api(`${P}/quests?n=1`, { method: 'POST' });
    currentQuest = quest;
    $('quest').hidden = false;
    $('quest').dataset.taskId = quest.task.task_id;
    $('quest-title').textContent = quest.task.title;
    $('quest-description').textContent = quest.task.description;
    $('quest-motivation').textContent = `motivation: ${quest.motivation} · strategy: ${quest.strategy}`;
    $('quest-steps').replaceChildren(...quest.steps.map((s) => el('li', s.text)));
    $('accept-quest').disabled = false;
    return `quest “${quest.task.title}” generated and stored in the task repository`;
  });
}

async function taskEvent(task, event, statusId) {
  const ok = await act(statusId, `${event}ing “${task.title}”…`, async () => {
    await api(`${P}/tasks/${encodeURIComponent(task.task_id)}/${event}`, { method: 'POST' });
    return `${event}ed “${task.title}”`;
  });
  if (ok) await refreshAfterInput(true);
  return ok;
}

async function acceptQuest() {
  if (!currentQuest) return;
  $('accept-quest').disabled = true;
  const task = currentQuest.task;
  if (await taskEvent(task, 'accept', 'quest-status')) {
    status('quest-status', `accepted “${task.title}”: it is in the task repository below`, 'ok');
    $('repo-query').value = task.title;
    $('repo-provenance').value = 'generated';
    await searchRepository();
  } else {
    $('accept-quest').disabled = false;
  }
}

async function searchRepository(event) {
  if (event) event.preventDefault();
  await act('repo-status', 'searching…', async () => {
    const params = new URLSearchParams({ k: '10' });
    const query = $('repo-query').value.trim();
    if (query) params.set('query', query);
    if ($('repo-provenance').value) params.set('provenance', $('repo-provenance').value);
    const hits = await api(`${P}/tasks?${params}`);
    $('repo-results').replaceChildren(...hits.map((hit) => taskItem(hit.task, el('p', `score ${hit.score.toFixed(3)}`, 'hint'))));
    return `${hits.length} tasks found`;
  });
}

// --- export and erasure ------------------------------------------------------------------------
async function exportData() {
  await act('data-status', 'collecting everything held about you…', async () => {
    const data = await api(`${P}/export`);
    const blob = new Blob([JSON.stringify(data, null, 1)], { type: 'application/json' });
    const link = $('export-link');
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.hidden = false;
    link.textContent = `download (${(blob.size / 1024).toFixed(1)} KB)`;
    link.click();
    return `export ready: ${data.interactions.length} interactions, ${Object.keys(data).length} sections`;
  });
}

async function eraseData(event) {
  event.preventDefault();
  const name = $('erase-confirm').value.trim();
  if (name !== me.name) {
    status('data-status', `type your user name “${me.name}” exactly to confirm`, 'error');
    return;
  }
  if (!window.confirm('Erase everything held about you, including your account? This cannot be undone.')) return;
  await act('data-status', 'erasing…', async () => {
    const done = await api(`${P}/data?confirm=${encodeURIComponent(name)}`, { method: 'DELETE' });
    clearApiKey();
    document.body.classList.add('erased');
    for (const button of document.querySelectorAll('main button, main input, main select')) button.disabled = true;
    // what was shown came from the erased data: clear it from the page too
    for (const id of ['chat', 'interests', 'aversions', 'recommendations', 'repo-results', 'quest-steps']) {
      $(id).replaceChildren();
    }
    $('history').querySelector('tbody').replaceChildren();
    $('history-empty').hidden = false;
    $('quest').hidden = true;
    $('description').textContent = '(erased)';
    $('profile-facts').textContent = '';
    return `erased: ${done.interactions} interactions, ${done.media_objects} media objects, `
      + `${done.tasks} tasks, ${done.catalog_rows} catalog rows; your account is deleted and you are signed out`;
  });
}

// --- start ---------------------------------------------------------------------------------------
async function main() {
  me = await requireSignIn();
  session = `web-${new Date().toISOString().slice(0, 10)}`;
  $('grant-all').addEventListener('click', grantAll);
  $('chat-form').addEventListener('submit', sendText);
  $('image-form').addEventListener('submit', sendImage);
  $('media-form').addEventListener('submit', sendMediaFile);
  $('record').addEventListener('click', startRecording);
  $('stop').addEventListener('click', stopRecording);
  $('generate').addEventListener('click', generateQuest);
  $('accept-quest').addEventListener('click', acceptQuest);
  $('repo-form').addEventListener('submit', searchRepository);
  $('export').addEventListener('click', exportData);
  $('erase-form').addEventListener('submit', eraseData);
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    $('record').disabled = true;
    status('voice-status', 'this browser cannot record audio here; upload a file instead', 'error');
  }
  await loadConsent();
  await refreshAfterInput(true);
  document.body.dataset.ready = 'true';
}

main().catch((err) => {
  document.body.dataset.ready = 'error';
  status('consent-status', err instanceof ApiError ? err.detail : String(err), 'error');
});
