// The NPC page: talk with an NPC over /npc/ws by text, push-to-talk voice, clicks, keys and gamepad;
// stream its text, play its sentences (WebAudio) and move its face with the visemes in sync with the audio.
import { $, api, apiKey, authHeaders, el, requireSignIn } from '/web/common.js';
import { setupCreate, showProfile } from '/web/npc_create.js';
import { createNpcScene } from '/web/npc_scene.js';

const params = new URLSearchParams(window.location.search);
let npcId = params.get('npc') || 'sage';   // changes when you create an NPC and start talking to it
const PRESETS = new Set(['sage', 'innkeeper', 'monster_hunter', 'archmage']);
const MIC_RATE = 16000;
const KEYS = new Set(['e', 'q', 'g', 't', 'f', 'Escape']);

let socket = null;
let audioCtx = null;
let playhead = 0;               // audio clock time when the queued speech ends
const timeline = [];            // [{start, visemes}] on the audio clock (or the page clock without audio)
let npcLine = null;             // the chat line being streamed
const stats = {};

const scene = createNpcScene($('npc-canvas'), authHeaders());
window.npcPage = { scene, events: [], stats };  // for browser tests

function ensureAudio() {
  if (!audioCtx) audioCtx = new AudioContext();
  if (audioCtx.state === 'suspended') audioCtx.resume();
  return audioCtx;
}
const now = () => (audioCtx ? audioCtx.currentTime : performance.now() / 1000);

function line(kind, text) {
  const item = el('li', text, kind);
  $('chat').append(item);
  $('chat').scrollTop = $('chat').scrollHeight;
  return item;
}

function send(message) {
  if (!socket || socket.readyState !== WebSocket.OPEN) { $('chat-error').textContent = 'not connected'; return; }
  stats.sentAt = performance.now();
  socket.send(JSON.stringify(message));
}

function connect() {
  const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${window.location.host}/npc/ws?npc=${encodeURIComponent(npcId)}`);
  socket = ws;
  ws.addEventListener('open', () => ws.send(JSON.stringify({ type: 'auth', key: apiKey() })));
  ws.addEventListener('message', (msg) => { if (ws === socket) onEvent(JSON.parse(msg.data)); });
  ws.addEventListener('close', (ev) => {
    if (ws !== socket) return;  // a conversation we left for another NPC
    $('conn').textContent = `closed ${ev.code}`;
    $('conn').className = 'state closed';
  });
}

/** Talk to another NPC without reloading the page (used right after creating one). */
function switchNpc(id) {
  const old = socket;
  npcId = id;
  socket = null;
  if (old) old.close(1000);
  timeline.length = 0;
  pendingVisemes.clear();
  npcLine = null;
  $('chat').replaceChildren();
  $('chat-error').textContent = '';
  $('conn').textContent = 'connecting';
  $('conn').className = 'state';
  $('npc-select').value = id;
  window.history.replaceState(null, '', `?npc=${encodeURIComponent(id)}`);
  window.npcPage.npcId = id;
  connect();
}

/** A newly created NPC: into the picker, then straight into a conversation with it (in its world, if any). */
function onCreated(npc) {
  const select = $('npc-select');
  if (![...select.options].some((o) => o.value === npc.npc_id)) select.append(new Option(`${npc.name}, ${npc.role}`, npc.npc_id));
  switchNpc(npc.npc_id);
  placeInWorld(npc);
}

const minutes = (clock) => { const [h, m] = clock.split(':').map(Number); return h * 60 + m; };

/**
 * Where the NPC is now: the schedule block (placed in the world, so with x/y) covering the browser's
 * local time; blocks may run past midnight. Without one, its home (world.home) or its first placed block.
 */
export function currentPlace(profile, date = new Date()) {
  const placed = (profile.behaviour?.schedule || []).filter((b) => Number.isFinite(b.x) && Number.isFinite(b.y));
  const t = date.getHours() * 60 + date.getMinutes();
  const now = placed.find((b) => {
    const start = minutes(b.start);
    const length = (minutes(b.end) - start + 1440) % 1440 || 1440;
    return (t - start + 1440) % 1440 < length;
  });
  const block = now || placed.find((b) => b.place === profile.world?.home) || placed[0];
  return block && { name: block.place, kind: block.place_kind, x: block.x, y: block.y, activity: block.activity,
    start: block.start, end: block.end, now: !!now };
}

/** Stand an NPC placed in a world at its current place in that world's 3D view; others stay on the grid. */
async function placeInWorld(npc) {
  const world = npc?.profile?.world;
  if (!world?.world_id || !world.version) { scene.clearWorld(); return; }
  const place = currentPlace(npc.profile);
  if (!place) return;
  try {
    const info = await scene.loadWorld(`/worlds/${encodeURIComponent(world.world_id)}/versions/${world.version}/glb`,
      place, { worldId: world.world_id, version: world.version, npcId: npc.npc_id });
    window.npcPage.world = { ...info, npc: scene.npcWorldPosition() };
    $('npc-place').textContent = `${place.now ? place.activity : 'at home'} at ${place.name} · ` +
      `${world.world_id} v${world.version}`;
  } catch (err) {
    $('chat-error').textContent = `world view: ${err.message || err}`;
  }
}

function onEvent(ev) {
  window.npcPage.events.push(ev);
  switch (ev.type) {
    case 'state': return onState(ev);
    case 'transcript': line('user', `(voice) ${ev.text}`); return;
    case 'text_delta':
      if (!npcLine) { npcLine = line('npc', ''); stats.firstToken = performance.now() - stats.sentAt; }
      npcLine.textContent += ev.text;
      $('chat').scrollTop = $('chat').scrollHeight;
      return;
    case 'text_done':
      if (!npcLine) npcLine = line('npc', ev.text);
      if (ev.refused) npcLine.classList.add('refused');
      npcLine.append(el('span', `${ev.intent} · ${ev.emotion}${ev.grounded ? ' · ' + ev.sources.join(', ') : ''}`, 'meta'));
      npcLine = null;
      return;
    case 'expression': scene.setExpression(ev.blendshapes); return;
    case 'gesture': scene.playGesture(ev.clip); return;
    case 'visemes':
      if (!ev.audio) timeline.push({ start: Math.max(now(), playhead), visemes: ev.visemes, seq: ev.seq, turn: ev.turn });
      else pendingVisemes.set(`${ev.turn}:${ev.seq}`, ev.visemes);
      return;
    case 'audio': return play(ev);
    case 'error':
      $('chat-error').textContent = ev.message;
      if (ev.fatal) line('event', `error: ${ev.message}`);
      return;
    default: return;
  }
}

const pendingVisemes = new Map();

function onState(ev) {
  const state = ev.state;
  $('npc-state').textContent = ev.intent ? `${state} (${ev.intent})` : state;
  $('npc-state').className = `state ${state}`;
  if (state === 'ready') {
    $('conn').textContent = 'connected';
    $('conn').className = 'state open';
    $('npc-name').textContent = ev.npc.name;
    $('npc-role').textContent = `${ev.npc.role}${ev.speech ? '' : ' (text only)'}`;
    $('ptt').disabled = !ev.speech;
    line('event', `${ev.npc.name} is here. Say hello, click them, or press E.`);
    if (ev.npc.glb && !params.get('glb')) {
      scene.loadGlb(`/assets/${ev.npc.glb}/content`).catch((err) => { $('chat-error').textContent = `NPC model: ${err.message}`; });
    }
  } else if (state === 'loading') {
    $('conn').textContent = 'loading models';
  } else if (state === 'idle' && ev.timings) {
    const t = ev.timings;
    const parts = [['asr', t.asr_ms], ['first token', t.first_token_ms], ['first audio', t.first_audio_ms]]
      .filter(([, v]) => v !== undefined).map(([k, v]) => `${k} ${Math.round(v)} ms`);
    $('latency').textContent = parts.join(' · ');
    window.npcPage.turnsDone = (window.npcPage.turnsDone || 0) + 1;
  }
}

async function play(ev) {
  const ctx = ensureAudio();
  const bytes = Uint8Array.from(atob(ev.data), (c) => c.charCodeAt(0));
  const buffer = await ctx.decodeAudioData(bytes.buffer);
  const source = ctx.createBufferSource();
  source.buffer = buffer;
  source.connect(ctx.destination);
  const start = Math.max(ctx.currentTime + 0.02, playhead);
  source.start(start);
  playhead = start + buffer.duration;
  timeline.push({ start, visemes: pendingVisemes.get(`${ev.turn}:${ev.seq}`) || [], seq: ev.seq, turn: ev.turn });
  pendingVisemes.delete(`${ev.turn}:${ev.seq}`);
  window.npcPage.played = (window.npcPage.played || 0) + 1;
}

function currentViseme() {
  const t = now();
  while (timeline.length && timeline[0].start + (timeline[0].visemes.at(-1)?.[2] || 0) < t) timeline.shift();
  const seg = timeline[0];
  if (!seg || t < seg.start) return 'sil';
  const local = t - seg.start;
  const hit = seg.visemes.find(([, a, b]) => local >= a && local < b);
  if (hit) window.npcPage.lastViseme = hit[0];
  return hit ? hit[0] : 'sil';
}

// ---------------------------------------------------------------- inputs

function onChat(event) {
  event.preventDefault();
  const text = $('chat-input').value.trim();
  if (!text) return;
  ensureAudio();
  line('user', text);
  $('chat-input').value = '';
  $('chat-error').textContent = '';
  send({ type: 'text', text });
}

function onCanvasClick(event) {
  ensureAudio();
  const hit = scene.pick(event);
  if (!hit) return;
  line('event', hit.kind === 'npc' ? 'you click the NPC' : `you point at ${/^the /i.test(hit.name) ? '' : 'the '}${hit.name}`);
  send({ type: 'hci', kind: 'click', target_kind: hit.kind, ...(hit.kind === 'npc' ? {} : { target: hit.name }) });
}

let lastHover = '';
function onCanvasMove(event) {
  const hit = scene.pick(event);
  const key = hit ? `${hit.kind}:${hit.name}` : '';
  if (key && key !== lastHover) send({ type: 'hci', kind: 'hover', target_kind: hit.kind, ...(hit.kind === 'npc' ? {} : { target: hit.name }) });
  lastHover = key;
}

function onKey(event) {
  if (event.target instanceof HTMLInputElement || event.repeat) return;
  if (event.key === 'v') { startTalking(); return; }
  if (!KEYS.has(event.key)) return;
  ensureAudio();
  line('event', `you press ${event.key}`);
  send({ type: 'hci', kind: 'key', button: event.key });
}

// Push to talk: open the microphone on press (so capture starts then), stream 16 kHz PCM16 chunks, end on release.
let mic = null;
async function startTalking() {
  if (mic) return;
  const ctx = ensureAudio();
  const take = { chunks: 0, closing: false, open: true };
  mic = take;
  $('ptt').setAttribute('aria-pressed', 'true');
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true } });
  const source = ctx.createMediaStreamSource(stream);
  const node = ctx.createScriptProcessor(4096, 1, 1);
  const ratio = ctx.sampleRate / MIC_RATE;
  node.onaudioprocess = (e) => {
    if (!take.open) return;  // a buffer already queued when the button was released
    const input = e.inputBuffer.getChannelData(0);
    const out = new Int16Array(Math.floor(input.length / ratio));
    for (let i = 0; i < out.length; i++) {
      const a = i * ratio, j = Math.floor(a), f = a - j;
      const s = input[j] * (1 - f) + (input[j + 1] ?? input[j]) * f;
      out[i] = Math.max(-32768, Math.min(32767, Math.round(s * 32767)));
    }
    let binary = '';
    const bytes = new Uint8Array(out.buffer);
    for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    send({ type: 'audio', pcm: btoa(binary), sample_rate: MIC_RATE });
    take.chunks += 1;
  };
  source.connect(node);
  node.connect(ctx.destination);
  Object.assign(take, { stream, source, node });
  if (take.closing) stopTalking();
}

function stopTalking() {
  if (!mic) return;
  if (!mic.node) { mic.closing = true; return; }
  mic.open = false;
  mic.source.disconnect();
  mic.node.disconnect();
  mic.stream.getTracks().forEach((t) => t.stop());
  const spoke = mic.chunks > 0;
  mic = null;
  $('ptt').setAttribute('aria-pressed', 'false');
  if (spoke) send({ type: 'end_of_speech' });
}

// Gamepad API: edges of standard-mapping buttons, and the left stick leaving / entering its dead zone.
const padState = { buttons: [], stick: false };
function pollGamepad() {
  const pad = [...(navigator.getGamepads ? navigator.getGamepads() : [])].find(Boolean);
  $('gamepad').textContent = pad ? `gamepad: ${pad.id}` : 'no gamepad';
  if (!pad) return;
  pad.buttons.forEach((b, i) => {
    if (b.pressed && !padState.buttons[i]) {
      ensureAudio();
      line('event', `gamepad button ${i}`);
      send({ type: 'hci', kind: 'gamepad', button: i });
    }
    padState.buttons[i] = b.pressed;
  });
  const [x, y] = [pad.axes[0] || 0, pad.axes[1] || 0];
  const out = Math.hypot(x, y) > 0.5;
  if (out && !padState.stick) send({ type: 'hci', kind: 'stick', axes: [x, y] });
  padState.stick = out;
}

let last = performance.now();
function frame() {
  const t = performance.now();
  pollGamepad();
  scene.update(currentViseme(), (t - last) / 1000);
  window.npcPage.maxJaw = Math.max(window.npcPage.maxJaw || 0, scene.weights.jawOpen || 0);
  last = t;
  requestAnimationFrame(frame);
}

async function main() {
  await requireSignIn();
  window.npcPage.npcId = npcId;
  const creating = setupCreate(onCreated);
  const select = $('npc-select');
  try {  // the user's generated NPCs (POST /npcs) join the presets
    for (const n of await api('/npcs')) select.append(new Option(`${n.name}, ${n.role}`, n.npc_id));
  } catch { /* the NPC list is optional here */ }
  if (![...select.options].some((o) => o.value === npcId)) select.append(new Option(npcId, npcId));
  select.value = npcId;
  $('npc-select').addEventListener('change', (e) => { window.location.search = `?npc=${e.target.value}`; });
  $('chat-form').addEventListener('submit', onChat);
  $('npc-canvas').addEventListener('click', onCanvasClick);
  $('npc-canvas').addEventListener('mousemove', onCanvasMove);
  $('ptt').addEventListener('pointerdown', startTalking);
  $('ptt').addEventListener('pointerup', stopTalking);
  $('ptt').addEventListener('pointerleave', stopTalking);
  window.addEventListener('keydown', onKey);
  window.addEventListener('keyup', (e) => { if (e.key === 'v') stopTalking(); });
  if (params.get('glb')) {
    scene.loadGlb(`/assets/${params.get('glb')}/content`).catch((err) => { $('chat-error').textContent = `NPC model: ${err.message}`; });
  }
  connect();
  requestAnimationFrame(frame);
  await creating;
  if (!PRESETS.has(npcId)) {
    showProfile(npcId).then(placeInWorld).catch(() => { /* not one of yours: the socket says why */ });
  }
}

main();
