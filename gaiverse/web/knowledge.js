// "Knowledge": extend the NPC knowledge base with your documents and facts (yours alone), list, edit,
// delete and search them next to the shared prior knowledge. Everything goes through /knowledge.
import { $, ApiError, act, api, el, formatTime, requireSignIn, status } from './common.js';

const K = '/knowledge';
const POLL_MS = 2000;
let openDoc = null;

const npcParam = (id) => $(id).value.trim() || null;

async function loadDomains() {
  const domains = await api(`${K}/domains`);
  for (const select of document.querySelectorAll('select.domains')) {
    select.append(...domains.map((d) => {
      const option = el('option', d.domain);
      option.value = d.domain;
      option.title = d.description;
      return option;
    }));
    if (select.id !== 'search-domain') select.value = 'general';
  }
}

// --- adding ---------------------------------------------------------------------------------------
async function uploadDocument(event) {
  event.preventDefault();
  const file = $('doc-file').files[0];
  if (!file) return;
  await act('doc-status', `uploading ${file.name}…`, async () => {
    const params = new URLSearchParams({ domain: $('doc-domain').value });
    if (npcParam('doc-npc')) params.set('npc_id', npcParam('doc-npc'));
    const form = new FormData();
    form.append('file', file, file.name);
    const done = await api(`${K}/documents?${params}`, { method: 'POST', body: form });
    $('doc-form').reset();
    $('doc-domain').value = 'general';
    await loadDocuments();
    if (done.status === 'ingesting') {
      followRun(done);
      return `${done.name}: ${done.passages} passages are being ingested (run ${done.run_id.slice(0, 8)})…`;
    }
    return `${done.name}: ${done.passages} passages stored`;
  });
}

/** A large document is ingested by a flow run: poll the run, then show the stored document. */
function followRun(upload) {
  const timer = setInterval(async () => {
    try {
      const run = await api(`/runs/${upload.run_id}`);
      if (['FAILED', 'CRASHED', 'CANCELLED'].includes(run.state)) {
        clearInterval(timer);
        status('doc-status', `${upload.name}: ingestion ${run.state.toLowerCase()} (${run.message || 'see the run logs'})`, 'error');
      } else if (run.state === 'COMPLETED') {
        clearInterval(timer);
        status('doc-status', `${upload.name}: ${upload.passages} passages stored by the ingestion flow`, 'ok');
        await loadDocuments();
      }
    } catch (err) {
      clearInterval(timer);
      status('doc-status', err instanceof ApiError ? err.detail : String(err), 'error');
    }
  }, POLL_MS);
}

async function addFact(event) {
  event.preventDefault();
  await act('fact-status', 'adding the fact…', async () => {
    const body = { text: $('fact-text').value.trim(), domain: $('fact-domain').value,
      entity: $('fact-entity').value.trim(), npc_id: npcParam('fact-npc') };
    const passage = await api(`${K}/facts`, { method: 'POST', json: body });
    $('fact-form').reset();
    $('fact-domain').value = 'general';
    await loadDocuments();
    return `fact stored as passage ${passage.id}${passage.npc_id ? ` for ${passage.npc_id}` : ''}`;
  });
}

// --- listing, editing, deleting ------------------------------------------------------------------------
async function loadDocuments() {
  const docs = await api(`${K}/documents`);
  $('documents').querySelector('tbody').replaceChildren(...docs.map((doc) => {
    const row = el('tr');
    row.dataset.docId = doc.doc_id;
    const remove = el('button', 'Delete', 'small danger');
    remove.type = 'button';
    remove.addEventListener('click', (e) => { e.stopPropagation(); deleteDocument(doc); });
    const cell = el('td');
    cell.append(remove);
    row.append(el('td', doc.name), el('td', doc.kind), el('td', doc.npc_id || 'every NPC'),
      el('td', String(doc.passages)), el('td', formatTime(doc.created_at)), cell);
    row.addEventListener('click', () => showDocument(doc.doc_id));
    return row;
  }));
  $('docs-empty').hidden = docs.length > 0;
  $('docs-count').textContent = `${docs.length} documents and facts`;
  if (openDoc && !docs.some((d) => d.doc_id === openDoc)) {
    openDoc = null;
    $('doc-detail').hidden = true;
  }
}

async function showDocument(docId) {
  await act('docs-status', 'opening…', async () => {
    const doc = await api(`${K}/documents/${docId}`);
    openDoc = docId;
    $('doc-detail').hidden = false;
    $('doc-detail').dataset.docId = docId;
    $('doc-title').textContent = `${doc.name} — ${doc.passages} passages`;
    $('passages').replaceChildren(...doc.items.map(passageItem));
    return `${doc.name} opened: click Edit to change a passage`;
  });
}

function passageItem(p) {
  const item = el('li');
  item.dataset.passageId = p.id;
  const head = el('div', null, 'task-head');
  head.append(el('strong', p.entity || '(no subject)'), el('span', `${p.domain} · passage ${p.id}`, 'hint'));
  const text = el('p', p.text, 'task-text');
  const edit = el('button', 'Edit', 'small');
  edit.type = 'button';
  edit.addEventListener('click', () => editPassage(item, p));
  const remove = el('button', 'Delete', 'small danger');
  remove.type = 'button';
  remove.addEventListener('click', () => deletePassage(p));
  item.append(head, text, edit, remove);
  return item;
}

function editPassage(item, p) {
  const form = el('form', null, 'edit');
  const area = el('textarea');
  area.value = p.text;
  area.rows = 3;
  area.maxLength = 2000;
  area.style.flex = '1';
  const save = el('button', 'Save');
  save.type = 'submit';
  form.append(area, save);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    await act('docs-status', `saving passage ${p.id}…`, async () => {
      const updated = await api(`${K}/passages/${p.id}`, { method: 'PATCH', json: { text: area.value } });
      item.replaceWith(passageItem(updated));
      return `passage ${p.id} saved and embedded again`;
    });
  });
  item.replaceChildren(form);
  area.focus();
}

async function deletePassage(p) {
  if (!window.confirm(`Delete passage ${p.id}?`)) return;
  await act('docs-status', `deleting passage ${p.id}…`, async () => {
    await api(`${K}/passages/${p.id}`, { method: 'DELETE' });
    await loadDocuments();
    if (openDoc) await showDocument(openDoc);
    return `passage ${p.id} deleted`;
  });
}

async function deleteDocument(doc) {
  if (!window.confirm(`Delete ${doc.name} and its ${doc.passages} passages?`)) return;
  await act('docs-status', `deleting ${doc.name}…`, async () => {
    const done = await api(`${K}/documents/${doc.doc_id}`, { method: 'DELETE' });
    await loadDocuments();
    return `${doc.name} deleted (${done.deleted} passages)`;
  });
}

// --- search -----------------------------------------------------------------------------------------
async function search(event) {
  event.preventDefault();
  await act('search-status', 'searching…', async () => {
    const params = new URLSearchParams({ query: $('search-query').value, k: '8',
      include_prior: $('search-prior').checked ? 'true' : 'false' });
    if ($('search-domain').value) params.set('domain', $('search-domain').value);
    if (npcParam('search-npc')) params.set('npc_id', npcParam('search-npc'));
    const hits = await api(`${K}/search?${params}`);
    $('hits').replaceChildren(...hits.map((hit) => {
      const p = hit.passage;
      const item = el('li');
      item.dataset.passageId = p.id;
      item.dataset.owner = p.owner;
      const head = el('div', null, 'task-head');
      head.append(el('strong', p.entity || p.source), el('span', p.owner === 'you' ? 'yours' : p.owner, 'chip'),
        el('span', `${p.domain} · score ${hit.score.toFixed(3)}`, 'hint'));
      item.append(head, el('p', p.text, 'task-text'));
      return item;
    }));
    return `${hits.length} passages`;
  });
}

async function main() {
  await requireSignIn();
  $('doc-form').addEventListener('submit', uploadDocument);
  $('fact-form').addEventListener('submit', addFact);
  $('search-form').addEventListener('submit', search);
  await loadDomains();
  await loadDocuments();
  document.body.dataset.ready = 'true';
}

main().catch((err) => {
  document.body.dataset.ready = 'error';
  status('doc-status', err instanceof ApiError ? err.detail : String(err), 'error');
});
