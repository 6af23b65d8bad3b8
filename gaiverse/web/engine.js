// The world engine: replays a world's simulated traffic and pedestrians (the dynamics .glb's animation
// keyframes, drawn as instanced meshes) and renders its weather and time of day (sun, sky, fog, rain and
// snow particles, night lighting), following the world's schedule unless the user overrides it.
// Implements ENV-d2 in the web terminal. The lighting model is a port of gaiverse/world/dynamics/weather.py.
import * as THREE from 'three';

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
  mesh.raycast = () => {};  // walking and picking ignore the traffic
  const colour = new THREE.Color();
  agents.forEach((a, i) => mesh.setColorAt(i, colour.setRGB(...a.extras.colour.map((c) => c / 255), THREE.SRGBColorSpace)));
  return mesh;
}

function vehicleGeometry() {
  const body = new THREE.BoxGeometry(4.4, 0.75, 1.65).translate(0, 0.6, 0);
  const cabin = new THREE.BoxGeometry(2.4, 0.55, 1.45).translate(-0.3, 1.25, 0);
  return { body, cabin };
}

function precipitationPoints(kind, count) {
  const positions = new Float32Array(count * 3);
  for (let i = 0; i < positions.length; i++) positions[i] = Math.random();
  const geometry = new THREE.BufferGeometry();
  geometry.setAttribute('position', new THREE.BufferAttribute(positions, 3));
  const material = new THREE.PointsMaterial({ color: kind === 'snow' ? 0xffffff : 0xaabbdd, size: kind === 'snow' ? 0.5 : 0.18,
    transparent: true, opacity: kind === 'snow' ? 0.95 : 0.75, depthWrite: false });
  const points = new THREE.Points(geometry, material);
  points.frustumCulled = false;
  points.userData.unit = positions.slice();
  return points;
}

export function createEngine(viewer) {
  const { scene, camera } = viewer;
  const hemisphere = scene.children.find((c) => c.isHemisphereLight);
  const sun = scene.children.find((c) => c.isDirectionalLight);
  const moon = new THREE.DirectionalLight(0x8899cc, 0);
  scene.add(moon);
  const state = { agents: { vehicle: [], pedestrian: [] }, meshes: [], extras: null, playing: true, t: 0, played: 0, last: null,
    weather: 'auto', hour: null, traffic: null, pedestrians: null, precipitation: null, frameTimes: [], root: null };
  const dummy = new THREE.Object3D();

  function clear() {
    for (const mesh of state.meshes) { mesh.removeFromParent(); mesh.geometry.dispose(); }
    state.meshes = [];
    state.agents = { vehicle: [], pedestrian: [] };
  }

  /** Attach the dynamics (.glb already fetched) to the loaded world model `root`. */
  function attach(root, gltf) {
    clear();
    state.root = root;
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
    const unit = points.userData.unit;
    for (let i = 1; i < unit.length; i += 3) unit[i] = (unit[i] - fall * dt + 1) % 1;
    const pos = points.geometry.attributes.position.array;
    const target = viewer.controls.target;
    for (let i = 0; i < pos.length; i += 3) {
      pos[i] = target.x + (unit[i] - 0.5) * span;
      pos[i + 1] = target.y + (unit[i + 1] - 0.2) * span * 0.6;
      pos[i + 2] = target.z + (unit[i + 2] - 0.5) * span;
    }
    points.geometry.attributes.position.needsUpdate = true;
  }

  function place(mesh, agents, t, count, lift = 0) {
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
      dummy.rotation.set(0, a.yaw[k] + (a.yaw[k + 1] - a.yaw[k]) * w, 0);
      dummy.updateMatrix();
      mesh.setMatrixAt(i, dummy.matrix);
    }
    mesh.count = count;
    mesh.instanceMatrix.needsUpdate = true;
  }

  function update(dt) {
    const now = current();
    applyWeather(now);
    const duration = state.extras?.duration_s || 1;
    if (state.playing) { state.t = (state.t + dt) % duration; state.played += dt; }
    const [bodies, cabins, persons] = state.meshes;
    if (bodies) {
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

  return {
    attach, clear, focus, state, viewer,
    set(options) { Object.assign(state, options); update(0); },
    counts: () => ({ vehicles: state.meshes[0]?.count || 0, pedestrians: state.meshes[2]?.count || 0 }),
  };
}
