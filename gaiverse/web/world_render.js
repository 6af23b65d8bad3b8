// Draws a loaded world .glb cheaply enough for a software renderer (ENV-d2 smoothness), keeping its look.
//
// Profiling the engine in headless chromium on SwiftShader showed the static world, not the agents, as the
// cost: 4x MSAA, the 125k-triangle terrain drawn whole (all of a 1 km world although the camera sees a
// wedge of it), every tree of the world drawn by one instanced call, and one draw call per building. So after
// load the world is rebuilt once:
// - the terrain grid (extras.cells) is cut into tiles, each with its own index ranges for 1, 2, 4, 8 and 16 cell
//   steps plus skirts that hide the cracks between levels; each frame a tile draws the coarsest level whose
//   height/colour error projects to under a pixel (screen-space error LOD), and tiles off screen are culled;
// - opaque static meshes (roads, junctions, buildings, walls, windows) and every plant instance are merged per
//   tile and material into one draw call, with a pick map (triangle range -> node name and extras, plant
//   instance ids) so semantic ids survive, and tiles off screen are culled;
// - window interiors (parallax shader, 46 depth taps a pixel) switch to their baked room texture far away;
// - on a software renderer the PBR vertex-colour material becomes a per-vertex lit Lambert one (the world is
//   matte: roughness 0.9, no metal; faces are flat), so each pixel costs about an unlit material;
// - every mesh gets its origin at its centre and the terrain is drawn last, so the renderer's front-to-back
//   sort lets the depth test skip the hidden pixels instead of shading them.
import * as THREE from 'three';
import { mergeGeometries } from 'three/addons/utils/BufferGeometryUtils.js';

/** Tile sizes: bigger tiles mean fewer draw calls, smaller ones tighter culling and LOD (profiled on SwiftShader). */
export const TILES = { terrainCells: 32, mergeM: 128 };
const LOD_STEPS = [1, 2, 4, 8, 16];
const PIXEL_ERROR = 1.0;
const PARALLAX_MIN_PX = 14;  // a window narrower on screen than this shows its baked room

// ---- terrain: tiles with screen-space-error LOD ----

function copyVertex(out, src, i, k) {
  for (let c = 0; c < src.itemSize; c++) out[k * src.itemSize + c] = src.array[i * src.itemSize + c];
}

function tileAttribute(src, ids) {
  const out = new src.array.constructor(ids.length * src.itemSize);
  ids.forEach((i, k) => copyVertex(out, src, i, k));
  return new THREE.BufferAttribute(out, src.itemSize, src.normalized);
}

// Height and colour error (metres) of drawing the tile's grid with `step` cells instead of one.
function lodError(grid, nr, nc, step, height, colour) {
  let error = 0;
  for (let i = 0; i <= nr; i++) {
    for (let j = 0; j <= nc; j++) {
      const i0 = Math.min(Math.floor(i / step) * step, nr - step), j0 = Math.min(Math.floor(j / step) * step, nc - step);
      const u = (i - i0) / step, v = (j - j0) / step;
      const at = (f, a, b) => f(grid(i0 + a, j0 + b));
      const lerp = (f) => (1 - u) * ((1 - v) * at(f, 0, 0) + v * at(f, 0, step)) + u * ((1 - v) * at(f, step, 0) + v * at(f, step, step));
      const dh = Math.abs(lerp(height) - height(grid(i, j)));
      const dc = colour ? Math.abs(lerp(colour) - colour(grid(i, j))) : 0;
      error = Math.max(error, dh, dc * step * 2);
    }
  }
  return error;
}

function skirtTriangles(border, steps, skirtOf) {
  const out = [];
  for (let k = 0; k + steps < border.length; k += steps) {
    const p = border[k], q = border[k + steps];
    const ps = skirtOf.get(p), qs = skirtOf.get(q);
    out.push(p, ps, q, q, ps, qs, p, q, ps, q, qs, ps);  // both windings: a crack is seen from either side
  }
  return out;
}

// `inner`: which edges (north, south, west, east) border another tile; only those get skirts (the world's own
// border keeps its open edge, as the .glb draws it).
function terrainTile(source, cols, r0, c0, nr, nc, cellM, inner) {
  const gridIds = [];
  for (let i = 0; i <= nr; i++) for (let j = 0; j <= nc; j++) gridIds.push((r0 + i) * (cols + 1) + c0 + j);
  const local = (i, j) => i * (nc + 1) + j;
  const all = [[], [], [], []];
  for (let j = 0; j <= nc; j++) { all[0].push(local(0, j)); all[1].push(local(nr, j)); }
  for (let i = 0; i <= nr; i++) { all[2].push(local(i, 0)); all[3].push(local(i, nc)); }
  const edges = all.filter((_, k) => inner[k]);
  const skirtOf = new Map();
  const skirtIds = [];
  for (const edge of edges) for (const v of edge) if (!skirtOf.has(v)) { skirtOf.set(v, gridIds.length + skirtIds.length); skirtIds.push(v); }
  const ids = [...gridIds, ...skirtIds.map((v) => gridIds[v])];
  const geometry = new THREE.BufferGeometry();
  for (const [name, attribute] of Object.entries(source.attributes)) geometry.setAttribute(name, tileAttribute(attribute, ids));
  const position = geometry.attributes.position;
  const skirtDepth = 4 * cellM;
  for (let k = gridIds.length; k < ids.length; k++) position.setY(k, position.getY(k) - skirtDepth);
  const height = (v) => position.getY(v);
  const colourAttr = geometry.attributes.color;
  const colour = colourAttr ? (v) => (colourAttr.getX(v) + colourAttr.getY(v) + colourAttr.getZ(v)) / 3 : null;
  const indices = [];
  const levels = [];
  for (const step of LOD_STEPS) {
    if (nr % step || nc % step || step > Math.max(nr, nc)) continue;
    const start = indices.length;
    for (let i = 0; i < nr; i += step) {
      for (let j = 0; j < nc; j += step) {
        const a = local(i, j), b = local(i, j + step), d = local(i + step, j), e = local(i + step, j + step);
        indices.push(a, d, b, b, d, e);
      }
    }
    for (const edge of edges) indices.push(...skirtTriangles(edge, step, skirtOf));
    levels.push({ step, start, count: indices.length - start, error: step === 1 ? 0 : lodError(local, nr, nc, step, height, colour) });
  }
  geometry.setIndex(indices);
  geometry.setDrawRange(levels[0].start, levels[0].count);
  geometry.computeBoundingBox();
  geometry.computeBoundingSphere();
  return { geometry, levels };
}

function tileTerrain(mesh, toRoot, tiles) {
  const [rows, cols] = mesh.userData.cells || [];
  const source = mesh.geometry.clone().applyMatrix4(toRoot);
  if (!rows || source.attributes.position.count !== (rows + 1) * (cols + 1)) return null;
  const cellM = mesh.userData.cell_m || 1;
  const out = [];
  for (let r0 = 0; r0 < rows; r0 += tiles.terrainCells) {
    for (let c0 = 0; c0 < cols; c0 += tiles.terrainCells) {
      const nr = Math.min(tiles.terrainCells, rows - r0), nc = Math.min(tiles.terrainCells, cols - c0);
      const inner = [r0 > 0, r0 + nr < rows, c0 > 0, c0 + nc < cols];
      const { geometry, levels } = terrainTile(source, cols, r0, c0, nr, nc, cellM, inner);
      const tile = new THREE.Mesh(geometry, mesh.material);
      tile.name = `${mesh.name}_tile_${r0}_${c0}`;
      tile.userData = { ...mesh.userData, tile: [r0, c0], levels };
      out.push(tile);
    }
  }
  source.dispose();
  return out;
}

// ---- static parts: every opaque mesh and every plant instance, in the root's frame, with its semantic ids ----

function tileKey(x, z, size) { return `${Math.floor(x / size)}:${Math.floor(z / size)}`; }

// Plants are static: each instance becomes a part of its tile's merged mesh (one draw call for all species
// of a tile, where instancing needed one per species and tile).
function instanceParts(mesh, toRoot) {
  const data = mesh.userData.type ? mesh.userData : (mesh.parent?.userData || {});  // extras may sit on a group
  const ids = data.instance_ids || [];
  const source = withNormals(mesh.geometry);
  const matrix = new THREE.Matrix4();
  const parts = [];
  for (let i = 0; i < mesh.count; i++) {
    mesh.getMatrixAt(i, matrix);
    const geometry = source.clone().applyMatrix4(matrix.premultiply(toRoot));
    if (mesh.instanceColor) tint(geometry, mesh.getColorAt(i, new THREE.Color()));
    parts.push({ geometry, material: mesh.material,
      info: { type: data.type || 'vegetation', species: data.species, id: ids[i] ?? `${mesh.name}:${i}`, name: mesh.name } });
  }
  if (source !== mesh.geometry) source.dispose();
  return parts;
}

function tint(geometry, colour) {
  const count = geometry.attributes.position.count;
  if (!geometry.attributes.color) geometry.setAttribute('color', new THREE.BufferAttribute(new Float32Array(count * 3).fill(1), 3));
  const c = geometry.attributes.color;
  for (let v = 0; v < count; v++) c.setXYZ(v, c.getX(v) * colour.r, c.getY(v) * colour.g, c.getZ(v) * colour.b);
}

function meshPart(mesh, root, toRoot) {
  const source = withNormals(mesh.geometry);
  const geometry = (source === mesh.geometry ? source.clone() : source).applyMatrix4(toRoot);
  geometry.morphAttributes = {};
  return { geometry, material: mesh.material, info: semantic(mesh, root) };
}

// ---- static meshes: merged per tile and material, with a pick map ----

function signature(geometry) {
  const attributes = Object.entries(geometry.attributes).sort(([a], [b]) => a.localeCompare(b))
    .map(([name, a]) => `${name}:${a.itemSize}:${a.normalized}:${a.array.constructor.name}`);
  return `${geometry.index ? 'i' : 'n'}|${attributes.join(',')}`;
}

function semantic(node, root) {
  for (let o = node; o && o !== root; o = o.parent) if (o.userData.type && o.userData.id) return { name: o.name, ...o.userData };
  return { name: node.name, ...node.userData };
}

function mergeStatic(parts, tiles, materialOf) {
  const groups = new Map();
  const centre = new THREE.Vector3();
  for (const part of parts) {
    part.material = materialOf(part.material);
    if (part.material.userData.gouraud) part.geometry = plainGeometry(part.geometry);
    part.geometry.computeBoundingBox();
    part.geometry.boundingBox.getCenter(centre);
    const key = `${tileKey(centre.x, centre.z, tiles.mergeM)}|${part.material.uuid}|${signature(part.geometry)}`;
    if (!groups.has(key)) groups.set(key, { material: part.material, parts: [] });
    groups.get(key).parts.push(part);
  }
  const merged = [];
  for (const { material, parts } of groups.values()) {
    const geometry = mergeGeometries(parts.map((p) => p.geometry), false);
    if (!geometry) continue;
    let start = 0;
    const pieces = parts.map(({ geometry: g, info }) => {
      const triangles = (g.index ? g.index.count : g.attributes.position.count) / 3;
      start += triangles;
      g.dispose();
      return { end: start, info };
    });
    geometry.computeBoundingBox();
    const mesh = new THREE.Mesh(geometry, material);
    mesh.name = `merged_${merged.length}`;
    mesh.userData = { type: 'merged', pieces };
    merged.push(mesh);
  }
  return merged;
}

// Move a mesh's origin to the centre of its geometry so the renderer's depth sort (front to back for opaque
// objects) sees where it is; returns its box in the parent's frame.
function centred(mesh) {
  mesh.geometry.computeBoundingBox();
  const box = mesh.geometry.boundingBox.clone();
  const centre = box.getCenter(new THREE.Vector3());
  mesh.geometry.translate(-centre.x, -centre.y, -centre.z);
  mesh.geometry.computeBoundingSphere();
  mesh.position.copy(centre);
  return box;
}

/** The node name and extras (type, id, ...) behind a raycast hit on the prepared world. */
export function pickInfo(hit) {
  const { object } = hit;
  if (object.userData.pieces) {
    const { pieces } = object.userData;
    let lo = 0, hi = pieces.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (pieces[mid].end > hit.faceIndex) hi = mid; else lo = mid + 1; }
    return pieces[lo].info;
  }
  if (object.isInstancedMesh && hit.instanceId !== undefined && object.userData.instance_ids) {
    return { name: object.name, ...object.userData, id: object.userData.instance_ids[hit.instanceId] };
  }
  return { name: object.name, ...object.userData };
}

// ---- materials ----

// Everything per vertex (Gouraud): the same Lambert sums three's per-pixel Lambert does (ambient, hemisphere and
// directional irradiance over pi), then the sRGB encoding and the fog, evaluated at the vertices. For flat
// faces (a normal per face, one colour) lighting and encoding are exact; on the smooth 4 m terrain grid and
// for the fog (which changes over hundreds of metres) the interpolation is invisible. The pixel shader only
// writes the interpolated colour, which is what a software rasteriser pays for, a million times a frame.
const GOURAUD_VERTEX = /* glsl */ `
#include <common>
#include <color_pars_vertex>
#include <lights_pars_begin>
uniform vec3 diffuse;
#ifdef USE_FOG
uniform vec3 fogColor;
#ifdef FOG_EXP2
uniform float fogDensity;
#else
uniform float fogNear;
uniform float fogFar;
#endif
#endif
varying vec3 vShade;
vec3 encodeSRGB(vec3 c) {
  return mix(c * 12.92, pow(max(c, vec3(0.0)), vec3(0.41666)) * 1.055 - vec3(0.055), vec3(greaterThan(c, vec3(0.0031308))));
}
void main() {
  #include <color_vertex>
  #include <beginnormal_vertex>
  #include <defaultnormal_vertex>
  #include <begin_vertex>
  #include <project_vertex>
  vec3 n = normalize(transformedNormal);
  vec3 irradiance = getAmbientLightIrradiance(ambientLightColor);
  #if NUM_HEMI_LIGHTS > 0
  for (int i = 0; i < NUM_HEMI_LIGHTS; i++) irradiance += getHemisphereLightIrradiance(hemisphereLights[i], n);
  #endif
  #if NUM_DIR_LIGHTS > 0
  for (int i = 0; i < NUM_DIR_LIGHTS; i++) irradiance += saturate(dot(n, directionalLights[i].direction)) * directionalLights[i].color;
  #endif
  vec3 albedo = diffuse;
  #if defined( USE_COLOR ) || defined( USE_COLOR_ALPHA ) || defined( USE_INSTANCING_COLOR )
  albedo *= vColor.rgb;
  #endif
  vShade = encodeSRGB(albedo * irradiance * RECIPROCAL_PI);
  #ifdef USE_FOG
  float depth = -mvPosition.z;
  #ifdef FOG_EXP2
  float fog = 1.0 - exp(-fogDensity * fogDensity * depth * depth);
  #else
  float fog = smoothstep(fogNear, fogFar, depth);
  #endif
  vShade = mix(vShade, fogColor, fog);  // as three's fog_fragment: mixed after the output encoding
  #endif
}`;

const GOURAUD_FRAGMENT = /* glsl */ `
varying vec3 vShade;
void main() {
  gl_FragColor = vec4(vShade, 1.0);
}`;

/** A per-vertex lit stand-in for an opaque, untextured, one-sided MeshStandardMaterial (null if there is none). */
function gouraudOf(material) {
  if (!material.isMeshStandardMaterial || material.transparent || material.map || material.side !== THREE.FrontSide) return null;
  const gouraud = new THREE.ShaderMaterial({
    uniforms: THREE.UniformsUtils.merge([THREE.UniformsLib.lights, THREE.UniformsLib.fog, { diffuse: { value: new THREE.Color() } }]),
    vertexShader: GOURAUD_VERTEX, fragmentShader: GOURAUD_FRAGMENT, lights: true, fog: true, vertexColors: material.vertexColors,
  });
  gouraud.uniforms.diffuse.value.copy(material.color);
  gouraud.name = `${material.name}:gouraud`;
  gouraud.userData = { ...material.userData, gouraud: true };
  return gouraud;
}

// One stand-in per colour: glTF loaders make a flat-shaded and a smooth variant of the same material, which
// per-vertex lighting does not need (the normals say which), so both merge into the same draw calls.
function cheapOf(material, cache) {
  const key = material.isMeshStandardMaterial ? `${material.color.getHexString()}|${material.vertexColors}` : material.uuid;
  if (!cache.has(key)) cache.set(key, gouraudOf(material) || material);
  return cache.get(key);
}

// Untextured parts in one layout (unindexed; position, normal, RGB colour as float) so that parts from
// different meshes merge into one geometry per tile and material.
function plainGeometry(geometry) {
  const flat = geometry.index ? geometry.toNonIndexed() : geometry;
  const count = flat.attributes.position.count;
  const out = new THREE.BufferGeometry();
  out.setAttribute('position', flat.attributes.position);
  out.setAttribute('normal', flat.attributes.normal);
  const colour = new Float32Array(count * 3).fill(1);
  const source = flat.attributes.color;
  if (source) for (let v = 0; v < count; v++) { colour[3 * v] = source.getX(v); colour[3 * v + 1] = source.getY(v); colour[3 * v + 2] = source.getZ(v); }
  out.setAttribute('color', new THREE.BufferAttribute(colour, 3));
  if (flat !== geometry) flat.dispose();
  return out;
}

// Per-vertex lighting needs normals: faces without them (flat-shaded buildings, trees) get one normal per face.
function withNormals(geometry) {
  if (geometry.attributes.normal) return geometry;
  const flat = geometry.index ? geometry.toNonIndexed() : geometry.clone();
  flat.computeVertexNormals();
  return flat;
}

function bakedOf(material, cache) {
  if (!cache.has(material.uuid)) {
    const baked = new THREE.MeshBasicMaterial({ map: material.uniforms.colourMap.value, vertexColors: true });
    baked.name = `${material.name}:baked`;
    cache.set(material.uuid, baked);
  }
  return cache.get(material.uuid);
}

/**
 * Rebuild a loaded world (`root`, the glTF scene, already in the viewer's scene) for fast drawing. Returns
 * { update(camera, renderer), stats, pick(hit) }; call update once per frame (LOD and window interiors).
 * Meshes owned by others (InstancedMesh agents, transparent water, skinned meshes) are left as they are.
 */
export function prepareWorld(root, { software = false, tiles = TILES } = {}) {
  if (root.userData.prepared) return root.userData.prepared;
  root.updateMatrixWorld(true);
  const rootInverse = root.matrixWorld.clone().invert();
  const toRootOf = (node) => rootInverse.clone().multiply(node.matrixWorld);
  const terrain = [], vegetation = [], statics = [];
  root.traverse((node) => {
    if (!node.isMesh || node.isSkinnedMesh || node.userData.engine) return;
    if (node.userData.type === 'terrain' && !node.isInstancedMesh) terrain.push(node);
    else if (node.isInstancedMesh && (node.userData.type || node.parent?.userData.type) === 'vegetation') vegetation.push(node);
    else if (!node.isInstancedMesh && !node.material.transparent && !Array.isArray(node.material)) statics.push(node);
  });
  const added = [];
  const removed = [...vegetation];
  let terrainTiles = [];
  for (const mesh of terrain) {
    const tiled = tileTerrain(mesh, toRootOf(mesh), tiles);
    if (!tiled) { statics.push(mesh); continue; }
    terrainTiles = terrainTiles.concat(tiled);
    added.push(...tiled);
    removed.push(mesh);
  }
  const parts = [...statics.map((mesh) => meshPart(mesh, root, toRootOf(mesh))),
    ...vegetation.flatMap((mesh) => instanceParts(mesh, toRootOf(mesh)))];
  const cheap = new Map();
  const merged = mergeStatic(parts, tiles, (material) => (software ? cheapOf(material, cheap) : material));
  added.push(...merged);
  removed.push(...statics);
  const before = { meshes: terrain.length + vegetation.length + statics.length };
  for (const mesh of removed) { mesh.removeFromParent(); mesh.geometry.dispose(); }
  const bounds = new Map();
  for (const mesh of added) {
    if (software) mesh.material = cheapOf(mesh.material, cheap);
    bounds.set(mesh, centred(mesh));
    root.add(mesh);
  }
  terrainTiles.forEach((tile) => { tile.renderOrder = 1; });  // drawn after what stands on it: fewer hidden pixels shaded
  const baked = new Map();
  const windows = merged.filter((m) => m.material.isShaderMaterial && m.material.userData.interior)
    .map((mesh) => ({ mesh, shader: mesh.material, baked: bakedOf(mesh.material, baked) }));
  const stats = { before, terrainTiles: terrainTiles.length, mergedMeshes: merged.length, parts: parts.length,
    windowMeshes: windows.length, software };
  const eye = new THREE.Vector3();

  function update(camera, renderer) {
    const height = renderer.getDrawingBufferSize(new THREE.Vector2()).y;
    const perMetre = height / (2 * Math.tan(THREE.MathUtils.degToRad(camera.fov) / 2));  // pixels per metre at 1 m
    camera.getWorldPosition(eye);
    root.worldToLocal(eye);
    for (const tile of terrainTiles) {
      const distance = Math.max(bounds.get(tile).distanceToPoint(eye), 1);
      const levels = tile.userData.levels;
      let chosen = levels[0];
      for (const level of levels) if (level.error * perMetre / distance <= PIXEL_ERROR) chosen = level;
      tile.geometry.setDrawRange(chosen.start, chosen.count);
      tile.userData.step = chosen.step;
    }
    for (const w of windows) {
      const distance = Math.max(bounds.get(w.mesh).distanceToPoint(eye), 1);
      w.mesh.material = 1.2 * perMetre / distance >= PARALLAX_MIN_PX ? w.shader : w.baked;
    }
  }

  const prepared = { update, stats, pick: pickInfo };
  root.userData.prepared = prepared;
  return prepared;
}
