// The NPC in a three.js scene: a generated rigged .glb (ARKit + viseme morph targets, clips idle/wave/nod/
// shake_head/point/shrug/walk) or, without one, a built-in head whose face has the same morph targets.
// Faces are driven by named weights: expression blendshapes (ARKit) plus visemes mapped to mouth shapes.
import * as THREE from 'three';
import { createViewer } from '/web/viewer.js';

// Viseme -> ARKit mouth weights, for rigs (and the built-in head) without viseme morph targets.
export const VISEME_SHAPES = {
  sil: {}, PP: { mouthClose: 0.7, mouthPressLeft: 0.4, mouthPressRight: 0.4 },
  FF: { mouthRollLower: 0.6, jawOpen: 0.1 }, TH: { jawOpen: 0.2, tongueOut: 0.3 }, DD: { jawOpen: 0.25 },
  kk: { jawOpen: 0.3 }, CH: { mouthFunnel: 0.6, jawOpen: 0.2 }, SS: { jawOpen: 0.12, mouthStretchLeft: 0.4, mouthStretchRight: 0.4 },
  nn: { jawOpen: 0.18 }, RR: { mouthPucker: 0.4, jawOpen: 0.18 }, aa: { jawOpen: 0.7 },
  E: { jawOpen: 0.4, mouthStretchLeft: 0.3, mouthStretchRight: 0.3 }, I: { jawOpen: 0.25, mouthSmileLeft: 0.3, mouthSmileRight: 0.3 },
  O: { jawOpen: 0.5, mouthFunnel: 0.6 }, U: { mouthPucker: 0.8, jawOpen: 0.15 },
};
const PROPS = [
  { name: 'Potion of Healing', color: 0xd8344a, pos: [-1.1, 0.35, 0.6], make: () => new THREE.CylinderGeometry(0.09, 0.12, 0.3, 16) },
  { name: 'Longsword', color: 0xb8c4d4, pos: [1.15, 0.45, 0.5], make: () => new THREE.BoxGeometry(0.05, 0.9, 0.05) },
  { name: 'Nairobi', color: 0x5aa05a, pos: [0.9, 0.05, 1.0], make: () => new THREE.BoxGeometry(0.5, 0.06, 0.35) },
];

// Built-in head: a sphere whose vertices carry ARKit-named morph targets computed from their place on the face.
function builtinHead() {
  const group = new THREE.Group();
  group.name = 'npc';
  const geo = new THREE.SphereGeometry(0.5, 48, 36);
  const pos = geo.attributes.position;
  const shapes = { jawOpen: [], mouthSmileLeft: [], mouthSmileRight: [], mouthFunnel: [], mouthPucker: [], mouthClose: [],
    mouthFrownLeft: [], mouthFrownRight: [], browInnerUp: [], browDownLeft: [], browDownRight: [], cheekPuff: [] };
  const v = new THREE.Vector3();
  for (let i = 0; i < pos.count; i++) {
    v.fromBufferAttribute(pos, i);
    const front = Math.max(0, v.z / 0.5);
    const mouth = Math.exp(-((v.y + 0.18) ** 2 + (v.x * 0.7) ** 2) / 0.012) * front;
    const side = (s) => Math.exp(-((v.y + 0.18) ** 2 + (v.x - s * 0.13) ** 2) / 0.006) * front;
    const jaw = v.y < -0.16 ? Math.min(1, (-0.16 - v.y) / 0.2) * front : 0;
    const brow = (s) => Math.exp(-((v.y - 0.16) ** 2 + (v.x - s * 0.15) ** 2) / 0.006) * front;
    shapes.jawOpen.push(0, -0.16 * jaw, -0.03 * jaw);
    shapes.mouthSmileLeft.push(0.03 * side(1), 0.05 * side(1), 0);
    shapes.mouthSmileRight.push(-0.03 * side(-1), 0.05 * side(-1), 0);
    shapes.mouthFrownLeft.push(0, -0.04 * side(1), 0);
    shapes.mouthFrownRight.push(0, -0.04 * side(-1), 0);
    shapes.mouthFunnel.push(-0.05 * v.x * mouth, 0, 0.06 * mouth);
    shapes.mouthPucker.push(-0.25 * v.x * mouth, 0, 0.08 * mouth);
    shapes.mouthClose.push(0, 0.02 * mouth * Math.sign(-0.18 - v.y), 0);
    shapes.browInnerUp.push(0, 0.05 * (brow(0.6) + brow(-0.6)), 0);
    shapes.browDownLeft.push(0, -0.04 * brow(1), 0);
    shapes.browDownRight.push(0, -0.04 * brow(-1), 0);
    shapes.cheekPuff.push(0.04 * v.x * front * (1 - Math.abs(v.y) * 2), 0, 0);
  }
  geo.morphAttributes.position = Object.values(shapes).map((a) => new THREE.Float32BufferAttribute(a, 3));
  geo.morphTargetsRelative = true;  // the shapes above are offsets from the rest face
  const head = new THREE.Mesh(geo, new THREE.MeshStandardMaterial({ color: 0xd9a982, roughness: 0.7 }));
  head.name = 'head';
  head.morphTargetDictionary = Object.fromEntries(Object.keys(shapes).map((k, i) => [k, i]));
  head.morphTargetInfluences = new Array(Object.keys(shapes).length).fill(0);
  const pivot = new THREE.Group();  // the neck: nods and head shakes turn the head around it
  pivot.name = 'headPivot';
  pivot.position.y = 1.12;
  group.add(pivot);
  head.position.y = 0.43;
  pivot.add(head);
  // the mouth: a dark ellipse whose morphs open, round and widen it
  const mouthGeo = new THREE.CircleGeometry(0.09, 32);
  const mp = mouthGeo.attributes.position;
  const open = [], round = [], wide = [];
  for (let i = 0; i < mp.count; i++) {
    const x = mp.getX(i), y = mp.getY(i);
    open.push(0, y * 7 - 0.01, 0); round.push(-x * 0.45, y * 1.2, 0); wide.push(x * 0.35, Math.abs(x) * 0.4, 0);
  }
  mouthGeo.morphAttributes.position = [open, round, wide].map((a) => new THREE.Float32BufferAttribute(a, 3));
  mouthGeo.morphTargetsRelative = true;
  const mouth = new THREE.Mesh(mouthGeo, new THREE.MeshBasicMaterial({ color: 0x3a1414 }));
  mouth.name = 'mouth';
  mouth.scale.set(1, 0.18, 1);
  mouth.morphTargetDictionary = { jawOpen: 0, mouthFunnel: 1, mouthSmile: 2 };
  mouth.morphTargetInfluences = [0, 0, 0];
  mouth.position.set(0, 0.43 - 0.19, 0.475);
  pivot.add(mouth);
  for (const s of [-1, 1]) {
    const eye = new THREE.Mesh(new THREE.SphereGeometry(0.06, 16, 12), new THREE.MeshStandardMaterial({ color: 0x1b2230 }));
    eye.name = s < 0 ? 'eyeRight' : 'eyeLeft';
    eye.position.set(s * 0.16, 0.5, 0.44);
    pivot.add(eye);
  }
  const body = new THREE.Mesh(new THREE.CylinderGeometry(0.28, 0.42, 1.0, 24), new THREE.MeshStandardMaterial({ color: 0x4a5f8a }));
  body.position.y = 0.62;
  group.add(body);
  return group;
}

export function createNpcScene(canvas, headers) {
  const viewer = createViewer(canvas, { headers });
  const { scene, camera, controls } = viewer;
  const clickable = [];
  // The NPC and its props stand on a stage: at the origin on the grid, or at the NPC's place in its world.
  const stage = new THREE.Group();
  stage.name = 'stage';
  scene.add(stage);
  for (const p of PROPS) {
    const mesh = new THREE.Mesh(p.make(), new THREE.MeshStandardMaterial({ color: p.color }));
    mesh.position.set(...p.pos);
    mesh.userData = { kind: 'object', name: p.name };
    stage.add(mesh);
    clickable.push(mesh);
  }
  let npc = builtinHead();
  let faces = [];      // meshes with morph targets
  let mixer = null;
  let clips = {};
  const weights = {};  // current face weights by name
  const expression = {};
  let gesture = { name: 'idle', started: 0 };

  function adopt(root) {
    npc = root;
    root.traverse((n) => { n.userData = { kind: 'npc', name: 'npc' }; if (n.morphTargetDictionary) faces.push(n); });
    clickable.push(root);
    stage.add(root);
  }
  adopt(npc);
  camera.position.set(0, 1.6, 3.2);
  controls.target.set(0, 1.2, 0);
  controls.update();
  canvas.dataset.state = 'loaded';

  async function loadGlb(url) {
    const gltf = await viewer.load(url);
    npc.removeFromParent();
    clickable.splice(clickable.indexOf(npc), 1);
    faces = [];
    adopt(gltf.scene);
    if (world) frameOnNpc();  // viewer.load framed the model at the origin
    mixer = new THREE.AnimationMixer(gltf.scene);
    clips = Object.fromEntries(gltf.animations.map((c) => [c.name, mixer.clipAction(c)]));
    if (clips.idle) clips.idle.play();
  }

  function setExpression(blendshapes) {
    for (const k of Object.keys(expression)) delete expression[k];
    Object.assign(expression, blendshapes);
  }

  function playGesture(clip) {
    gesture = { name: clip, started: performance.now() / 1000 };
    if (mixer && clips[clip]) {
      const action = clips[clip];
      action.reset().setLoop(clip === 'walk' ? THREE.LoopRepeat : THREE.LoopOnce, clip === 'walk' ? 3 : 1).play();
      action.clampWhenFinished = false;
    }
  }

  // One frame: target weights = expression + current viseme (mouth), eased; built-in head plays gestures procedurally.
  function update(viseme, dt) {
    const target = { ...expression, ...(VISEME_SHAPES[viseme] || {}) };
    const names = new Set([...Object.keys(weights), ...Object.keys(target)]);
    const ease = Math.min(1, dt * 18);
    for (const name of names) weights[name] = (weights[name] || 0) + ((target[name] || 0) - (weights[name] || 0)) * ease;
    for (const mesh of faces) {
      const dict = mesh.morphTargetDictionary;
      for (const [name, w] of Object.entries(weights)) {
        if (name in dict) mesh.morphTargetInfluences[dict[name]] = w;
      }
      const vis = `viseme_${viseme}`;
      for (const key of Object.keys(dict)) if (key.startsWith('viseme_')) mesh.morphTargetInfluences[dict[key]] = key === vis ? 1 : 0;
      if ('mouthSmile' in dict) mesh.morphTargetInfluences[dict.mouthSmile] = ((weights.mouthSmileLeft || 0) + (weights.mouthSmileRight || 0)) / 2;
    }
    if (mixer) { mixer.update(dt); return; }
    const t = performance.now() / 1000 - gesture.started;
    const k = Math.max(0, 1 - t / 1.6);
    const moves = {
      nod: [Math.sin(t * 9) * 0.18 * k, 0, 0, 0], shake_head: [0, Math.sin(t * 10) * 0.3 * k, 0, 0],
      wave: [0, 0, Math.sin(t * 8) * 0.12 * k, 0], shrug: [0, 0, 0, Math.sin(Math.min(t, 1.2) * Math.PI / 1.2) * 0.08],
      point: [0.1 * k, 0.4 * k, 0, 0], walk: [0, 0, 0, Math.abs(Math.sin(t * 7)) * 0.06 * Math.max(0, 1 - t / 3)],
    }[gesture.name] || [0, 0, 0, 0];
    const pivot = npc.getObjectByName('headPivot') || npc;
    pivot.rotation.set(moves[0], moves[1], 0);
    npc.rotation.z = moves[2];
    npc.position.y = moves[3];
  }

  const raycaster = new THREE.Raycaster();
  function pick(event) {
    const rect = canvas.getBoundingClientRect();
    const ndc = new THREE.Vector2(((event.clientX - rect.left) / rect.width) * 2 - 1, -((event.clientY - rect.top) / rect.height) * 2 + 1);
    raycaster.setFromCamera(ndc, camera);
    const hit = raycaster.intersectObjects(clickable, true)[0];
    return hit ? hit.object.userData : null;
  }

  // Where the built-in NPC's face is on screen (for tests and for pointing the camera).
  function screenOf(kind, name) {
    const rect = canvas.getBoundingClientRect();
    const toScreen = (p) => ({ x: rect.left + (p.x + 1) / 2 * rect.width, y: rect.top + (1 - p.y) / 2 * rect.height });
    if (kind === 'npc') {
      const p = new THREE.Vector3();
      (npc.getObjectByName('head') || npc).getWorldPosition(p);
      return toScreen(p.project(camera));
    }
    // An object: a point of its bounding box that a click there really picks (a building's meshes sit at
    // the origin with world-space vertices, and the NPC may stand in front of its middle).
    const parts = clickable.filter((o) => o.userData.name === name);
    const box = new THREE.Box3();
    parts.forEach((o) => box.expandByObject(o));
    const c = box.getCenter(new THREE.Vector3());
    const candidates = [c];
    for (const fy of [0.5, 0.8, 0.3]) {
      for (const [fx, fz] of [[0.5, 0.5], [0.2, 0.5], [0.8, 0.5], [0.5, 0.2], [0.5, 0.8], [0.2, 0.2], [0.8, 0.8], [0.2, 0.8], [0.8, 0.2]]) {
        candidates.push(new THREE.Vector3(box.min.x + fx * (box.max.x - box.min.x), box.min.y + fy * (box.max.y - box.min.y),
          box.min.z + fz * (box.max.z - box.min.z)));
      }
    }
    for (const p of candidates) {
      const s = toScreen(p.clone().project(camera));
      if (s.x < rect.left + 2 || s.x > rect.right - 2 || s.y < rect.top + 2 || s.y > rect.bottom - 2) continue;
      const hit = pick({ clientX: s.x, clientY: s.y });
      if (hit && hit.kind === 'object' && hit.name === name) return s;
    }
    for (let fy = 0.05; fy < 1; fy += 0.06) {  // none of those on screen: the first canvas point that picks it
      for (let fx = 0.05; fx < 1; fx += 0.06) {
        const s = { x: rect.left + fx * rect.width, y: rect.top + fy * rect.height };
        const hit = pick({ clientX: s.x, clientY: s.y });
        if (hit && hit.kind === 'object' && hit.name === name) return s;
      }
    }
    return toScreen(c.project(camera));
  }

  // ---------------------------------------------------------------- the NPC in its world
  let world = null;  // {root, info, building} once a world .glb is in the scene
  const backdrop = scene.background;
  const SKY = new THREE.Color(0x9cc3e4);
  const down = new THREE.Raycaster();
  const DOWN = new THREE.Vector3(0, -1, 0);

  /** First mesh hit straight down at world metres (x east, y north); glTF frame is X east, Y up, Z south. */
  function hitDown(x, y, targets, skip = []) {
    down.set(new THREE.Vector3(x, 1e4, -y), DOWN);
    return down.intersectObjects(targets, true).find((h) => h.object.isMesh && !skip.includes(extrasOf(h.object).type)) || null;
  }

  /** A node's glb extras (three.js puts them in userData), from the mesh or the node above it. */
  function extrasOf(obj) {
    for (let o = obj; o; o = o.parent) if (o.userData && o.userData.type) return o.userData;
    return {};
  }

  /** The meshes of one building (walls, windows, balconies are separate nodes sharing extras.id). */
  function buildingParts(root, id) {
    const parts = [];
    root.getObjectByName('buildings')?.traverse((n) => { if (n.isMesh && extrasOf(n).id === id) parts.push(n); });
    return parts;
  }

  /** The building at (or nearest to, within 25 m) a point: {id, parts, box} or null. */
  function buildingNear(root, x, y) {
    const hit = hitDown(x, y, [root]);
    let id = hit && extrasOf(hit.object).type === 'building' ? extrasOf(hit.object).id : null;
    if (!id) {
      let best = 25 ** 2;
      const p = new THREE.Vector3(x, 0, -y);
      const c = new THREE.Vector3();
      root.getObjectByName('buildings')?.traverse((n) => {
        if (!n.isMesh || extrasOf(n).type !== 'building') return;
        new THREE.Box3().setFromObject(n).getCenter(c);
        const d = (c.x - p.x) ** 2 + (c.z - p.z) ** 2;
        if (d < best) { best = d; id = extrasOf(n).id; }
      });
    }
    if (!id) return null;
    const parts = buildingParts(root, id);
    const box = new THREE.Box3();
    parts.forEach((m) => box.expandByObject(m));
    return { id, parts, box, inside: !!hit && extrasOf(hit.object).id === id };
  }

  /** Where to stand for a place: the place itself, or just outside the building it is in, on open ground. */
  function standingSpot(root, place, building) {
    if (!building || !building.inside) return { x: place.x, y: place.y, facing: [0, 1] };
    const { min, max } = building.box;
    const margin = 1.4;
    const sides = [[0, 1], [1, 0], [0, -1], [-1, 0]];  // (east, south) in the glTF x/z plane: south first
    for (const [dx, dz] of sides) {
      const X = dx > 0 ? max.x + margin : dx < 0 ? min.x - margin : place.x;
      const Z = dz > 0 ? max.z + margin : dz < 0 ? min.z - margin : -place.y;
      const hit = hitDown(X, -Z, [root]);
      if (hit && !['building', 'vegetation', 'water'].includes(extrasOf(hit.object).type)) return { x: X, y: -Z, facing: [dx, dz] };
    }
    return { x: place.x, y: -(max.z + margin), facing: [0, 1] };
  }

  /** Camera a few metres in front of the NPC, a little to the side and above, looking at its face. */
  function frameOnNpc() {
    stage.updateMatrixWorld(true);
    camera.position.copy(stage.localToWorld(new THREE.Vector3(1.3, 2.3, 5.4)));
    controls.target.copy(stage.localToWorld(new THREE.Vector3(0, 1.3, 0)));
    camera.near = 0.05;
    camera.far = 5000;
    camera.updateProjectionMatrix();
    controls.update();
  }

  /**
   * Show the NPC's world (.glb of that version) and stand the NPC at ``place`` ({name, kind, x, y} in world
   * metres east/north of the south-west corner) on the terrain; the building there becomes clickable.
   */
  async function loadWorld(url, place, meta = {}) {
    canvas.dataset.world = 'loading';
    try {
      const gltf = await viewer.fetchGltf(url);
      clearWorld();
      const root = gltf.scene;
      scene.add(root);
      root.updateMatrixWorld(true);
      const building = buildingNear(root, place.x, place.y);
      const spot = standingSpot(root, place, building);
      const ground = [root.getObjectByName('terrain'), root.getObjectByName('roads')].filter(Boolean);
      const floor = hitDown(spot.x, spot.y, ground.length ? ground : [root], ['water']);  // feet on the bank or bed
      const height = floor ? floor.point.y : 0;
      stage.position.set(spot.x, height, -spot.y);
      stage.rotation.y = Math.atan2(spot.facing[0], spot.facing[1]);  // face away from the building
      let buildingName = null;
      if (building) {
        buildingName = building.inside && place.name ? place.name : `building ${building.id}`;
        for (const m of building.parts) Object.assign(m.userData, { kind: 'object', name: buildingName });
        clickable.push(...building.parts);
      }
      viewer.grid.visible = false;
      scene.background = SKY;
      let nodes = 0;
      root.traverse(() => { nodes += 1; });
      world = { root, building, info: { ...meta, place, nodes, height, building: building && { id: building.id, name: buildingName },
        standing: { x: spot.x, y: spot.y, z: height } } };
      frameOnNpc();
      canvas.dataset.world = 'loaded';
      return world.info;
    } catch (err) {
      canvas.dataset.world = 'error';
      throw err;
    }
  }

  /** Back to the empty grid (an NPC without a world). */
  function clearWorld() {
    if (!world) return;
    world.root.removeFromParent();
    for (const m of world.building?.parts || []) clickable.splice(clickable.indexOf(m), 1);
    world = null;
    stage.position.set(0, 0, 0);
    stage.rotation.set(0, 0, 0);
    viewer.grid.visible = true;
    scene.background = backdrop;
    camera.position.set(0, 1.6, 3.2);
    controls.target.set(0, 1.2, 0);
    controls.update();
    delete canvas.dataset.world;
  }

  /** Where the NPC stands now, in world metres (for tests): {x east, y north, z up}. */
  function npcWorldPosition() {
    const p = new THREE.Vector3();
    stage.getWorldPosition(p);
    return { x: p.x, y: -p.z, z: p.y };
  }

  return { viewer, loadGlb, setExpression, playGesture, update, pick, screenOf, weights, loadWorld, clearWorld,
    npcWorldPosition, worldInfo: () => world && world.info };
}
