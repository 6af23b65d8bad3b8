// Rooms behind windows: a three.js material that re-projects a NeRF colour + depth view of a room through each
// window quad, so the room shows parallax as the camera moves (ENV-c3 in the web terminal).
//
// A window quad (UV 0..1, glTF convention: v down the image) lies in the image plane of the pinhole camera
// that rendered the room, window_plane_m in front of it, covering the central window_inset of the view
// (material extras written by gaiverse/interiors/windows.py). For each pixel the view ray enters the room at
// the quad along the room camera's own ray plus the viewer's bent off-axis slope (so it stays inside the
// camera's frustum) and is marched in that camera's frame: each sample is projected into the depth map, and the first sample behind the stored depth
// is the surface seen (linear steps, then bisection). The window's tangent frame and its size in
// metres come from screen-space derivatives, so the .glb needs no tangents. The baked texture of the
// material (GLTFLoader's `map`) is the room's colour map; only the 8-bit depth map is fetched beside the .glb
// (atlas encoding: z = depth_min + v * (depth_max - depth_min), linear, so the GPU may filter it).
import * as THREE from 'three';

const STEPS = 40;

const vertexShader = /* glsl */ `
attribute vec4 color;
varying vec2 vUv;
varying vec3 vWorld;
varying vec4 vLight;
void main() {
  vUv = uv;
  vLight = color;
  vec4 world = modelMatrix * vec4(position, 1.0);
  vWorld = world.xyz;
  gl_Position = projectionMatrix * viewMatrix * world;
}`;

const fragmentShader = /* glsl */ `
uniform sampler2D colourMap;
uniform sampler2D depthMap;
uniform vec2 tanHalf;
uniform float plane;
uniform float inset;
uniform float bend;
uniform float nearM;
uniform float farM;
varying vec2 vUv;
varying vec3 vWorld;
varying vec4 vLight;

float depthAt(vec2 uv) {
  return nearM + texture2D(depthMap, clamp(uv, 0.0, 1.0)).r * (farM - nearM);
}

vec2 project(vec3 q) {
  return vec2(q.x / (q.z * 2.0 * tanHalf.x), q.y / (q.z * 2.0 * tanHalf.y)) + 0.5;
}

void main() {
  vec3 dpx = dFdx(vWorld), dpy = dFdy(vWorld);
  vec2 dux = dFdx(vUv), duy = dFdy(vUv);
  float det = dux.x * duy.y - dux.y * duy.x;
  vec3 T = (dpx * duy.y - dpy * dux.y) / det;  // metres per unit u (length = window width)
  vec3 B = (dpy * dux.x - dpx * duy.x) / det;  // metres per unit v (length = window height)
  vec3 N = normalize(cross(T, B));
  if (dot(N, cameraPosition - vWorld) < 0.0) N = -N;  // N points out of the building, toward the viewer
  vec3 d = normalize(vWorld - cameraPosition);
  float width = length(T), height = length(B);
  vec2 span = 2.0 * plane * tanHalf * inset;  // the window covers the central inset of the view at the glass
  vec2 scale = span / vec2(width, height);  // room-camera metres per world metre
  vec3 q0 = vec3((vUv - 0.5) * span, plane);
  vec2 slope = vec2(dot(d, T) / (width * width) * span.x, dot(d, B) / (height * height) * span.y)
              / (max(dot(d, -N), 1e-3) * sqrt(scale.x * scale.y));
  // Straight on, the ray is the room camera's own ray through this point (the window shows the view as
  // rendered); off-axis, the viewer's lateral slope s is added bent to s * bend * tan(fov / 2) / (1 + |s|),
  // so far surfaces shift against near ones while rays stay (nearly) inside the one frustum the view knows.
  vec3 r = vec3(q0.xy / plane + slope * bend * tanHalf / (1.0 + length(slope)), 1.0);
  float tEnd = farM * 1.02 - plane;
  float tPrev = 0.0, tHit = tEnd;
  for (int i = 1; i <= ${STEPS}; i++) {
    float t = tEnd * float(i) / float(${STEPS});
    vec3 q = q0 + r * t;
    if (q.z >= depthAt(project(q))) { tHit = t; break; }
    tPrev = t;
  }
  for (int k = 0; k < 6; k++) {  // bisection between the last sample in front and the first behind
    float t = 0.5 * (tPrev + tHit);
    vec3 q = q0 + r * t;
    if (q.z >= depthAt(project(q))) tHit = t; else tPrev = t;
  }
  vec2 uvHit = clamp(project(q0 + r * tHit), 0.0, 1.0);
  vec3 room = texture2D(colourMap, uvHit).rgb * vLight.rgb;
  float fresnel = pow(1.0 - abs(dot(d, N)), 5.0);
  gl_FragColor = vec4(mix(room, vec3(0.55, 0.66, 0.78), 0.08 + 0.5 * fresnel), 1.0);
  #include <colorspace_fragment>
}`;

// One ShaderMaterial per room view. colourMap: the sRGB colour texture (the glb's baked map);
// depthMap: the 8-bit depth texture; interior: the material extras.
export function interiorMaterial({ colourMap, depthMap, interior }) {
  const rad = (deg) => THREE.MathUtils.degToRad(deg) / 2;
  const material = new THREE.ShaderMaterial({
    uniforms: {
      colourMap: { value: colourMap },
      depthMap: { value: depthMap },
      tanHalf: { value: new THREE.Vector2(Math.tan(rad(interior.fov_x_deg)), Math.tan(rad(interior.fov_y_deg))) },
      plane: { value: interior.window_plane_m },
      inset: { value: interior.window_inset },
      bend: { value: interior.ray_bend },
      nearM: { value: interior.depth_min },
      farM: { value: interior.depth_max },
    },
    vertexShader,
    fragmentShader,
  });
  material.name = `interior:${interior.atlas}`;
  material.userData.interior = interior;
  return material;
}

function loadTexture(url) {
  return new Promise((resolve, reject) => new THREE.TextureLoader().load(url, resolve, undefined,
    () => reject(new Error(`interior depth map ${url} could not be loaded`))));
}

// Swap every window material carrying `extras.interior` (GLTFLoader puts extras in userData) for the
// interior shader. resolve(relativePath) -> URL (or a promise of one) of a file shipped beside the .glb, or null
// to keep the baked texture. Returns the number of meshes switched; root.userData.interiors records what happened.
export async function applyInteriors(root, resolve) {
  const byAtlas = new Map();
  const meshes = [];
  root.traverse((node) => {
    const interior = node.isMesh && node.material && node.material.userData && node.material.userData.interior;
    if (interior && node.material.map) meshes.push(node);
  });
  for (const mesh of meshes) {
    const { interior } = mesh.material.userData;
    if (!byAtlas.has(interior.atlas)) {
      byAtlas.set(interior.atlas, Promise.resolve(resolve(interior.depth)).then((url) => url && loadTexture(url)).then((depth) => {
        if (!depth) return null;
        depth.flipY = false;
        depth.colorSpace = THREE.NoColorSpace;
        depth.magFilter = THREE.LinearFilter;
        depth.minFilter = THREE.LinearFilter;
        depth.generateMipmaps = false;
        depth.needsUpdate = true;
        return interiorMaterial({ colourMap: mesh.material.map, depthMap: depth, interior });
      }));
    }
  }
  let switched = 0;
  for (const mesh of meshes) {
    const material = await byAtlas.get(mesh.material.userData.interior.atlas);
    if (!material) continue;
    if (!mesh.geometry.getAttribute('color')) {
      const ones = new Float32Array(mesh.geometry.getAttribute('position').count * 4).fill(1);
      mesh.geometry.setAttribute('color', new THREE.BufferAttribute(ones, 4));
    }
    mesh.material = material;
    switched += 1;
  }
  root.userData.interiors = { windows: meshes.length, switched, atlases: byAtlas.size };
  return switched;
}
