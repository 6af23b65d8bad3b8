// Avatar capture (AV-a1..a3): a guided recording with live feedback computed here in the browser — face
// found and centred, lighting, sharpness, audio level and clipping, progress per step — uploaded to
// POST /avatars/captures, which checks it again (server confirmation); then the avatar flow's progress
// streams back (server-sent events) and the analysis and decided parameters are shown. Then the avatar
// itself (AV-c1, AV-c3): played live (avatar_player.js: its voice with lip sync), its turntable, presets and
// sliders that each make a new version (POST /avatars/{id}/customise), the versions with rollback, and
// downloads (.glb, VRM, voice, turntable). Server text is only ever set with textContent.
import { $, ApiError, api, authHeaders, el, requireSignIn, status } from './common.js';

const STEPS = [
  { id: 'straight', text: 'Look straight into the camera', seconds: 2.5, needs: 'face' },
  { id: 'left', text: 'Turn your head slowly to the left', seconds: 2, needs: 'time' },
  { id: 'right', text: 'Turn your head slowly to the right', seconds: 2, needs: 'time' },
  { id: 'read', text: 'Read the sentence below aloud', seconds: 2, needs: 'voice', sentence: true },
  { id: 'wishes', text: 'Say how you want your avatar to look and sound', seconds: 1.5, needs: 'voice' },
];
const TICK_MS = 100;
const VOICE_DBFS = -42;          // RMS above this counts as speaking
const CLIP_LEVEL = 0.99;         // |sample| at or above this is clipping
const LUMA_OK = [60, 200];       // mean luma of a well lit frame
const SHARP_OK = 40;             // Laplacian variance on the 160x120 grey frame
const CENTRE_TOLERANCE = 0.18;   // face centre within this share of the frame from its centre

const state = { stream: null, recorder: null, chunks: [], analyser: null, detector: null, step: -1,
  progress: STEPS.map(() => 0), live: {}, timer: null, measuring: false };

// --- live feedback ------------------------------------------------------------------------------
const work = document.createElement('canvas');
work.width = 160; work.height = 120;
const workCtx = work.getContext('2d', { willReadFrequently: true });

/** Face box in 0..1 frame units: the FaceDetector API when the browser has it, else a skin-colour centroid. */
async function findFace(video, pixels) {
  if (state.detector) {
    try {
      const faces = await state.detector.detect(video);
      if (!faces.length) return null;
      const b = faces[0].boundingBox;
      return { x: b.x / video.videoWidth, y: b.y / video.videoHeight, w: b.width / video.videoWidth, h: b.height / video.videoHeight };
    } catch { state.detector = null; }
  }
  // skin pixels by the YCbCr rule of Chai & Ngan (Cb 77..127, Cr 133..173), then their bounding box
  let n = 0, sx = 0, sy = 0, x0 = work.width, y0 = work.height, x1 = 0, y1 = 0;
  for (let y = 0; y < work.height; y += 1) {
    for (let x = 0; x < work.width; x += 1) {
      const i = (y * work.width + x) * 4;
      const r = pixels[i], g = pixels[i + 1], b = pixels[i + 2];
      const cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b;
      const cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b;
      if (cb >= 77 && cb <= 127 && cr >= 133 && cr <= 173) {
        n += 1; sx += x; sy += y;
        x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
      }
    }
  }
  const share = n / (work.width * work.height);
  if (share < 0.03 || share > 0.6) return null;
  const cx = sx / n / work.width, cy = sy / n / work.height;
  const w = Math.min(0.6, (x1 - x0) / work.width), h = Math.min(0.7, (y1 - y0) / work.height);
  return { x: cx - w / 2, y: cy - h / 2, w, h };
}

function lumaAndSharpness(pixels) {
  const W = work.width, H = work.height, grey = new Float32Array(W * H);
  let sum = 0;
  for (let i = 0; i < W * H; i += 1) {
    grey[i] = 0.299 * pixels[4 * i] + 0.587 * pixels[4 * i + 1] + 0.114 * pixels[4 * i + 2];
    sum += grey[i];
  }
  let m = 0, m2 = 0, count = 0;
  for (let y = 1; y < H - 1; y += 1) {
    for (let x = 1; x < W - 1; x += 1) {
      const i = y * W + x;
      const lap = grey[i - 1] + grey[i + 1] + grey[i - W] + grey[i + W] - 4 * grey[i];
      m += lap; m2 += lap * lap; count += 1;
    }
  }
  m /= count;
  return { luma: sum / (W * H), sharpness: m2 / count - m * m };
}

function audioLevel() {
  if (!state.analyser) return { dbfs: -120, clipping: false };
  const data = new Float32Array(state.analyser.fftSize);
  state.analyser.getFloatTimeDomainData(data);
  let sq = 0, clipped = 0;
  for (const v of data) { sq += v * v; if (Math.abs(v) >= CLIP_LEVEL) clipped += 1; }
  const rms = Math.sqrt(sq / data.length);
  return { dbfs: rms > 0 ? 20 * Math.log10(rms) : -120, clipping: clipped > 3 };
}

function meter(id, text, ok) {
  const node = $(id);
  node.querySelector('.value').textContent = text;
  node.className = `meter ${ok ? 'ok' : 'bad'}`;
}

async function measure() {
  const video = $('camera');
  if (!video.videoWidth) return state.live;
  workCtx.drawImage(video, 0, 0, work.width, work.height);
  const pixels = workCtx.getImageData(0, 0, work.width, work.height).data;
  const face = await findFace(video, pixels);
  const { luma, sharpness } = lumaAndSharpness(pixels);
  const audio = audioLevel();
  const centred = face && Math.abs(face.x + face.w / 2 - 0.5) < CENTRE_TOLERANCE && Math.abs(face.y + face.h / 2 - 0.5) < CENTRE_TOLERANCE + 0.07;
  const live = { face, centred, luma, sharpness, ...audio, speaking: audio.dbfs > VOICE_DBFS };
  meter('m-face', face ? (centred ? 'found, centred' : 'found, move to the centre') : 'not found', Boolean(centred));
  meter('m-light', `${luma.toFixed(0)} ${luma < LUMA_OK[0] ? 'too dark' : luma > LUMA_OK[1] ? 'too bright' : 'good'}`,
    luma >= LUMA_OK[0] && luma <= LUMA_OK[1]);
  meter('m-blur', `${sharpness.toFixed(0)} ${sharpness < SHARP_OK ? 'blurred' : 'sharp'}`, sharpness >= SHARP_OK);
  meter('m-audio', `${audio.dbfs.toFixed(0)} dBFS${audio.clipping ? ' clipping!' : live.speaking ? ' speaking' : ''}`,
    !audio.clipping && live.speaking);
  $('level-bar').style.width = `${Math.max(0, Math.min(100, (audio.dbfs + 60) * 100 / 60))}%`;
  drawOverlay(face, centred);
  state.live = live;
  return live;
}

function drawOverlay(face, centred) {
  const canvas = $('overlay'), video = $('camera');
  canvas.width = video.clientWidth; canvas.height = video.clientHeight;
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = 'rgba(255,255,255,0.5)'; ctx.setLineDash([6, 6]);
  ctx.beginPath(); ctx.ellipse(canvas.width / 2, canvas.height / 2, canvas.width * 0.17, canvas.height * 0.3, 0, 0, 2 * Math.PI); ctx.stroke();
  if (!face) return;
  ctx.setLineDash([]); ctx.lineWidth = 3; ctx.strokeStyle = centred ? '#3ddc84' : '#f5b942';
  ctx.strokeRect(face.x * canvas.width, face.y * canvas.height, face.w * canvas.width, face.h * canvas.height);
}

// --- guided steps -------------------------------------------------------------------------------
function renderSteps() {
  $('steps').replaceChildren(...STEPS.map((step, i) => {
    const item = el('li', null, i === state.step ? 'current' : state.progress[i] >= 1 ? 'done' : '');
    item.dataset.step = step.id;
    const bar = el('span', null, 'bar');
    bar.style.width = `${Math.round(100 * state.progress[i])}%`;
    const track = el('span', null, 'track');
    track.append(bar);
    item.append(el('span', step.text, 'label'), track, el('span', `${Math.round(100 * state.progress[i])}%`, 'pct'));
    return item;
  }));
}

/** One tick of the current step: progress moves only while the step's condition holds. */
function advance(live) {
  const step = STEPS[state.step];
  const ok = step.needs === 'time' || (step.needs === 'face' && live.centred) || (step.needs === 'voice' && live.speaking);
  if (ok) state.progress[state.step] = Math.min(1, state.progress[state.step] + TICK_MS / 1000 / step.seconds);
  $('instruction').textContent = `${state.step + 1}/${STEPS.length} · ${step.text}` +
    (ok ? '' : step.needs === 'face' ? ' — face the camera, centred' : ' — speak up');
  if (state.progress[state.step] >= 1) {
    state.step += 1;
    $('sentence').hidden = !(STEPS[state.step] && STEPS[state.step].sentence);
    if (state.step >= STEPS.length) finishCapture();
  }
  renderSteps();
}

async function startCamera() {
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: { channelCount: 1, echoCancellation: false } });
  } catch (err) {
    status('capture-status', `camera/microphone unavailable: ${err.message}`, 'error');
    return;
  }
  $('camera').srcObject = state.stream;
  // the stage takes the camera's aspect ratio, so the overlay's frame fractions land on the picture
  $('camera').addEventListener('loadedmetadata', (event) => {
    const video = event.target;
    document.querySelector('.stage').style.aspectRatio = `${video.videoWidth} / ${video.videoHeight}`;
  });
  const ctx = new AudioContext();
  state.analyser = ctx.createAnalyser();
  state.analyser.fftSize = 2048;
  ctx.createMediaStreamSource(state.stream).connect(state.analyser);
  if ('FaceDetector' in window) {
    try { state.detector = new window.FaceDetector({ fastMode: true, maxDetectedFaces: 1 }); } catch { state.detector = null; }
  }
  $('detector').textContent = state.detector ? 'face check: the browser’s FaceDetector API'
    : 'face check: skin-colour centroid heuristic (this browser has no FaceDetector API)';
  $('start-capture').disabled = false;
  $('instruction').textContent = 'Camera on. Check the meters, then press “Start capture”.';
  state.timer = setInterval(async () => {
    if (state.measuring) return;  // a slow frame: skip this tick rather than pile up
    state.measuring = true;
    try {
      const live = await measure();
      if (state.step >= 0 && state.step < STEPS.length) advance(live);
    } finally {
      state.measuring = false;
    }
  }, TICK_MS);
  renderSteps();
}

function startCapture() {
  state.chunks = [];
  const type = ['video/webm;codecs=vp8,opus', 'video/webm', 'video/mp4'].find((t) => MediaRecorder.isTypeSupported(t));
  state.recorder = new MediaRecorder(state.stream, { mimeType: type, videoBitsPerSecond: 200_000, audioBitsPerSecond: 32_000 });
  state.recorder.ondataavailable = (event) => { if (event.data.size) state.chunks.push(event.data); };
  state.recorder.start(500);
  state.step = 0;
  state.progress = STEPS.map(() => 0);
  $('start-capture').disabled = true;
  $('finish').disabled = false;
  status('capture-status', 'recording…', 'busy');
  renderSteps();
}

async function finishCapture() {
  if (!state.recorder || state.recorder.state === 'inactive') return;
  const stopped = new Promise((resolve) => { state.recorder.onstop = resolve; });
  state.recorder.stop();
  await stopped;
  state.step = STEPS.length;
  $('finish').disabled = true;
  $('start-capture').disabled = false;
  $('instruction').textContent = 'Done — uploading.';
  const blob = new Blob(state.chunks, { type: state.recorder.mimeType });
  status('capture-status', `recorded ${(blob.size / 1024).toFixed(0)} KB`, 'ok');
  const form = new FormData();
  form.append('video', blob, blob.type.includes('mp4') ? 'capture.mp4' : 'capture.webm');
  await upload(form);
}

// --- upload, server confirmation, progress, result -----------------------------------------------
async function ensureConsent() {
  if (!$('consent-media').checked) throw new ApiError(403, 'tick “I allow storing my capture” first (consent for media)');
  await api('/personalization/consent/media', { method: 'PUT' });
}

async function upload(form) {
  if ($('wishes').value.trim()) form.append('preferences', $('wishes').value.trim());
  status('server-status', 'uploading and checking…', 'busy');
  try {
    await ensureConsent();
    const started = await api('/avatars/captures', { method: 'POST', body: form });
    $('capture-id').textContent = started.capture_id;
    custom.captureId = started.capture_id;
    const c = started.checks;
    status('server-status', `accepted: ${c.mode}, ${c.duration_s} s, face in ${c.frames_with_face}/${c.frames_sampled} frames, ` +
      `${c.speech_s} s of speech${started.wishes.length ? `, wishes: ${started.wishes.join(' · ')}` : ''}`, 'ok');
    $('instruction').textContent = 'Uploaded — the server confirmed the capture.';
    renderChecks(c);
    await follow(started.capture_id, started.events_url);
  } catch (err) {
    status('server-status', `refused: ${err instanceof ApiError ? err.detail : err.message}`, 'error');
  }
}

function renderChecks(checks) {
  const rows = Object.entries(checks).map(([k, v]) => {
    const tr = el('tr');
    tr.append(el('th', k), el('td', typeof v === 'object' ? JSON.stringify(v) : String(v)));
    return tr;
  });
  $('checks').tBodies[0].replaceChildren(...rows);
  $('checks').hidden = false;
}

function renderFlow(progress) {
  $('flow-steps').replaceChildren(...progress.steps.map((s) => {
    const item = el('li');
    item.append(el('span', s.step), el('span', s.state, `state ${s.state}`));
    return item;
  }));
  status('flow-status', `run ${progress.state.toLowerCase()} · ${progress.steps_done}/${progress.steps.length} steps`,
    progress.done ? (progress.state === 'COMPLETED' ? 'ok' : 'error') : 'busy');
}

/** Read the server-sent events of the capture; fall back to polling when streaming fails. */
async function follow(captureId, eventsUrl) {
  try {
    const response = await fetch(eventsUrl, { headers: authHeaders() });
    if (!response.ok || !response.body) throw new Error(`events: ${response.status}`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const event = /^event: (\w+)/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event === 'progress') renderFlow(JSON.parse(data));
        if (event === 'done') { const body = JSON.parse(data); renderFlow(body.progress); return showResult(body); }
      }
    }
  } catch (err) {
    status('flow-status', `progress stream interrupted (${err.message}); polling`, 'busy');
  }
  for (;;) {
    const capture = await api(`/avatars/captures/${captureId}`);
    renderFlow(capture.progress);
    if (capture.progress.done) return showResult({ progress: capture.progress, avatar: capture.avatar });
    await new Promise((resolve) => setTimeout(resolve, 1500));
  }
}

async function showResult({ progress, avatar }) {
  if (!avatar) {
    status('flow-status', `avatar flow ${progress.state.toLowerCase()}: ${progress.message || 'see the run logs'}`, 'error');
    return;
  }
  const a = avatar.analysis, p = avatar.params;
  const rows = [
    ['face', `${a.frames_with_face}/${a.frames} frames, box ${JSON.stringify(a.face_box)}` +
      (a.sharpness != null ? `, sharpness ${a.sharpness}` : '') +
      (a.head_pose ? `, head yaw ${a.head_pose.yaw}°, pitch ${a.head_pose.pitch}°, roll ${a.head_pose.roll}°` : '')],
    ['analysis', a.method],
    ['voice', `F0 ${a.f0_median_hz} Hz, range ${a.f0_range_semitones} st, ${a.speaking_rate_wps ?? '—'} words/s`],
    ['heard', a.transcript || '—'], ['wishes', (a.preferences.matched || []).join(' · ') || '—'],
    ['decided by', `${avatar.decider} (baseline: heuristic)`], ['style', `${p.style}, hair ${p.hair_style}`],
    ['body', `height ${p.height_m.toFixed(2)} m, build ${p.build.toFixed(2)}`],
    ['voice settings', `pitch ${p.pitch_semitones.toFixed(1)} st, range ×${p.pitch_range_scale.toFixed(2)}, rate ×${p.speaking_rate.toFixed(2)}`],
    ['why', (p.reasons || []).join('; ')],
  ].map(([k, v]) => { const tr = el('tr'); tr.append(el('th', k), el('td', v)); return tr; });
  $('analysis').tBodies[0].replaceChildren(...rows);
  $('swatches').replaceChildren(...['skin', 'hair', 'eye'].flatMap((part) => [
    swatch(`${part} measured`, a[`${part}_hex`]), swatch(`${part} avatar`, p.colours[part])]));
  const image = await fetch(avatar.preview_url, { headers: authHeaders() }); // sealed: opened by the API for you
  if (image.ok) $('preview').src = URL.createObjectURL(await image.blob());
  $('result').hidden = false;
  status('flow-status', `avatar v${avatar.version} ready`, 'ok');
  if (avatar.downloads && avatar.downloads.glb) await showAvatar(avatar);
}

/** Reopen an earlier capture (``?capture=<id>``, the link on its Prefect run): checks, steps and avatar. */
async function reopenCapture(captureId) {
  try {
    const capture = await api(`/avatars/captures/${encodeURIComponent(captureId)}`);
    custom.captureId = captureId;
    $('capture-id').textContent = captureId;
    renderChecks(capture.checks);
    await follow(captureId, `/avatars/captures/${encodeURIComponent(captureId)}/events`);
  } catch (err) {
    status('server-status', `cannot open capture ${captureId}: ${err instanceof ApiError ? err.detail : err.message}`, 'error');
  }
}

// --- the avatar: live player, turntable, customisation, versions, downloads ---------------------------
const custom = { captureId: null, avatar: null, setup: null, player: null, urls: [] };

/** An owner-only object of the avatar as a blob: URL (the API needs the key header, <audio>/<img> cannot send it). */
async function blobUrl(path) {
  const response = await fetch(path, { headers: authHeaders() });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail ?? detail; } catch { /* not JSON */ }
    throw new ApiError(response.status, detail);
  }
  const url = URL.createObjectURL(await response.blob());
  custom.urls.push(url);
  return url;
}

async function showAvatar(avatar) {
  custom.avatar = avatar;
  $('avatar-card').hidden = false;
  $('custom-card').hidden = false;
  $('avatar-version').textContent = `version ${avatar.version}`;
  for (const url of custom.urls.splice(0)) URL.revokeObjectURL(url);
  status('player-status', 'loading your avatar…', 'busy');
  try {
    const [glbUrl, audioUrl] = await Promise.all([blobUrl(avatar.downloads.glb), blobUrl(avatar.downloads.voice)]);
    if (custom.player) custom.player.dispose();
    const { mountAvatarPlayer } = await import('/web/avatar_player.js');
    custom.player = await mountAvatarPlayer($('player'), { glbUrl, audioUrl });
    status('player-status', `v${avatar.version}: press ▶ Voice to hear it speak with lip sync`, 'ok');
  } catch (err) {
    status('player-status', `the live player failed: ${err.message}`, 'error');
  }
  if (avatar.downloads.turntable_png) {
    $('turntable').src = await blobUrl(avatar.downloads.turntable_png).catch(() => '');
  }
  await renderCustomise(avatar.params);
  await renderVersions();
}

async function renderCustomise(params) {
  custom.setup = custom.setup || await api('/avatars/presets');
  const { presets, sliders, choices, colours } = custom.setup;
  $('presets').replaceChildren(...presets.map((p) => {
    const b = el('button', p.label, 'secondary');
    b.type = 'button';
    b.title = p.description;
    b.dataset.preset = p.name;
    b.addEventListener('click', () => applyCustom({ preset: p.name }));
    return b;
  }));
  const rows = [];
  for (const name of colours) {
    const input = el('input');
    input.type = 'color';
    input.name = name;
    input.value = params.colours[name.replace('_colour', '')] || '#808080';
    rows.push(field(name.replace('_', ' '), input));
  }
  for (const [name, options] of Object.entries(choices)) {
    const select = el('select');
    select.name = name;
    select.replaceChildren(...options.map((o) => { const opt = el('option', o); opt.value = o; return opt; }));
    select.value = params[name];
    rows.push(field(name.replace('_', ' '), select));
  }
  for (const s of sliders) {
    const input = el('input');
    Object.assign(input, { type: 'range', name: s.name, min: s.minimum, max: s.maximum, step: s.step });
    input.value = Math.min(s.maximum, Math.max(s.minimum, params[s.name]));
    const shown = el('span', '', 'slider-value');
    const show = () => { shown.textContent = `${Number(input.value).toFixed(2)}${s.unit ? ` ${s.unit}` : ''}`; };
    input.addEventListener('input', show);
    show();
    rows.push(field(s.label, input, shown));
  }
  $('sliders').replaceChildren(...rows);
  $('sliders').dataset.base = JSON.stringify(sliderValues());
}

function field(label, ...inputs) {
  const row = el('label', null, 'slider');
  row.append(el('span', label, 'name'), ...inputs);
  return row;
}

function sliderValues() {
  const out = {};
  for (const input of $('sliders').querySelectorAll('input, select')) {
    out[input.name] = input.type === 'range' ? Number(input.value) : input.value;
  }
  return out;
}

/** Only the sliders the user moved: a new version records what was changed. */
function changedValues() {
  const base = JSON.parse($('sliders').dataset.base || '{}');
  return Object.fromEntries(Object.entries(sliderValues()).filter(([k, v]) => base[k] !== v));
}

async function applyCustom(body) {
  if (!body.preset && !Object.keys(body.params || {}).length) {
    status('custom-status', 'move a slider or pick a preset first', 'error');
    return;
  }
  status('custom-status', 'creating a new version…', 'busy');
  const buttons = document.querySelectorAll('#custom-card button');
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const made = await api(`/avatars/${custom.captureId}/customise`, {
      method: 'POST', json: { ...body, base_version: custom.avatar.version } });
    const seconds = (made.timings_ms.total / 1000).toFixed(1);
    status('custom-status', `version ${made.version.version}: ${made.version.message} (engines ${seconds} s)`, 'ok');
    await showAvatar(made.avatar);
  } catch (err) {
    status('custom-status', `not applied: ${err instanceof ApiError ? err.detail : err.message}`, 'error');
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

async function rollback(version) {
  status('custom-status', `rolling back to version ${version}…`, 'busy');
  try {
    const made = await api(`/avatars/${custom.captureId}/rollback`, { method: 'POST', json: { to_version: version } });
    const capture = await api(`/avatars/captures/${custom.captureId}`);
    status('custom-status', `version ${made.version}: ${made.message}`, 'ok');
    await showAvatar(capture.avatar);
  } catch (err) {
    status('custom-status', `rollback failed: ${err instanceof ApiError ? err.detail : err.message}`, 'error');
  }
}

async function renderVersions() {
  const versions = await api(`/avatars/${custom.captureId}/versions`);
  $('versions').replaceChildren(...versions.map((v) => {
    const item = el('li', null, v.version === custom.avatar.version ? 'current' : '');
    item.dataset.version = v.version;
    const p = v.params;
    const what = `${p.style}, hair ${p.hair_style}, ${Number(p.height_m).toFixed(2)} m, pitch ${Number(p.pitch_semitones).toFixed(1)} st`;
    item.append(el('span', `v${v.version}`, 'number'),
      el('span', `${v.message}${v.parent ? ` (from v${v.parent})` : ''}`, 'message'), el('span', what, 'what'));
    if (v.version !== custom.avatar.version) {
      const back = el('button', 'Roll back', 'secondary');
      back.type = 'button';
      back.dataset.rollback = v.version;
      back.addEventListener('click', () => rollback(v.version));
      item.append(back);
    }
    return item;
  }));
}

async function download(name, filename) {
  const link = custom.avatar && custom.avatar.downloads[name];
  if (!link) return;
  status('player-status', `preparing ${filename}…`, 'busy');
  try {
    const a = el('a');
    a.href = await blobUrl(link);
    a.download = filename;
    document.body.append(a);
    a.click();
    a.remove();
    status('player-status', `downloaded ${filename}`, 'ok');
  } catch (err) {
    status('player-status', `download failed: ${err instanceof ApiError ? err.detail : err.message}`, 'error');
  }
}

function swatch(label, hex) {
  const box = el('span', null, 'swatch');
  const chip = el('span', null, 'chip');
  chip.style.background = hex || 'transparent';
  box.append(chip, el('span', `${label} ${hex || '—'}`));
  return box;
}

async function uploadFiles(event) {
  event.preventDefault();
  const form = new FormData();
  const video = $('file-video').files[0];
  if (video) form.append('video', video, video.name);
  for (const image of $('file-images').files) form.append('images', image, image.name);
  const audio = $('file-audio').files[0];
  if (audio) form.append('audio', audio, audio.name);
  await upload(form);
}

async function main() {
  await requireSignIn();
  const consent = await api('/personalization/consent').catch(() => null);
  $('consent-media').checked = Boolean(consent?.current?.media);
  $('start-camera').addEventListener('click', startCamera);
  $('start-capture').addEventListener('click', startCapture);
  $('finish').addEventListener('click', finishCapture);
  $('upload-form').addEventListener('submit', uploadFiles);
  $('apply-custom').addEventListener('click', () => applyCustom({ params: changedValues() }));
  $('reset-custom').addEventListener('click', () => renderCustomise(custom.avatar.params));
  const file = (ext) => `avatar-${custom.captureId}-v${custom.avatar.version}.${ext}`;
  $('download-glb').addEventListener('click', () => download('glb', file('glb')));
  $('download-vrm').addEventListener('click', () => download('vrm', file('vrm')));
  $('download-voice').addEventListener('click', () => download('voice', file('wav')));
  $('download-mp4').addEventListener('click', () => download('turntable_mp4', file('mp4')));
  renderSteps();
  document.body.dataset.ready = 'true';
  const reopen = new URLSearchParams(location.search).get('capture');
  if (reopen) await reopenCapture(reopen);
}

main();
