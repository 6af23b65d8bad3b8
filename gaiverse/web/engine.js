// The world engine: replays a world's simulated traffic and pedestrians (the dynamics .glb's animation
// keyframes, drawn as instanced meshes) and renders its weather and time of day (sun, sky, fog, rain and
// snow particles, night lighting), following the world's schedule unless the user overrides it.
// Implements ENV-d2 in the web terminal. The lighting model is a port of gaiverse/world/dynamics/weather.py.
// Speed (benchmarks/engine.py): the static world is rebuilt once for drawing (world_render.js: terrain LOD
// tiles, statics and plants merged per tile, per-vertex lighting on software renderers, far windows baked),
// and an adaptive resolution scale keeps the frame budget on slow (software) renderers; `createEngine(viewer, { optimise: false, adaptive: false })` is
// the plain path the benchmark compares against.
import * as THREE from 'three';
import { isSoftwareRenderer } from '/web/viewer.js';
import { prepareWorld } from '/web/world_render.js';

const FRAME_BUDGET_MS = 1000 / 30;
const SCALE_STEPS = [1, 0.85, 0.7, 0.6, 0.5];  // internal resolution per canvas pixel, tried in order

const smoothstep = (lo, hi, x) => { const t = Math.min(1, Math.max(0, (x - lo) / (hi - lo))); return t * t * (3 - 2 * t); };
const mix = (a, b, t) => a.map((x, i) => (x + (b[i] - x) * Math.min(1, Math.max(0, t))) / 255);

/** Sun elevation and azimuth (radians, azimuth clockwise from north) at a solar hour; as weather.sun_position. */
export function sunPosition(hour, dayOfYear = 172, latitudeDeg = 50) {
  const lat = THREE.MathUtils.degToRad(latitudeDeg);
  const dec = THREE.MathUtils.degToRad(23.44) * Math.sin(2 * Math.PI * (284 + dayOfYear) / 365);
  const h = THREE.MathUtils.degToRad(15 * (hour - 12));
  const el = Math.asin(Math.sin(lat) * Math.sin(dec) + Math.cos(lat) * Math.cos(dec) * Math.cos(h));
  const az = Math.atan2(Math.sin(h), Math.cos(h) * Math.sin(lat) - Math.tan(dec) * Math.cos(lat)) + Math.PI;
  return { el, az };
}

/** Light, sky, fog and precipitation for a preset at an hour; the same numbers as weather.lighting(). */
export function lighting(preset, hour, dayOfYear = 172, latitudeDeg = 50) {
  const { el, az } = sunPosition(hour, dayOfYear, latitudeDeg);
  const day = smoothstep(-0.1, 0.2, Math.sin(el));
  const low = 1 - smoothstep(0, 0.5, Math.sin(el));
  const cloud = preset.cloud_cover;
  const skyDay = mix([120, 170, 230], [150, 156, 166], cloud).map((c) => c * 255);
  let sky = mix([8, 12, 28], skyDay, day);
  if (day > 0 && day < 1) sky = sky.map((c, i) => c * (1 - 0.35 * low) + [0.95, 0.55, 0.35][i] * 0.35 * low * day);
  const fog = sky.map((c, i) => 0.55 * c + 0.45 * mix([20, 22, 30], [190, 192, 196], day)[i]);
  return {
    sunDirection: [Math.sin(az) * Math.cos(el), Math.cos(az) * Math.cos(el), Math.sin(el)],
    sunColour: mix([255, 244, 232], [255, 150, 80], low), sunIntensity: 3 * day * (1 - 0.8 * cloud),
    moonIntensity: 0.25 * (1 - day) * (1 - 0.6 * cloud),
    ambientColour: sky, ambientIntensity: 0.25 + 1.35 * day * (1 - 0.25 * cloud), sky, fog,
    fogDensity: preset.fog_density, daylight: day, streetLights: day < 0.5,
    precipitation: preset.precipitation, rate: preset.precipitation_mm_h, wind: preset.wind_mps,
  };
}

// Per-agent keyframes from the animation: positions (T*3) and yaw (T) in the glTF frame.
function readTracks(gltf) {
  const agents = new Map();
  const clip = gltf.animations[0];
  if (!clip) return [];
  for (const track of clip.tracks) {
    const [name, property] = track.name.split('.');
    const node = gltf.scene.getObjectByName(name);
    if (!node || !node.userData.type) continue;
    const agent = agents.get(name) || { name, extras: node.userData, times: track.times };
    if (property === 'position') agent.position = track.values;
    if (property === 'quaternion') {
      const q = track.values;
      agent.yaw = new Float32Array(q.length / 4).map((_, k) => 2 * Math.atan2(q[4 * k + 1], q[4 * k + 3]));
    }
    agents.set(name, agent);
  }
  return [...agents.values()].filter((a) => a.position && a.yaw)
    .sort((a, b) => Number(a.name.split('_')[1]) - Number(b.name.split('_')[1]));
}

function instanced(geometry, material, agents) {
  const mesh = new THREE.InstancedMesh(geometry, material, Math.max(agents.length, 1));
  mesh.count = agents.length;
  mesh.frustumCulled = false;
  mesh.userData.engine = true;
  mesh.raycast = () => {};  // walking and picking ignore the traffic
  const colour = new THREE.Color();
  agents.forEach((a, i) => mesh.setColorAt(i, colour.setRGB(...a.extras.colour.map((c) => c / 255), THREE.SRGBColorSpace)));
  mesh.userData.colours = mesh.instanceColor ? mesh.instanceColor.array.slice() : null;
  return mesh;
}

function vehicleGeometry() {
  const body = new THREE.BoxGeometry(4.4, 0.75, 1.65).translate(0, 0.6, 0);
  const cabin = new THREE.BoxGeometry(2.4, 0.55, 1.45).translate(-0.3, 1.25, 0);
  return { body, cabin };
}

// Rain falls as short streaks (a drop at terminal speed smears over a frame), snow as flakes (points).
function precipitationPoints(kind, count) {
  const streak = kind === 'snow' ? 0 : 0.8;
  const unit = new Float32Array(count * 3);
  for (let i = 0; i < unit.length; i++) unit[i] = Math.random();
  const geometry = new THREE.BufferGeometry();
  geometry.setAttribute('position', new THREE.BufferAttribute(new Float32Array(count * 3 * (streak ? 2 : 1)), 3));
  const points = streak
    ? new THREE.LineSegments(geometry, new THREE.LineBasicMaterial({ color: 0xb4c2dc, transparent: true, opacity: 0.55, depthWrite: false }))
    : new THREE.Points(geometry, new THREE.PointsMaterial({ color: 0xffffff, size: 0.5, transparent: true, opacity: 0.95, depthWrite: false }));
  points.frustumCulled = false;
  points.raycast = () => {};  // walking and picking look through the rain
  points.userData.unit = unit;
  points.userData.streak = streak;
  return points;
}

// Lower (or raise again) the internal resolution when the median of the last frames misses (or easily
// meets) the budget; the canvas keeps its CSS size. A step down is kept only if it made frames at least 10%
// faster: when pixels are not what limits the frame (a busy CPU), the full resolution comes back and is
// not traded again for a while.
function adaptResolution(renderer, state, every = 12) {
  const recent = state.frameTimes.slice(-every);
  if (recent.length < every || state.frames - state.scaleChangedAt < every) return;
  const median = [...recent].sort((a, b) => a - b)[every >> 1];
  let step = state.scaleStep;
  const trial = state.trial;
  state.trial = null;
  if (trial && median > 0.9 * trial.before) {
    step = trial.from;
    state.blockedUntil = state.frames + 50 * every;
  } else if (median > 1.15 * FRAME_BUDGET_MS && step < SCALE_STEPS.length - 1 && state.frames >= state.blockedUntil) {
    state.trial = { from: step, before: median };
    step += 1;
  } else if (median < 0.6 * FRAME_BUDGET_MS && step > 0) {
    step -= 1;
  }
  if (step === state.scaleStep) return;
  state.scaleStep = step;
  state.scaleChangedAt = state.frames;
  renderer.setPixelRatio((window.devicePixelRatio || 1) * SCALE_STEPS[step]);
}

export function createEngine(viewer, { optimise = true, adaptive = true, tiles = undefined } = {}) {
  const { scene, camera, renderer } = viewer;
  const software = isSoftwareRenderer(renderer.getContext());
  const hemisphere = scene.children.find((c) => c.isHemisphereLight);
  const sun = scene.children.find((c) => c.isDirectionalLight);
  const moon = new THREE.DirectionalLight(0x8899cc, 0);
  scene.add(moon);
  const state = { agents: { vehicle: [], pedestrian: [] }, meshes: [], extras: null, playing: true, t: 0, played: 0, last: null,
    weather: 'auto', hour: null, traffic: null, pedestrians: null, precipitation: null, frameTimes: [], root: null,
    world: null, frames: 0, scaleStep: 0, scaleChangedAt: 0, trial: null, blockedUntil: 0, software, adaptive };
  const dummy = new THREE.Object3D();

  function clear() {
    for (const mesh of state.meshes) { mesh.removeFromParent(); mesh.geometry.dispose(); }
    state.meshes = [];
    state.agents = { vehicle: [], pedestrian: [] };
  }

  /** Rebuild the loaded world model `root` for fast drawing (once per model; after window interiors are applied). */
  function prepare(root) {
    state.root = root;
    state.world = optimise ? prepareWorld(root, { software, tiles }) : null;
    return state.world;
  }

  const previousBeforeRender = scene.onBeforeRender;
  scene.onBeforeRender = (...args) => {
    previousBeforeRender.apply(scene, args);
    if (state.world && state.root?.parent) state.world.update(camera, renderer);
  };

  /** Attach the dynamics (.glb already fetched) to the loaded world model `root`. */
  function attach(root, gltf) {
    clear();
    prepare(root);
    state.extras = null;
    gltf.scene.traverse((node) => { if (!state.extras && node.userData.type === 'dynamics') state.extras = node.userData; });
    const agents = readTracks(gltf);
    state.agents.vehicle = agents.filter((a) => a.extras.type === 'vehicle');
    state.agents.pedestrian = agents.filter((a) => a.extras.type === 'pedestrian');
    const { body, cabin } = vehicleGeometry();
    const paint = new THREE.MeshLambertMaterial({ color: 0xffffff });
    const glass = new THREE.MeshLambertMaterial({ color: 0x303844, emissive: 0x000000 });
    const people = new THREE.MeshLambertMaterial({ color: 0xffffff });
    const bodies = instanced(body, paint, state.agents.vehicle);
    const cabins = instanced(cabin, glass, state.agents.vehicle);
    cabins.instanceColor = null;
    const persons = instanced(new THREE.BoxGeometry(0.35, 1.7, 0.45).translate(0, 0.85, 0), people, state.agents.pedestrian);
    state.meshes = [bodies, cabins, persons];
    state.meshes.forEach((m) => root.add(m));
    state.glass = glass;
    state.t = 0;
    root.updateMatrixWorld(true);
    update(0);
  }

  function scheduled(hour) {
    const entries = state.extras?.weather?.schedule?.entries || [];
    const before = entries.filter((e) => e.hour <= hour % 24);
    return before.length ? before[before.length - 1] : entries[entries.length - 1];
  }

  function localHour() { const d = new Date(); return d.getHours() + d.getMinutes() / 60; }

  /** What is shown now: the user's choices over the schedule at the local (or chosen) hour. */
  function current() {
    const hour = state.hour ?? localHour();
    const entry = scheduled(hour) || { weather: 'clear', traffic: 1, pedestrians: 1 };
    const weather = state.weather === 'auto' ? entry.weather : state.weather;
    return { hour, weather, traffic: state.traffic ?? entry.traffic, pedestrians: state.pedestrians ?? entry.pedestrians };
  }

  function applyWeather(now) {
    const presets = state.extras?.weather?.presets;
    const preset = presets?.[now.weather] || { cloud_cover: 0.1, fog_density: 0.0006, precipitation: 'none', precipitation_mm_h: 0, wind_mps: 2 };
    const schedule = state.extras?.weather?.schedule || {};
    const light = lighting(preset, now.hour, schedule.day_of_year, schedule.latitude_deg);
    if (!scene.fog?.isFogExp2) { scene.background = new THREE.Color(); scene.fog = new THREE.FogExp2(0xffffff, 0); }
    scene.background.setRGB(...light.sky);
    scene.fog.color.setRGB(...light.fog);
    scene.fog.density = light.fogDensity;
    if (hemisphere) { hemisphere.color.setRGB(...light.ambientColour); hemisphere.intensity = light.ambientIntensity; }
    const [x, y, z] = light.sunDirection;
    if (sun) { sun.position.set(x, z, -y).multiplyScalar(100); sun.color.setRGB(...light.sunColour); sun.intensity = light.sunIntensity; }
    moon.position.set(-x, Math.abs(z) + 0.3, y).multiplyScalar(100);
    moon.intensity = light.moonIntensity;
    if (state.glass) state.glass.emissive.setHex(light.streetLights ? 0xffd27a : 0x000000);
    setPrecipitation(light.precipitation, light.rate);
    state.light = light;
    return light;
  }

  function setPrecipitation(kind, rate) {
    const wanted = kind === 'none' ? null : `${kind}:${rate}`;
    if (state.precipitation?.userData.key === wanted) return;
    if (state.precipitation) { state.precipitation.removeFromParent(); state.precipitation.geometry.dispose(); state.precipitation = null; }
    if (!wanted) return;
    const points = precipitationPoints(kind, Math.round(Math.min(12000, 2500 * rate)));
    points.userData.key = wanted;
    points.userData.kind = kind;
    scene.add(points);
    state.precipitation = points;
  }

  function moveParticles(dt) {
    const points = state.precipitation;
    if (!points) return;
    const span = 60;
    const fall = points.userData.kind === 'snow' ? 0.08 : 0.9;
    const { unit, streak } = points.userData;
    for (let i = 1; i < unit.length; i += 3) unit[i] = (unit[i] - fall * dt + 1) % 1;
    const pos = points.geometry.attributes.position.array;
    const target = viewer.controls.target;
    const slant = streak * Math.min((state.light?.wind || 0) / 20, 0.5);  // wind tilts the streaks
    const stride = streak ? 6 : 3;
    for (let i = 0, k = 0; i < unit.length; i += 3, k += stride) {
      const x = target.x + (unit[i] - 0.5) * span, y = target.y + (unit[i + 1] - 0.2) * span * 0.6, z = target.z + (unit[i + 2] - 0.5) * span;
      pos[k] = x; pos[k + 1] = y; pos[k + 2] = z;
      if (streak) { pos[k + 3] = x + slant; pos[k + 4] = y + streak; pos[k + 5] = z; }
    }
    points.geometry.attributes.position.needsUpdate = true;
  }

  // Only agents inside the view frustum are drawn (compacted to the front of the instance buffers, their
  // colours moved along): in a street view most of the 700 agents are behind the camera, and SwiftShader
  // pays for every instance's vertices even when they are clipped.
  const frustum = new THREE.Frustum();
  const viewProjection = new THREE.Matrix4();
  const bounds = new THREE.Sphere(new THREE.Vector3(), 3);

  function place(mesh, agents, t, count, lift = 0) {
    const colours = mesh.userData.colours;
    const shown = mesh.instanceColor?.array;
    let drawn = 0;
    for (let i = 0; i < count; i++) {
      const a = agents[i];
      const n = a.times.length;
      const hz = (n - 1) / a.times[n - 1];
      const f = Math.min(t * hz, n - 1.0001);
      const k = Math.floor(f);
      const w = f - k;
      const p = a.position;
      dummy.position.set(p[3 * k] + (p[3 * k + 3] - p[3 * k]) * w, p[3 * k + 1] + (p[3 * k + 4] - p[3 * k + 1]) * w + lift,
        p[3 * k + 2] + (p[3 * k + 5] - p[3 * k + 2]) * w);
      bounds.center.copy(dummy.position).applyMatrix4(mesh.matrixWorld);
      if (!frustum.intersectsSphere(bounds)) continue;
      dummy.rotation.set(0, a.yaw[k] + (a.yaw[k + 1] - a.yaw[k]) * w, 0);
      dummy.updateMatrix();
      mesh.setMatrixAt(drawn, dummy.matrix);
      if (shown) for (let c = 0; c < 3; c++) shown[3 * drawn + c] = colours[3 * i + c];
      drawn += 1;
    }
    mesh.count = drawn;
    mesh.userData.placed = count;
    mesh.instanceMatrix.needsUpdate = true;
    if (shown) mesh.instanceColor.needsUpdate = true;
  }

  function update(dt) {
    const now = current();
    applyWeather(now);
    const duration = state.extras?.duration_s || 1;
    if (state.playing) { state.t = (state.t + dt) % duration; state.played += dt; }
    const [bodies, cabins, persons] = state.meshes;
    if (bodies) {
      camera.updateMatrixWorld();
      frustum.setFromProjectionMatrix(viewProjection.multiplyMatrices(camera.projectionMatrix, camera.matrixWorldInverse));
      const cars = Math.round(now.traffic * state.agents.vehicle.length);
      place(bodies, state.agents.vehicle, state.t, cars);
      place(cabins, state.agents.vehicle, state.t, cars);
      place(persons, state.agents.pedestrian, state.t, Math.round(now.pedestrians * state.agents.pedestrian.length));
    }
    moveParticles(dt);
    state.now = now;
  }

  function frame(time) {
    if (state.last !== null) {
      const dt = Math.min((time - state.last) / 1000, 0.2);
      state.frameTimes.push(time - state.last);
      if (state.frameTimes.length > 2000) state.frameTimes.shift();
      state.frames += 1;
      if (state.adaptive) adaptResolution(renderer, state);
      update(dt);
    }
    state.last = time;
    requestAnimationFrame(frame);
  }
  requestAnimationFrame(frame);

  /** Look at a vehicle from `distance` metres (the first one by default): where the traffic is. */
  function focus(index = 0, distance = 30) {
    const agent = state.agents.vehicle[index] || state.agents.pedestrian[index];
    if (!agent || !state.root) return;
    const k = Math.min(Math.floor(state.t * (agent.times.length - 1) / agent.times[agent.times.length - 1]), agent.times.length - 1);
    const target = new THREE.Vector3(...agent.position.slice(3 * k, 3 * k + 3)).add(state.root.position);
    viewer.controls.target.copy(target);
    camera.position.copy(target).add(new THREE.Vector3(distance * 0.7, distance * 0.55, distance * 0.7));
    camera.near = 0.5;
    camera.updateProjectionMatrix();
    viewer.controls.update();
  }

  /** What the renderer does now: internal resolution, scale, draw calls and triangles of the last frame. */
  function renderStats() {
    const size = renderer.getDrawingBufferSize(new THREE.Vector2());
    const { calls, triangles } = renderer.info.render;
    return { width: size.x, height: size.y, scale: renderer.getPixelRatio() / (window.devicePixelRatio || 1), calls, triangles, software,
      world: state.world?.stats || null };
  }

  /** 'auto': the adaptive scale keeps the frame budget; a number: that fixed scale of the canvas resolution. */
  function setResolution(mode) {
    state.adaptive = mode === 'auto';
    if (state.adaptive) return;
    const scale = Number(mode);
    if (!(scale > 0 && scale <= 1)) throw new Error(`resolution must be 'auto' or a scale in (0, 1], got ${mode}`);
    state.scaleStep = SCALE_STEPS.indexOf(scale) >= 0 ? SCALE_STEPS.indexOf(scale) : 0;
    renderer.setPixelRatio((window.devicePixelRatio || 1) * scale);
  }

  const raycaster = new THREE.Raycaster();
  /** What the world shows at a screen point (normalised device coordinates): node name and extras, or null. */
  function pickAt(x, y) {
    if (!state.root) return null;
    raycaster.setFromCamera(new THREE.Vector2(x, y), camera);
    const hit = raycaster.intersectObject(state.root, true).find((h) => h.object.visible);
    if (!hit) return null;
    const { levels, pieces, ...info } = state.world ? state.world.pick(hit) : { name: hit.object.name, ...hit.object.userData };
    return { ...info, point: hit.point.toArray() };
  }

  return {
    attach, clear, focus, pickAt, prepare, renderStats, setResolution, state, viewer,
    set(options) { Object.assign(state, options); update(0); },
    counts: () => ({ vehicles: state.meshes[0]?.userData.placed || 0, pedestrians: state.meshes[2]?.userData.placed || 0 }),
    drawnCounts: () => ({ vehicles: state.meshes[0]?.count || 0, pedestrians: state.meshes[2]?.count || 0 }),
  };
}
