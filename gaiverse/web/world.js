// The worlds page: build a world, its versions, a 3D view (orbit and walk), edit tools on the map, diff,
// rollback and backup. Implements ENV-a3 / ENV-a4 in the web terminal. Server text goes in with textContent.
import * as THREE from 'three';
import { $, api, authHeaders, el, formatTime, requireSignIn } from '/web/common.js';
import { createViewer } from '/web/viewer.js';
import { createEngine } from '/web/engine.js';
import { applyInteriors } from '/web/interior_material.js';

const page = { world: null, versions: [], current: null, region: null, points: [], walk: null };
let viewer;
let engine;

async function blobUrl(path) {
  const response = await api(path);
  return URL.createObjectURL(await response.blob());
}

async function loadWorlds(select) {
  const worlds = await api('/worlds');
  const menu = $('world-select');
  menu.replaceChildren(...worlds.map((w) => {
    const option = el('option', `${w.world_id} (v${w.latest_version}) ${w.message}`);
    option.value = w.world_id;
    return option;
  }));
  if (!worlds.length) { $('view-status').textContent = 'No worlds yet: build one.'; return; }
  menu.value = select || page.world || worlds[0].world_id;
  await loadVersions(menu.value);
}

async function loadVersions(worldId, pick) {
  page.world = worldId;
  page.versions = await api(`/worlds/${worldId}/versions`);
  const list = $('versions');
  list.replaceChildren(...[...page.versions].reverse().map((v) => {
    const item = el('li');
    item.dataset.version = v.version;
    item.append(el('span', `v${v.version} — ${v.message}`),
      el('span', `${v.parent_version ? `from v${v.parent_version} · ` : ''}${formatTime(v.created_at)}`, 'meta'));
    item.addEventListener('click', () => showVersion(v.version));
    return item;
  }));
  const latest = page.versions[page.versions.length - 1].version;
  $('diff-to').value = latest;
  $('diff-from').value = Math.max(1, latest - 1);
  await showVersion(pick || latest);
}

async function showVersion(number) {
  const version = await api(`/worlds/${page.world}/versions/${number}`);
  page.current = version;
  for (const item of $('versions').children) item.setAttribute('aria-current', String(Number(item.dataset.version) === number));
  $('edit-base').textContent = `(applies to v${number})`;
  if (version.objects.map_png) $('map').src = await blobUrl(`/assets/${version.objects.map_png}/content`);
  clearOverlay();
  $('backup').onclick = (event) => { event.preventDefault(); download(`/worlds/${page.world}/backup?version=${number}`); };
  $('view-status').textContent = `v${number}: assembling the 3D view…`;
  try {
    const gltf = await viewer.load(`/worlds/${page.world}/versions/${number}/glb`);
    // window interiors: the depth maps are stored beside the .glb as objects of the version, named by path
    await applyInteriors(gltf.scene, (path) => (version.objects[path] ? blobUrl(`/assets/${version.objects[path]}/content`) : null));
    engine.prepare(gltf.scene);  // tiles, LOD and merged draw calls (engine.js / world_render.js)
    $('view-status').textContent = `v${number}: ${version.stats.buildings ?? 0} buildings, relief ${version.stats.relief_m} m`;
    await showDynamics(version, gltf.scene).catch((err) => {
      $('engine-status').textContent = `engine failed: ${err.message || err}`;
      $('world-view').dataset.dynamics = 'error';
      console.error(err);
    });
    if (page.walk) startWalk();
  } catch (err) {
    $('view-status').textContent = `3D view failed: ${err.message || err}`;
  }
}

// ---- the engine: traffic, pedestrians and weather of the version (ENV-d2) ----
async function showDynamics(version, root) {
  engine.clear();
  const key = version.objects.dynamics_glb;
  const canvas = $('world-view');
  if (!key) {
    $('engine-status').textContent = 'no traffic stored for this version (builds make it; edits keep or re-route it)';
    canvas.dataset.dynamics = 'weather-only';
    return;
  }
  const gltf = await viewer.fetchGltf(`/assets/${key}/content`);
  engine.attach(root, gltf);
  const counts = engine.counts();
  $('engine-status').textContent = `${engine.state.agents.vehicle.length} vehicles, ${engine.state.agents.pedestrian.length} people`;
  canvas.dataset.dynamics = counts.vehicles + counts.pedestrians > 0 ? 'running' : 'empty';
}

function wireEngine() {
  engine = createEngine(viewer);
  window.gaiverseEngine = engine;  // for the browser tests and the benchmark
  const hourOut = $('engine-hour-out');
  const sync = () => {
    const live = $('engine-live').checked;
    engine.set({ weather: $('engine-weather').value, hour: live ? null : Number($('engine-hour').value),
      traffic: Number($('engine-traffic').value), pedestrians: Number($('engine-people').value) });
    hourOut.textContent = live ? 'now' : `${Math.floor($('engine-hour').value)}:${String(Math.round(($('engine-hour').value % 1) * 60)).padStart(2, '0')}`;
  };
  for (const id of ['engine-weather', 'engine-hour', 'engine-live', 'engine-traffic', 'engine-people']) $(id).addEventListener('input', sync);
  $('engine-hour').addEventListener('input', () => { $('engine-live').checked = false; sync(); });
  $('engine-play').addEventListener('click', () => {
    engine.state.playing = !engine.state.playing;
    $('engine-play').textContent = engine.state.playing ? 'Pause' : 'Play';
    $('engine-play').setAttribute('aria-pressed', String(engine.state.playing));
  });
  engine.set({ traffic: null, pedestrians: null });
}

async function download(path) {
  const url = await blobUrl(path);
  const link = el('a');
  link.href = url;
  link.download = `${page.world}.tar.gz`;
  link.click();
}

// ---- map selection: a dragged rectangle (region) or clicked points (road), in world metres ----
function toWorld(event) {
  const box = $('map-overlay').getBoundingClientRect();
  const [w, h] = page.current.size_m;
  const u = (event.clientX - box.left) / box.width;
  const v = (event.clientY - box.top) / box.height;
  return [Math.max(0, Math.min(w, u * w)), Math.max(0, Math.min(h, (1 - v) * h))];
}

function clearOverlay() {
  page.region = null;
  page.points = [];
  drawOverlay();
}

function drawOverlay() {
  const canvas = $('map-overlay');
  const { width, height } = canvas.getBoundingClientRect();
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext('2d');
  if (!page.current) return;
  const [w, h] = page.current.size_m;
  const px = ([x, y]) => [x / w * width, (1 - y / h) * height];
  ctx.strokeStyle = '#ffdd33'; ctx.lineWidth = 2;
  if (page.region) {
    const [x0, y1] = px([page.region.x0_m, page.region.y0_m]);
    const [x1, y0] = px([page.region.x1_m, page.region.y1_m]);
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  }
  if (page.points.length) {
    ctx.beginPath();
    page.points.map(px).forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.stroke();
  }
}

function wireMap() {
  const overlay = $('map-overlay');
  let start = null;
  overlay.addEventListener('pointerdown', (event) => { start = toWorld(event); });
  overlay.addEventListener('pointerup', (event) => {
    if (!start || !page.current) return;
    const end = toWorld(event);
    if ($('edit-op').value === 'draw_road') {
      page.points.push(end);
    } else if (Math.abs(end[0] - start[0]) > 1 && Math.abs(end[1] - start[1]) > 1) {
      page.region = { x0_m: Math.min(start[0], end[0]), y0_m: Math.min(start[1], end[1]),
        x1_m: Math.max(start[0], end[0]), y1_m: Math.max(start[1], end[1]) };
    }
    start = null;
    drawOverlay();
  });
}

function editBody() {
  const op = $('edit-op').value;
  const amount = Number($('edit-amount').value);
  if (op === 'draw_road') return { op, points: page.points, road_class: 'minor' };
  if (op === 'move_building') {
    return { op, building_id: $('edit-building').value, dx_m: Number($('edit-dx').value), dy_m: Number($('edit-dy').value) };
  }
  if (!page.region) throw new Error('drag a rectangle on the map first');
  const region = Object.fromEntries(Object.entries(page.region).map(([k, v]) => [k, Math.round(v * 10) / 10]));
  if (op === 'raise' || op === 'lower') return { op, region, amount_m: amount };
  if (op === 'flatten') return { op, region };
  if (op === 'regenerate') return { op, region, controls: { relief_m: amount }, seed: Math.floor(Math.random() * 1e6) };
  return { op, region };
}

async function applyEdit(event) {
  event.preventDefault();
  const status = $('edit-status');
  try {
    const started = performance.now();
    const made = await api(`/worlds/${page.world}/edits`, { method: 'POST',
      json: { edit: editBody(), base_version: page.current.version } });
    status.textContent = `v${made.version} published in ${Math.round(performance.now() - started)} ms (${made.message})`;
    await loadWorlds(page.world);
  } catch (err) {
    status.textContent = `edit refused: ${err.detail || err.message}`;
  }
}

async function showDiff(event) {
  if (event) event.preventDefault();
  const from = Number($('diff-from').value);
  const to = Number($('diff-to').value);
  try {
    const diff = await api(`/worlds/${page.world}/diff?from=${from}&to=${to}`);
    const roads = Object.entries(diff.roads || {}).map(([k, v]) => `${k} +${v.added_cells}/-${v.removed_cells}`).join(', ');
    $('diff-data').textContent = diff.identical ? `v${from} and v${to} are identical` :
      `heights: ${diff.heights.changed_cells} cells changed (max ${diff.heights.max_abs_delta_m} m) in ${diff.heights.regions.length} regions\n` +
      `roads (cells): ${roads}\nbuildings: +${diff.buildings.added.length} -${diff.buildings.removed.length} moved ${diff.buildings.moved.length}\n\n` +
      JSON.stringify(diff.heights.regions, null, 1);
    const image = $('diff-image');
    image.src = await blobUrl(`/worlds/${page.world}/diff.png?from=${from}&to=${to}`);
    image.hidden = false;
  } catch (err) {
    $('diff-data').textContent = `diff failed: ${err.detail || err.message}`;
  }
}

async function rollback() {
  try {
    const made = await api(`/worlds/${page.world}/rollback`, { method: 'POST', json: { to_version: Number($('diff-from').value) } });
    $('edit-status').textContent = `v${made.version}: ${made.message}`;
    await loadWorlds(page.world);
  } catch (err) {
    $('edit-status').textContent = `rollback refused: ${err.detail || err.message}`;
  }
}

// ?room=<capture id> (the room page's "Build a world with this room"): the build's windows show that room.
function roomToBuildWith() {
  return new URLSearchParams(window.location.search).get('room');
}

function showRoomChoice() {
  const room = roomToBuildWith();
  if (room) {
    $('build-status').textContent = `Windows will show your room ${room}: the world will contain renderings of `
      + 'your room and is yours (other users cannot open it; administrators can).';
  }
}

async function build(event) {
  event.preventDefault();
  const status = $('build-status');
  try {
    const room = roomToBuildWith();
    const run = await api('/worlds', { method: 'POST', json: {
      prompt: $('build-prompt').value, size_m: Number($('build-size').value), seed: Number($('build-seed').value),
      ...(room ? { room_capture_id: room } : {}) } });
    status.textContent = `building (run ${run.id.slice(0, 8)}, ${run.state})…`;
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 3000));
      const now = await api(`/runs/${run.id}`);
      status.textContent = `building (run ${run.id.slice(0, 8)}, ${now.state})…`;
      if (['COMPLETED', 'FAILED', 'CRASHED', 'CANCELLED'].includes(now.state)) {
        status.textContent = now.state === 'COMPLETED' ? 'built' : `build ${now.state}: ${now.message || ''}`;
        break;
      }
    }
    await loadWorlds();
  } catch (err) {
    status.textContent = `build refused: ${err.detail || err.message}`;
  }
}

// ---- walk mode: eye height over the ground, WASD / arrows to move, drag to look ----
function startWalk() {
  const { camera, controls, scene } = viewer;
  const box = new THREE.Box3().setFromObject(scene);
  const centre = box.getCenter(new THREE.Vector3());
  page.walk = { keys: new Set(), yaw: 0, pitch: -0.05, pos: new THREE.Vector3(centre.x, box.max.y, centre.z), ray: new THREE.Raycaster() };
  controls.enableDamping = false;
  setMode(true);
}

function walkStep() {
  const walk = page.walk;
  if (walk) {
    const { camera, controls, scene } = viewer;
    const speed = walk.keys.has('Shift') ? 6 : 2;
    const forward = new THREE.Vector3(-Math.sin(walk.yaw), 0, -Math.cos(walk.yaw));
    const right = new THREE.Vector3(-forward.z, 0, forward.x);
    if (walk.keys.has('w') || walk.keys.has('ArrowUp')) walk.pos.addScaledVector(forward, speed);
    if (walk.keys.has('s') || walk.keys.has('ArrowDown')) walk.pos.addScaledVector(forward, -speed);
    if (walk.keys.has('d') || walk.keys.has('ArrowRight')) walk.pos.addScaledVector(right, speed);
    if (walk.keys.has('a') || walk.keys.has('ArrowLeft')) walk.pos.addScaledVector(right, -speed);
    walk.ray.set(new THREE.Vector3(walk.pos.x, 1e4, walk.pos.z), new THREE.Vector3(0, -1, 0));
    const hit = walk.ray.intersectObjects(scene.children, true).find((h) => h.object.isMesh);
    if (hit) walk.pos.y = hit.point.y + 1.7;
    camera.position.copy(walk.pos);
    const look = new THREE.Vector3(Math.cos(walk.pitch) * forward.x, Math.sin(walk.pitch), Math.cos(walk.pitch) * forward.z);
    controls.target.copy(walk.pos).add(look);
    camera.near = 0.1;
    camera.updateProjectionMatrix();
  }
  requestAnimationFrame(walkStep);
}

function setMode(walking) {
  $('mode-walk').setAttribute('aria-pressed', String(walking));
  $('mode-orbit').setAttribute('aria-pressed', String(!walking));
  $('world-view').dataset.mode = walking ? 'walk' : 'orbit';
}

function wireWalk() {
  const canvas = $('world-view');
  $('mode-walk').addEventListener('click', () => { startWalk(); canvas.focus(); });
  $('mode-orbit').addEventListener('click', () => {
    page.walk = null;
    viewer.controls.enableDamping = true;
    setMode(false);
    if (page.current) showVersion(page.current.version);
  });
  canvas.addEventListener('keydown', (e) => page.walk && page.walk.keys.add(e.key.length === 1 ? e.key.toLowerCase() : e.key));
  canvas.addEventListener('keyup', (e) => page.walk && page.walk.keys.delete(e.key.length === 1 ? e.key.toLowerCase() : e.key));
  let last = null;
  canvas.addEventListener('pointerdown', (e) => { last = [e.clientX, e.clientY]; });
  canvas.addEventListener('pointerup', () => { last = null; });
  canvas.addEventListener('pointermove', (e) => {
    if (!page.walk || !last) return;
    page.walk.yaw -= (e.clientX - last[0]) * 0.005;
    page.walk.pitch = Math.max(-1.2, Math.min(1.2, page.walk.pitch - (e.clientY - last[1]) * 0.005));
    last = [e.clientX, e.clientY];
  });
  requestAnimationFrame(walkStep);
}

function wireEditFields() {
  const op = $('edit-op');
  op.addEventListener('change', () => {
    const moving = op.value === 'move_building';
    for (const id of ['edit-building', 'edit-dx', 'edit-dy']) $(id).hidden = !moving;
    $('edit-amount').hidden = moving || op.value === 'draw_road' || op.value === 'delete_roads';
    clearOverlay();
  });
}

async function main() {
  await requireSignIn();
  viewer = createViewer($('world-view'), { headers: authHeaders(), antialias: 'auto' });
  wireEngine();
  wireMap();
  wireWalk();
  wireEditFields();
  $('world-select').addEventListener('change', (e) => loadVersions(e.target.value));
  $('build-form').addEventListener('submit', build);
  showRoomChoice();
  $('edit-form').addEventListener('submit', applyEdit);
  $('diff-form').addEventListener('submit', showDiff);
  $('rollback').addEventListener('click', rollback);
  window.addEventListener('resize', drawOverlay);
  await loadWorlds(new URLSearchParams(window.location.search).get('world'));
}

main();
