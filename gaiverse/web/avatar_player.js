// The live avatar player (AV-c1 rendering): a rigged avatar .glb in three.js that talks in sync with audio.
//
//   const player = await mountAvatarPlayer(element, { glbUrl, audioUrl });
//
// Built on viewer.js (renderer, lights, orbit camera). The glb's clips play through an AnimationMixer:
// the body keeps its idle loop while the face and head follow either
//   (a) 'voice' — the avatar's voice sample (audioUrl) with its "talk" clip, whose time is set to
//       audio.currentTime every frame, so picture and sound cannot drift; a glb without a "talk" clip
//       falls back to the live model on the audio element's sound;
//   (b) 'microphone' — the trained lip-sync network (lipsync.js, weights /web/lipsync_model.json) on
//       16 kHz microphone audio, 20 ms chunks from an AudioWorklet, driving the ARKit mouth morphs live.
// State for pages and tests: element.dataset.state ('loading' | 'ready' | 'error'), element.dataset.mode
// ('idle' | 'voice' | 'microphone'), and window.avatarPlayerStats (fps, frame times, inference ms, weights).
import * as THREE from 'three';
import { createViewer } from '/web/viewer.js';
import { loadLipsync } from '/web/lipsync.js';

const CHUNK = 320;  // 20 ms at 16 kHz
const FRAME_HISTORY = 600;
const HEAD_BONES = ['head', 'neck'];

// AudioWorklet that hands the main thread 20 ms chunks of its (16 kHz) input.
const CHUNKER = `
class Chunker extends AudioWorkletProcessor {
  constructor() { super(); this.buffer = new Float32Array(${CHUNK}); this.filled = 0; }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        this.buffer[this.filled++] = channel[i];
        if (this.filled === ${CHUNK}) { this.port.postMessage(this.buffer.slice()); this.filled = 0; }
      }
    }
    return true;
  }
}
registerProcessor('gaiverse-chunker', Chunker);
`;

function ensureStyles() {
  if (document.querySelector('link[data-avatar-player]')) return;
  const link = document.createElement('link');
  link.rel = 'stylesheet';
  link.href = '/web/avatar_player.css';
  link.dataset.avatarPlayer = 'true';
  document.head.appendChild(link);
}

function button(label, action) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.dataset.action = action;
  return b;
}

/** Stats every player writes to (one page, one player at a time). */
function newStats() {
  const stats = { fps: 0, frames: 0, frameMs: [], inferenceMs: [], lipsyncFrames: 0, mode: 'idle', weights: {},
    jawOpenMax: 0, clips: [], clip: null, clipTime: null, morphTargets: 0, talkTime: null, audioTime: null };
  window.avatarPlayerStats = stats;
  return stats;
}

export async function mountAvatarPlayer(element, { glbUrl, audioUrl = null, modelUrl = '/web/lipsync_model.json',
  headers = {}, framing = 'head' } = {}) {
  if (!element) throw new Error('mountAvatarPlayer: element is required');
  if (!glbUrl) throw new Error('mountAvatarPlayer: glbUrl is required');
  ensureStyles();
  element.classList.add('avatar-player');
  element.dataset.state = 'loading';
  element.dataset.mode = 'idle';
  element.replaceChildren();
  const canvas = document.createElement('canvas');
  const bar = document.createElement('div');
  bar.className = 'avatar-player-bar';
  const voiceButton = button('▶ Voice', 'voice');
  const micButton = button('Live mic', 'microphone');
  const framingButton = button(framing === 'head' ? 'Full body' : 'Face', 'framing');
  const fpsLabel = document.createElement('span');
  fpsLabel.className = 'avatar-player-fps';
  bar.append(voiceButton, micButton, framingButton, fpsLabel);
  // An <audio> can feed one AudioContext only once: a fresh element per play that the live model listens to.
  function newAudio() {
    const el = document.createElement('audio');
    el.preload = 'auto';
    el.crossOrigin = 'anonymous';
    if (audioUrl) el.src = audioUrl;
    el.addEventListener('ended', () => { if (element.dataset.mode === 'voice') stop(); });
    return el;
  }
  let audio = newAudio();
  if (!audioUrl) voiceButton.disabled = true;
  element.append(canvas, bar, audio);

  const viewer = createViewer(canvas, { headers });
  const { scene, camera, controls, renderer } = viewer;
  const stats = newStats();
  let model = null, mixer = null, actions = {}, faces = [], talk = null, lipsync = null;
  let live = null;  // {context, source, node, stream, streamer} while the model listens
  let view = framing;

  // ------------------------------------------------------------------ loading
  let gltf;
  try {
    [gltf, lipsync] = await Promise.all([viewer.load(glbUrl), loadLipsync(modelUrl).catch((err) => {
      console.warn('lip-sync model unavailable:', err.message);
      return null;
    })]);
  } catch (err) {
    element.dataset.state = 'error';
    element.dataset.error = String(err.message || err);
    throw err;
  }
  model = gltf.scene;
  model.traverse((node) => { if (node.morphTargetDictionary && 'jawOpen' in node.morphTargetDictionary) faces.push(node); });
  mixer = new THREE.AnimationMixer(model);
  const clips = Object.fromEntries(gltf.animations.map((c) => [c.name, c]));
  stats.clips = Object.keys(clips);
  stats.morphTargets = faces.length ? Object.keys(faces[0].morphTargetDictionary).length : 0;
  // The body idles all the time; face and head belong to whatever drives the mouth (no averaging of the two).
  const faceOrHead = (track) => track.name.endsWith('.morphTargetInfluences')
    || HEAD_BONES.some((bone) => track.name.startsWith(`${bone}.`));
  if (clips.idle) {
    const body = new THREE.AnimationClip('idle_body', clips.idle.duration, clips.idle.tracks.filter((t) => !faceOrHead(t)));
    const face = new THREE.AnimationClip('idle_face', clips.idle.duration, clips.idle.tracks.filter(faceOrHead));
    actions.idleBody = mixer.clipAction(body).play();
    actions.idleFace = mixer.clipAction(face).play();
  }
  if (clips.talk) {
    talk = mixer.clipAction(clips.talk);
    talk.setLoop(THREE.LoopOnce, 1);
    talk.clampWhenFinished = true;
  }
  frame(view);
  element.dataset.state = 'ready';

  // ------------------------------------------------------------------ camera
  function frame(which) {
    view = which;
    const box = new THREE.Box3();
    if (which === 'head' && faces.length) faces.forEach((f) => box.expandByObject(f));
    else box.setFromObject(model);
    const size = box.getSize(new THREE.Vector3());
    const center = box.getCenter(new THREE.Vector3());
    if (which === 'head') center.y -= 0.05 * size.y;  // the head box centres on the nose: show the chin too
    const fit = which === 'head' ? 0.5 : 0.68;  // fraction of the view height the box fills (room for a raised arm)
    const distance = (size.y / fit / 2) / Math.tan(THREE.MathUtils.degToRad(camera.fov / 2)) + size.z / 2;
    controls.target.copy(center);
    camera.position.set(center.x + distance * 0.1, center.y + distance * 0.05, center.z + distance);
    viewer.grid.visible = which !== 'head';
    camera.near = Math.max(distance / 100, 0.005);
    camera.far = distance * 100;
    camera.updateProjectionMatrix();
    controls.update();
    framingButton.textContent = which === 'head' ? 'Full body' : 'Face';
  }

  // ------------------------------------------------------------------ face weights
  function setWeights(weights) {
    for (const mesh of faces) {
      const dict = mesh.morphTargetDictionary;
      for (const [name, w] of Object.entries(weights)) if (name in dict) mesh.morphTargetInfluences[dict[name]] = w;
    }
  }

  function currentWeights() {
    if (!faces.length) return {};
    const { morphTargetDictionary: dict, morphTargetInfluences: inf } = faces[0];
    const names = lipsync ? lipsync.blendshapes : ['jawOpen'];
    return Object.fromEntries(names.filter((n) => n in dict).map((n) => [n, inf[dict[n]]]));
  }

  function setMode(mode) {
    element.dataset.mode = mode;
    stats.mode = mode;
    voiceButton.textContent = mode === 'voice' ? '■ Stop' : '▶ Voice';
    micButton.textContent = mode === 'microphone' ? '■ Stop mic' : 'Live mic';
    if (actions.idleFace) actions.idleFace.enabled = mode === 'idle';
  }

  // ------------------------------------------------------------------ live lip-sync (microphone or <audio>)
  async function listen(makeSource) {
    if (!lipsync) throw new Error('the lip-sync model did not load (see the console)');
    const context = new AudioContext({ sampleRate: lipsync.sampleRate });  // the browser resamples to 16 kHz
    await context.audioWorklet.addModule(URL.createObjectURL(new Blob([CHUNKER], { type: 'application/javascript' })));
    const { source, stream, audible } = await makeSource(context);
    const node = new AudioWorkletNode(context, 'gaiverse-chunker');
    const mute = context.createGain();
    mute.gain.value = 0;  // the worklet must be pulled by the destination, but the microphone must not echo
    source.connect(node).connect(mute).connect(context.destination);
    if (audible) source.connect(context.destination);
    const streamer = lipsync.streamer();
    node.port.onmessage = (event) => {
      let energy = 0;
      for (const x of event.data) energy += x * x;
      stats.inputDb = 10 * Math.log10(energy / event.data.length + 1e-12);  // level of the 20 ms chunk, dBFS
      const weights = streamer.push(event.data);
      stats.inferenceMs.push(streamer.computeMs[streamer.computeMs.length - 1]);
      if (stats.inferenceMs.length > FRAME_HISTORY) stats.inferenceMs.shift();
      stats.lipsyncFrames = streamer.outputs.length;
      if (weights && live) live.weights = weights;
    };
    await context.resume();
    live = { context, source, node, stream, streamer, weights: null };
  }

  async function stopListening() {
    if (!live) return;
    const { context, stream, node } = live;
    live = null;
    node.port.onmessage = null;
    if (stream) stream.getTracks().forEach((t) => t.stop());
    await context.close();
    setWeights(Object.fromEntries((lipsync ? lipsync.blendshapes : []).map((n) => [n, 0])));
  }

  async function startMicrophone() {
    await stop();
    const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true } });
    await listen(async (context) => ({ source: context.createMediaStreamSource(stream), stream, audible: false }));
    setMode('microphone');
  }

  async function play() {
    if (!audioUrl) throw new Error('this player has no audioUrl to play');
    await stop();
    audio.currentTime = 0;
    if (talk) {
      talk.reset().play();
      talk.paused = true;  // its time is set from the audio clock every frame
    } else {
      const fresh = newAudio();
      audio.replaceWith(fresh);
      audio = fresh;
      await listen(async (context) => ({ source: context.createMediaElementSource(audio), stream: null, audible: true }));
    }
    setMode('voice');
    await audio.play();
  }

  async function stop() {
    audio.pause();
    if (talk) talk.stop();
    await stopListening();
    setMode('idle');
  }

  voiceButton.addEventListener('click', () => (element.dataset.mode === 'voice' ? stop() : play()).catch(report));
  micButton.addEventListener('click', () => (element.dataset.mode === 'microphone' ? stop() : startMicrophone()).catch(report));
  framingButton.addEventListener('click', () => frame(view === 'head' ? 'body' : 'head'));
  function report(err) { element.dataset.error = String(err.message || err); console.error(err); }

  // ------------------------------------------------------------------ gestures and other clips
  // A clip other than idle/talk (wave, nod, head_motion, ...) replaces the idle for its length: the idle fades
  // out (two actions on the same bones would be averaged to half strength) and back in when it finishes.
  let gesture = null;
  const idles = () => [actions.idleBody, element.dataset.mode === 'idle' ? actions.idleFace : null].filter(Boolean);
  function playClip(name, { loop = false, fade = 0.2 } = {}) {
    if (!clips[name] || name === 'talk') {
      throw new Error(`playClip: no clip ${JSON.stringify(name)} (clips: ${Object.keys(clips).join(', ')})`);
    }
    if (gesture) gesture.fadeOut(fade);
    gesture = mixer.clipAction(clips[name]);
    gesture.reset().setLoop(loop ? THREE.LoopRepeat : THREE.LoopOnce, loop ? Infinity : 1);
    gesture.clampWhenFinished = false;
    gesture.setEffectiveWeight(1).fadeIn(fade).play();
    idles().forEach((a) => a.fadeOut(fade));
    stats.clip = name;
    return clips[name].duration;
  }
  mixer.addEventListener('finished', (event) => {
    if (event.action !== gesture) return;
    gesture.fadeOut(0.3);
    gesture = null;
    stats.clip = null;
    idles().forEach((a) => { a.enabled = true; a.setEffectiveWeight(1).fadeIn(0.3); });
  });

  // ------------------------------------------------------------------ the frame loop (replaces the viewer's)
  let last = performance.now(), fpsWindow = [];
  renderer.setAnimationLoop((now) => {
    const interval = now - last;
    const dt = Math.min(interval / 1000, 0.1);
    last = now;
    stats.frames += 1;
    stats.frameMs.push(interval);
    if (stats.frameMs.length > FRAME_HISTORY) stats.frameMs.shift();
    fpsWindow.push(now);
    while (fpsWindow.length && fpsWindow[0] < now - 1000) fpsWindow.shift();
    stats.fps = fpsWindow.length;
    if (talk && element.dataset.mode === 'voice') {
      talk.time = Math.min(audio.currentTime, clips.talk.duration);
      stats.talkTime = talk.time;
      stats.audioTime = audio.currentTime;
    }
    mixer.update(dt);
    if (live && live.weights) setWeights(live.weights);
    stats.weights = currentWeights();
    stats.clipTime = gesture ? gesture.time : null;
    stats.jawOpenMax = Math.max(stats.jawOpenMax, stats.weights.jawOpen || 0);
    if (stats.frames % 15 === 0) fpsLabel.textContent = `${stats.fps} fps`;
    controls.update();
    renderer.render(scene, camera);
  });

  function dispose() {
    stop();
    viewer.dispose();
    element.replaceChildren();
  }

  return { play, stop, startMicrophone, playClip, frame, setWeights, dispose, viewer, gltf, lipsync, clips: Object.keys(clips),
    stats, get audio() { return audio; }, get mode() { return element.dataset.mode; },
    get streamer() { return live ? live.streamer : null; } };
}
