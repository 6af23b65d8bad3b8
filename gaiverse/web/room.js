// Room capture page: upload photos or a short video of your room (POST /interiors/captures, with upload
// progress), follow the room-capture flow step by step (frames -> COLMAP poses -> NeRF training with its PSNR ->
// room atlas) by polling GET /interiors/captures/{id}, then show the rendered colour + depth views, the atlas
// sheets and the room behind a window (the interior-mapping shader worlds use), with a link that builds a world
// whose windows show the room (world.html?room=<id>), the atlas download and deletion. Files are checked here first (count, type) so a wrong choice is named before anything is sent;
// the server checks again and its reason is shown as it is. The room's files are sealed with the user's key
// on the server and fetched with the API key (opened for their owner only).
// State for tests: #result-card[data-state] ('loading' | 'ready'), #window-view[data-state] ('ready' | 'error').
import * as THREE from 'three';

import { $, ApiError, api, authHeaders, el, formatBytes, requireSignIn, status } from '/web/common.js';
import { interiorMaterial } from '/web/interior_material.js';

const PHOTO = /\.(jpe?g|png|webp)$/i;
const VIDEO = /\.(mp4|mov|m4v|webm|mkv)$/i;
const PHOTOS = { min: 3, max: 60 };
const POLL_MS = 1000;
const STEP_TEXT = {
  fetch: 'open your capture', frames: 'select sharp, distinct frames', features: 'COLMAP: features',
  matching: 'COLMAP: matching', poses: 'COLMAP: camera poses', train: 'train the NeRF',
  views: 'render the room atlas', publish: 'store (sealed with your key)',
};
const WINDOW_M = 1.2;
const state = { captureId: null, curve: [], following: 0, preview: null };

/** What is wrong with the chosen files (null when they can be sent): named before anything is uploaded. */
function problemWith(files) {
  if (!files.length) return 'choose photos or a video of your room first';
  const other = files.find((f) => !PHOTO.test(f.name) && !VIDEO.test(f.name));
  if (other) return `“${other.name}” is not a photo (jpg, png, webp) nor a video (mp4, mov, webm)`;
  const videos = files.filter((f) => VIDEO.test(f.name)).length;
  if (videos && files.length > 1) return `choose either one video or photos, not ${videos} video(s) and ${files.length - videos} photo(s)`;
  if (!videos && files.length < PHOTOS.min) return `${files.length} photo${files.length === 1 ? '' : 's'} chosen: at least ${PHOTOS.min} overlapping photos are needed to estimate camera poses`;
  if (!videos && files.length > PHOTOS.max) return `${files.length} photos chosen: at most ${PHOTOS.max}`;
  return null;
}

/** POST the form with XMLHttpRequest: fetch cannot report upload progress. Resolves to the 202 body. */
function send(form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/interiors/captures');
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => { if (event.lengthComputable) onProgress(event.loaded, event.total); };
    xhr.onload = () => {
      let body = { detail: xhr.statusText };
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status === 202) resolve(body); else reject(new ApiError(xhr.status, body.detail));
    };
    xhr.onerror = () => reject(new Error('the upload was interrupted (network error)'));
    xhr.send(form);
  });
}

async function upload(event) {
  event.preventDefault();
  const files = [...$('capture-files').files];
  const problem = problemWith(files);
  if (problem) return status('upload-status', problem, 'error');
  if (!$('consent-media').checked) {
    return status('upload-status', 'tick “I allow storing my photos” first (consent for the purpose media)', 'error');
  }
  const form = new FormData();
  for (const file of files) form.append(VIDEO.test(file.name) ? 'video' : 'images', file, file.name);
  const bar = $('upload-progress');
  bar.hidden = false;
  bar.value = 0;
  try {
    await api('/personalization/consent/media', { method: 'PUT' });
    const started = await send(form, (loaded, total) => {
      bar.value = (100 * loaded) / total;
      status('upload-status', `uploading ${formatBytes(loaded)} of ${formatBytes(total)}…`, 'busy');
    });
    bar.value = 100;
    const c = started.checks;
    status('upload-status', `accepted: ${c.files} ${c.mode === 'video' ? 'video' : 'photos'}, ${formatBytes(c.bytes)}, ${c.size[0]}×${c.size[1]} px`, 'ok');
    renderChecks(c);
    loadCaptures();
    follow(started.capture_id);
  } catch (err) {
    status('upload-status', `refused: ${err instanceof ApiError ? err.detail : err.message}`, 'error');
  }
}

function renderChecks(checks) {
  $('checks').tBodies[0].replaceChildren(...Object.entries(checks).map(([k, v]) => {
    const row = el('tr');
    row.append(el('th', k), el('td', Array.isArray(v) ? v.join(' × ') : String(v)));
    return row;
  }));
  $('checks').hidden = false;
}

function renderSteps(capture) {
  $('room-steps').replaceChildren(...capture.steps.map((s) => {
    const item = el('li');
    item.dataset.step = s.step;
    const detail = s.step === 'train' && capture.training ? `PSNR ${capture.training.psnr.toFixed(2)} dB` : '';
    item.append(el('span', STEP_TEXT[s.step] || s.step), el('span', detail, 'detail'), el('span', s.state, `state ${s.state}`));
    return item;
  }));
}

function renderTraining(training) {
  if (!training) return;
  $('training').hidden = false;
  $('training-text').textContent = `NeRF step ${training.step} of ${training.steps} · PSNR ${training.psnr.toFixed(2)} dB · ${training.views} views`;
  $('training-progress').value = training.percent;
  const last = state.curve[state.curve.length - 1];
  if (!last || last[0] !== training.step) state.curve.push([training.step, training.psnr]);
  drawCurve(state.curve, training.steps);
}

/** PSNR (dB) against step, as the points the flow reported. */
function drawCurve(points, steps) {
  const canvas = $('psnr-curve');
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (!points.length) return;
  const values = points.map((p) => p[1]);
  const lo = Math.floor(Math.min(...values) - 1), hi = Math.ceil(Math.max(...values) + 1);
  const x = (step) => 8 + ((canvas.width - 16) * step) / steps;
  const y = (v) => canvas.height - 14 - ((canvas.height - 24) * (v - lo)) / (hi - lo);
  g.strokeStyle = '#5aa9ff';
  g.lineWidth = 2;
  g.beginPath();
  points.forEach(([s, v], i) => (i ? g.lineTo(x(s), y(v)) : g.moveTo(x(s), y(v))));
  g.stroke();
  g.fillStyle = '#8a94a6';
  g.font = '11px system-ui';
  g.fillText(`${hi} dB`, 4, 11);
  g.fillText(`${lo} dB · step ${steps}`, 4, canvas.height - 2);
}

/** Poll the capture until its run ends; a newer follow() (another capture clicked) stops this one. */
async function follow(captureId) {
  const ticket = ++state.following;
  state.captureId = captureId;
  state.curve = [];
  $('capture-id').textContent = captureId;
  $('result-card').hidden = true;
  $('training').hidden = true;
  for (;;) {
    let capture;
    try {
      capture = await api(`/interiors/captures/${captureId}`);
    } catch (err) {
      return status('flow-status', err instanceof ApiError ? err.detail : err.message, 'error');
    }
    if (ticket !== state.following) return;
    renderSteps(capture);
    renderTraining(capture.training);
    if (capture.done) return finish(capture);
    const running = capture.steps.find((s) => s.state === 'RUNNING');
    status('flow-status', `run ${capture.state.toLowerCase()} · ${capture.steps_done}/${capture.steps.length} steps` +
      (running ? ` · ${STEP_TEXT[running.step]}…` : ''), 'busy');
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function finish(capture) {
  if (capture.state !== 'COMPLETED' || !capture.room) {
    const failed = capture.steps.find((s) => ['FAILED', 'CRASHED'].includes(s.state));
    const where = failed ? `at “${STEP_TEXT[failed.step]}”` : '';
    return status('flow-status', `reconstruction ${capture.state.toLowerCase()} ${where}: ${capture.message || 'see the run logs'}`, 'error');
  }
  const { nerf, poses } = capture.room;
  if (nerf.curve) { state.curve = nerf.curve; drawCurve(nerf.curve, nerf.curve[nerf.curve.length - 1][0]); }
  status('flow-status', `room ready: ${poses.registered} of ${poses.images} frames posed by COLMAP, NeRF PSNR ${nerf.final_psnr} dB`, 'ok');
  return showRoom(capture.capture_id, capture.room);
}

/** An object URL of a sealed file of the room (the API opens it for its owner). */
async function fileUrl(url) {
  const response = await fetch(url, { headers: authHeaders() });
  if (!response.ok) throw new ApiError(response.status, `${url}: ${response.statusText}`);
  return URL.createObjectURL(await response.blob());
}

async function showRoom(captureId, room) {
  const card = $('result-card');
  card.hidden = false;
  card.dataset.state = 'loading';
  $('result-summary').textContent = `${room.views.length} views · ${room.frames.selected} of ${room.frames.candidates} frames used`;
  const figures = await Promise.all(room.views.map(async (view) => {
    const figure = el('figure');
    const pair = el('div', null, 'pair');
    for (const [url, what] of [[view.colour_url, 'colour'], [view.depth_url, 'depth']]) {
      const image = el('img');
      image.alt = `${view.atlas} ${what}`;
      image.src = await fileUrl(url);
      pair.append(image);
    }
    figure.append(pair, el('figcaption', `${view.atlas.replace(/^.*_room_/, 'room ')} · depth ${view.depth_min.toFixed(1)}–${view.depth_max.toFixed(1)} (capture units)`));
    return figure;
  }));
  $('views').replaceChildren(...figures);
  $('atlas-colour').src = await fileUrl(room.files['atlas_colour.png']);
  $('atlas-depth').src = await fileUrl(room.files['atlas_depth.png']);
  $('atlas-zip').href = await fileUrl(room.atlas_zip);
  $('atlas-zip').download = `${captureId}-atlas.zip`;
  $('build-with-room').href = `/web/world.html?room=${encodeURIComponent(captureId)}`; // world.js preselects it
  await showWindow(room.views[0]);
  card.dataset.state = 'ready';
}

async function texture(url, colour) {
  const map = await new THREE.TextureLoader().loadAsync(await fileUrl(url));
  map.flipY = false; // glTF convention, as the windows of a world's .glb: v runs down the image
  map.colorSpace = colour ? THREE.SRGBColorSpace : THREE.NoColorSpace;
  map.generateMipmaps = !colour ? false : map.generateMipmaps;
  map.minFilter = colour ? map.minFilter : THREE.LinearFilter;
  map.needsUpdate = true;
  return map;
}

/** A wall with one window showing the room through the interior-mapping shader of the worlds. */
async function showWindow(view) {
  const canvas = $('window-view');
  try {
    const [colourMap, depthMap] = await Promise.all([texture(view.colour_url, true), texture(view.depth_url, false)]);
    if (!state.preview) {
      const renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
      renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
      const scene = new THREE.Scene();
      scene.background = new THREE.Color(0x9fb4c8);
      const wall = new THREE.Shape([[-8, -4], [8, -4], [8, 4], [-8, 4]].map(([a, b]) => new THREE.Vector2(a, b)));
      const h = WINDOW_M / 2;
      wall.holes.push(new THREE.Path([[-h, -h], [-h, h], [h, h], [h, -h]].map(([a, b]) => new THREE.Vector2(a, b))));
      scene.add(new THREE.Mesh(new THREE.ShapeGeometry(wall), new THREE.MeshBasicMaterial({ color: 0xc9bfae })));
      const glass = new THREE.PlaneGeometry(WINDOW_M, WINDOW_M);
      const uv = glass.getAttribute('uv');
      for (let i = 0; i < uv.count; i += 1) uv.setY(i, 1 - uv.getY(i));
      glass.setAttribute('color', new THREE.BufferAttribute(new Float32Array(uv.count * 4).fill(1), 4));
      const window_ = new THREE.Mesh(glass);
      scene.add(window_);
      state.preview = { renderer, scene, window: window_, camera: new THREE.PerspectiveCamera(45, 1, 0.05, 50) };
      $('window-angle').addEventListener('input', renderWindow);
      window.addEventListener('resize', renderWindow);
    }
    state.preview.window.material = interiorMaterial({ colourMap, depthMap, interior: view });
    renderWindow();
    canvas.dataset.state = 'ready';
  } catch (err) {
    canvas.dataset.state = 'error';
    status('delete-status', `window preview unavailable: ${err.message}`, 'error');
  }
}

function renderWindow() {
  const { renderer, scene, camera } = state.preview;
  const canvas = renderer.domElement;
  renderer.setSize(canvas.clientWidth, canvas.clientHeight, false);
  camera.aspect = canvas.clientWidth / canvas.clientHeight;
  const slope = Number($('window-angle').value);
  camera.position.set(1.2 * slope, 0.1, 1.7);
  camera.lookAt(0, 0, 0);
  camera.updateProjectionMatrix();
  renderer.render(scene, camera);
}

async function remove() {
  if (!state.captureId) return;
  status('delete-status', 'deleting…', 'busy');
  try {
    const done = await api(`/interiors/captures/${state.captureId}`, { method: 'DELETE' });
    status('delete-status', `deleted ${done.capture_id}: ${done.versions} versions, ${done.objects} stored objects`, 'ok');
    $('views').replaceChildren();
    state.following += 1;
    loadCaptures();
  } catch (err) {
    status('delete-status', err instanceof ApiError ? err.detail : err.message, 'error');
  }
}

async function loadCaptures() {
  const captures = await api('/interiors/captures');
  $('captures').replaceChildren(...captures.map((c) => {
    const item = el('li', `${c.capture_id} · ${c.message}`);
    item.addEventListener('click', () => follow(c.capture_id));
    return item;
  }));
  if (!captures.length) $('captures').replaceChildren(el('li', 'none yet', 'hint'));
}

async function main() {
  await requireSignIn();
  $('capture-form').addEventListener('submit', upload);
  $('capture-files').addEventListener('change', () => {
    const files = [...$('capture-files').files];
    $('chosen').textContent = files.length ? `${files.length} file(s), ${formatBytes(files.reduce((n, f) => n + f.size, 0))}` : '';
  });
  $('delete-capture').addEventListener('click', remove);
  await loadCaptures();
  document.body.dataset.ready = 'true';
}

main().catch((err) => status('upload-status', err instanceof ApiError ? err.detail : err.message, 'error'));
