// "Create an NPC" on the NPC page: a character from the repository plus your settings -> POST /npcs,
// the generation run followed to its end, the NPC's own facts/document attached, its profile shown.
// API validation errors go next to the field they name; server text is only ever set with textContent.
import { $, ApiError, api, authHeaders, el } from '/web/common.js';

const FINAL = new Set(['COMPLETED', 'FAILED', 'CRASHED', 'CANCELLED']);
/** Prefect's own bookkeeping lines; the flow's steps are the rest of the run's log. */
const PLUMBING = /^(Running hook|Hook '|Finished in state|Downloading flow code|Beginning flow run|Created task run|Executing)/;
const POLL_MS = 1000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const words = (text) => text.split(',').map((w) => w.trim()).filter(Boolean);
const number = (id) => ($(id).value.trim() === '' ? undefined : Number($(id).value));

/** Fill the form's choices from the API: characters, knowledge domains, species, sexes, voices. */
async function loadChoices() {
  const [templates, domains, options] = await Promise.all([
    api('/npcs/templates'), api('/knowledge/domains'), api('/npcs/options')]);
  const groups = { user: 'Your characters', srd_npc: 'SRD characters', srd_background: 'SRD backgrounds' };
  for (const [kind, label] of Object.entries(groups)) {
    const group = el('optgroup');
    group.label = label;
    for (const t of templates.filter((x) => x.kind === kind)) {
      const option = new Option(`${t.name} — ${t.role}`, t.id);
      option.dataset.role = t.role;
      option.dataset.traits = (t.traits || []).join(', ');
      group.append(option);
    }
    if (group.children.length) $('c-template').append(group);
  }
  $('c-domains').replaceChildren(...domains.map((d) => {
    const box = el('input');
    box.type = 'checkbox';
    box.value = d.domain;
    const label = el('label');
    label.title = d.description;
    label.append(box, d.domain);
    return label;
  }));
  $('c-doc-domain').replaceChildren(...domains.map((d) => new Option(d.domain, d.domain)));
  $('c-doc-domain').value = 'general';
  for (const [slug, s] of Object.entries(options.species)) $('c-species').append(new Option(s.name, slug));
  for (const sex of options.sexes) $('c-sex').append(new Option(sex, sex));
  $('c-voice').replaceChildren(new Option('generated', ''), ...options.voices.map((v) => new Option(v, v)));
  $('c-template').addEventListener('change', showTemplateDefaults);
}

/** Your worlds (GET /worlds) for the "World" choice: the NPC's day is then spent at that world's places. */
async function loadWorlds() {
  try {
    const worlds = await api('/worlds');
    for (const w of worlds) $('c-world').append(new Option(`${w.world_id} (v${w.latest_version})`, w.world_id));
  } catch { /* no worlds service: NPCs are made without a world */ }
}

/** The chosen character's role and traits as placeholders: what the NPC gets unless you type your own. */
function showTemplateDefaults() {
  const chosen = $('c-template').selectedOptions[0];
  $('c-role').placeholder = chosen?.dataset.role || 'e.g. lighthouse keeper';
  $('c-traits').placeholder = chosen?.dataset.traits || 'comma separated: grumpy, loyal';
}

/** The POST /npcs body: only what the user filled in (every NpcSettings field is optional). */
function settingsFromForm() {
  const body = {
    template: $('c-template').value || undefined,
    name: $('c-name').value.trim() || undefined,
    role: $('c-role').value.trim() || undefined,
    traits: words($('c-traits').value),
    background: $('c-background').value.trim() || undefined,
    domains: [...$('c-domains').querySelectorAll('input:checked')].map((b) => b.value),
    appearance: words($('c-appearance').value),
    species: $('c-species').value || undefined,
    sex: $('c-sex').value || undefined,
    age: number('c-age'),
    seed: number('c-seed'),
    npc_id: $('c-npc-id').value.trim() || undefined,
    world_id: $('c-world').value || undefined,
  };
  const voice = { voice: $('c-voice').value || undefined, pitch_semitones: number('c-pitch'), rate: number('c-rate') };
  if (Object.values(voice).some((v) => v !== undefined)) body.voice = voice;
  return body;
}

function clearErrors() {
  for (const node of $('create-form').querySelectorAll('[data-field]')) {
    node.classList.remove('invalid');
    node.querySelector(':scope > .field-error').textContent = '';
  }
  $('create-error').textContent = '';
}

/**
 * Put an API error next to the field it names. The API answers 422 as "`voice.rate`: message";
 * the field is the longest data-field that prefixes that path ("traits.0" -> traits).
 * Errors naming no field of the form go to the line under the button, never nowhere.
 */
export function showError(err, fallbackField) {
  const detail = err instanceof ApiError ? String(err.detail) : String(err.message || err);
  const named = /^`([^`]+)`:\s*(.*)$/.exec(detail);
  let field = fallbackField;
  if (named) {
    const path = named[1];
    const fields = [...$('create-form').querySelectorAll('[data-field]')].map((n) => n.dataset.field)
      .filter((f) => path === f || path.startsWith(`${f}.`)).sort((a, b) => b.length - a.length);
    if (fields.length) field = fields[0];
  }
  const node = field && $('create-form').querySelector(`[data-field="${field}"]`);
  if (!node) { $('create-error').textContent = detail; return; }
  node.classList.add('invalid');
  node.querySelector(':scope > .field-error').textContent = named && field !== fallbackField ? named[2] : detail;
  node.querySelector('input, select, textarea')?.focus();
}

function progress(text, state, kind = '', label = state) {
  const item = el('li', null, kind);
  if (state) item.append(el('span', label, `state ${state}`));
  item.append(el('span', text));
  $('create-progress').append(item);
  return item;
}

/** Follow the generation run (GET /runs/{id} and its logs) until it ends; resolves to its final state. */
async function followRun(started) {
  const line = progress(`generating ${started.npc_id} — run ${started.run_id.slice(0, 8)}`, 'SCHEDULED');
  const badge = line.firstChild;
  let shown = 0;
  for (;;) {
    await sleep(POLL_MS);
    const run = await api(started.run_url);
    badge.textContent = run.state_name || run.state;
    badge.className = `state ${run.state}`;
    try {  // the run's log lines are its steps: settings, knowledge, profile, appearance, validation, publish
      const logs = await api(`${started.run_url}/logs?limit=200`);
      for (const entry of logs.slice(shown)) {
        if (entry.level >= 20 && !PLUMBING.test(entry.message)) {
          progress(entry.message.split('\n')[0].slice(0, 160), null, 'log');
        }
      }
      shown = logs.length;
    } catch { /* logs are a nicety; the state above is what counts */ }
    if (FINAL.has(run.state)) return run;
  }
}

/** Facts (one per line) and a document, scoped to the new NPC through the knowledge API. */
async function attachKnowledge(npcId) {
  const done = [];
  const facts = $('c-facts').value.split('\n').map((f) => f.trim()).filter(Boolean);
  for (const text of facts) {
    try {
      await api('/knowledge/facts', { method: 'POST', json: { text, npc_id: npcId } });
      done.push(`fact: ${text}`);
    } catch (err) {
      showError(err, 'facts');
    }
  }
  const file = $('c-doc').files[0];
  if (file) {
    const form = new FormData();
    form.append('file', file, file.name);
    const params = new URLSearchParams({ npc_id: npcId, domain: $('c-doc-domain').value });
    try {
      const up = await api(`/knowledge/documents?${params}`, { method: 'POST', body: form });
      done.push(`document: ${up.name} (${up.passages} passages${up.status === 'ingesting' ? ', ingesting' : ''})`);
    } catch (err) {
      showError(err, 'document');
    }
  }
  return done;
}

async function submit(event, onCreated) {
  event.preventDefault();
  clearErrors();
  $('create-progress').replaceChildren();
  $('c-submit').disabled = true;
  try {
    let started;
    try {
      started = await api('/npcs', { method: 'POST', json: settingsFromForm() });
    } catch (err) {
      showError(err, err.status === 404 && $('c-template').value ? 'template' : undefined);
      return;
    }
    window.npcPage.creating = started;
    const run = await followRun(started);
    if (run.state !== 'COMPLETED') {
      progress(`generation ${run.state.toLowerCase()}: ${run.message || 'see the run logs'}`, null, 'fail');
      $('create-error').textContent = `generation ${run.state.toLowerCase()}: ${run.message || ''}`;
      return;
    }
    const learned = await attachKnowledge(started.npc_id);
    for (const item of learned) progress(`taught ${item}`, 'COMPLETED', '', 'Done');
    const npc = await showProfile(started.npc_id);
    progress(`${npc.name} is ready — talk to them above`, 'COMPLETED', '', 'Ready');
    window.npcPage.created = { ...npc, knowledge: learned };
    await onCreated(npc);
  } catch (err) {
    $('create-error').textContent = err instanceof ApiError ? err.detail : String(err.message || err);
  } finally {
    $('c-submit').disabled = false;
  }
}

function section(title, ...children) {
  return [el('h4', title), ...children];
}

/** Show one of your generated NPCs: preview, profile, backstory, motives, voice, schedule, knowledge. */
export async function showProfile(npcId) {
  const npc = await api(`/npcs/${encodeURIComponent(npcId)}`);
  const p = npc.profile;
  const box = $('npc-profile');
  const top = el('div');
  const facts = el('div');
  facts.append(el('h3', `${p.name}, ${p.role}`),
    el('p', `${p.species}, ${p.sex}, ${p.age} years · ${p.appearance.height_m ? `${p.appearance.height_m.toFixed(2)} m · ` : ''}` +
      `speaks ${p.dialogue_style.style} · character ${p.template}`, 'hint'));
  const tags = el('p', null, 'tags');
  tags.append(...p.traits.map((t) => el('span', t)), ...p.kb_domains.map((d) => el('span', `knows ${d}`)));
  facts.append(tags, el('p', `voice ${p.voice.voice}, pitch ${p.voice.pitch_semitones} st, rate ${p.voice.rate}`, 'hint'));
  top.append(facts);
  if (npc.assets.preview) {
    const img = el('img');
    img.alt = `${p.name} preview`;
    top.append(img);
    fetch(`/assets/${npc.assets.preview}/content`, { headers: authHeaders() })
      .then((r) => (r.ok ? r.blob() : null)).then((b) => { if (b) img.src = URL.createObjectURL(b); });
  }
  const schedule = el('table');
  const body = el('tbody');
  for (const b of p.behaviour.schedule) {
    const row = el('tr');
    row.append(el('td', `${b.start}–${b.end}`), el('td', b.activity), el('td', b.place));
    body.append(row);
  }
  schedule.append(body);
  const motives = el('ul');
  motives.append(...p.motives.map((m) => el('li', m)));
  const parts = [top, ...section('Backstory', el('p', p.backstory)), ...section('Motives', motives),
    ...section('Greeting', el('p', p.dialogue_style.greeting || '')), ...section('Daily schedule', schedule)];
  if (p.world?.world_id) {
    parts.push(el('p', `lives in world ${p.world.world_id} v${p.world.version}: home ${p.world.home}, works at ${p.world.work}`, 'hint'));
  }
  if (p.unmatched_hints?.length) parts.push(el('p', `appearance hints not matched: ${p.unmatched_hints.join(', ')}`, 'hint'));
  try {
    const own = await api(`/knowledge/passages?npc_id=${encodeURIComponent(npcId)}&limit=20`);
    if (own.length) {
      const list = el('ul');
      list.append(...own.map((x) => el('li', `${x.text.slice(0, 200)} (${x.doc_id.startsWith('fact_') ? 'fact' : 'document'}, ${x.domain})`)));
      parts.push(...section('Own knowledge', list));
    }
  } catch { /* knowledge service not up: the profile still shows */ }
  box.replaceChildren(...parts);
  box.hidden = false;
  return npc;
}

/** Wire the form; ``onCreated(npc)`` runs once a new NPC is published and its knowledge attached. */
export async function setupCreate(onCreated) {
  $('create-form').addEventListener('submit', (event) => submit(event, onCreated));
  try {
    await Promise.all([loadChoices(), loadWorlds()]);
  } catch (err) {
    $('create-error').textContent = `cannot load the choices: ${err instanceof ApiError ? err.detail : err.message}`;
  }
}
