// A reusable glTF 2.0 viewer on three.js: createViewer(canvas).load(url) shows a .glb with orbit controls.
//
// Capability pages (avatars, worlds, NPCs) import this module; it owns one renderer per canvas,
// frames whatever it loads, and reports its state on canvas.dataset.state
// ('empty' | 'loading' | 'loaded' | 'error') so pages and browser tests can wait for it.
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';

/** True when WebGL runs on a CPU rasteriser (SwiftShader, llvmpipe), where every shaded pixel counts. */
export function isSoftwareRenderer(gl) {
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  const name = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
  return /swiftshader|llvmpipe|softpipe|software/i.test(String(name));
}

/** Whether WebGL on this machine is a software one, asked of a throwaway context before a renderer is made. */
export function softwareWebGL() {
  const gl = document.createElement('canvas').getContext('webgl2');
  if (!gl) return false;
  const software = isSoftwareRenderer(gl);
  gl.getExtension('WEBGL_lose_context')?.loseContext();
  return software;
}

// antialias: true | false | 'auto' (MSAA except on a software renderer, where 4x MSAA costs more than the
// whole rest of a world frame).
export function createViewer(canvas, { headers = {}, background = 0x0c0f14, antialias = true } = {}) {
  const msaa = antialias === 'auto' ? !softwareWebGL() : Boolean(antialias);
  const renderer = new THREE.WebGLRenderer({ canvas, antialias: msaa, preserveDrawingBuffer: true });
  renderer.setPixelRatio(window.devicePixelRatio || 1);
  renderer.outputColorSpace = THREE.SRGBColorSpace;

  const scene = new THREE.Scene();
  scene.background = new THREE.Color(background);
  scene.add(new THREE.HemisphereLight(0xffffff, 0x445066, 1.6));
  const sun = new THREE.DirectionalLight(0xffffff, 2.2);
  sun.position.set(3, 5, 4);
  scene.add(sun);
  const grid = new THREE.GridHelper(10, 20, 0x3a4558, 0x232b38);
  scene.add(grid);

  const camera = new THREE.PerspectiveCamera(45, 1, 0.01, 1000);
  camera.position.set(2.5, 2, 3);
  const controls = new OrbitControls(camera, canvas);
  controls.enableDamping = true;

  const loader = new GLTFLoader();
  loader.setRequestHeader(headers);
  let model = null;
  canvas.dataset.state = 'empty';

  function resize() {
    const width = canvas.clientWidth || 1;
    const height = canvas.clientHeight || 1;
    renderer.setSize(width, height, false);
    camera.aspect = width / height;
    camera.updateProjectionMatrix();
  }
  const observer = new ResizeObserver(resize);
  observer.observe(canvas);
  resize();

  renderer.setAnimationLoop(() => {
    controls.update();
    renderer.render(scene, camera);
  });

  // Put the model on the grid, centred, and move the camera so all of it is in view.
  function frame(object) {
    const box = new THREE.Box3().setFromObject(object);
    const size = box.getSize(new THREE.Vector3());
    const center = box.getCenter(new THREE.Vector3());
    object.position.sub(new THREE.Vector3(center.x, box.min.y, center.z));
    const radius = Math.max(size.length() / 2, 1e-3);
    const distance = radius / Math.sin(THREE.MathUtils.degToRad(camera.fov / 2));
    controls.target.set(0, size.y / 2, 0);
    camera.position.set(distance * 0.6, size.y / 2 + distance * 0.45, distance * 0.7);
    camera.near = distance / 100;
    camera.far = distance * 100;
    camera.updateProjectionMatrix();
    grid.scale.setScalar(Math.max(radius, 0.1));
    controls.update();
  }

  function clear() {
    if (!model) return;
    scene.remove(model);
    model.traverse((node) => {
      if (node.geometry) node.geometry.dispose();
      const materials = Array.isArray(node.material) ? node.material : node.material ? [node.material] : [];
      materials.forEach((m) => m.dispose());
    });
    model = null;
  }

  async function load(url) {
    canvas.dataset.state = 'loading';
    try {
      const gltf = await loader.loadAsync(url);
      clear();
      model = gltf.scene;
      scene.add(model);
      frame(model);
      canvas.dataset.state = 'loaded';
      return gltf;
    } catch (err) {
      canvas.dataset.state = 'error';
      throw err;
    }
  }

  // Load a .glb without showing or framing it: for pages that compose several models in one scene
  // (an NPC standing in its world). The caller adds gltf.scene where it belongs.
  function fetchGltf(url) {
    return loader.loadAsync(url);
  }

  function setHeaders(newHeaders) {
    loader.setRequestHeader(newHeaders);
  }

  function dispose() {
    renderer.setAnimationLoop(null);
    observer.disconnect();
    clear();
    controls.dispose();
    renderer.dispose();
  }

  return { load, fetchGltf, clear, setHeaders, dispose, scene, camera, renderer, controls, grid };
}
