#!/usr/bin/env node
// Deterministic mock LLM upstream for the Nexus tests and `make demo`.
// Node 20, no npm packages.
//
//   node t/mock/server.js --port N [--host 127.0.0.1] [--verbose]
//
// Endpoints
//   OpenAI     POST /v1/chat/completions   (stream false: JSON; true: SSE)
//              POST /v1/embeddings         (dim 8, deterministic)
//              GET  /v1/models
//   Ollama     POST /api/chat, POST /api/generate  (NDJSON; stream defaults
//              to true as in Ollama), POST /api/embed, GET /api/tags,
//              GET /api/version
//   Anthropic  POST /v1/messages           (JSON, or SSE with stream: true)
//   Control    GET  /__mock/stats          counters (see below)
//              GET  /__mock/requests       the last 100 requests: method, path,
//                                          headers, body (first 64 KiB)
//              POST /__mock/reset          clears counters and requests
//
// Content. The reply to the last user message is
//   "mock reply to: <its first 8 words>"
// Token counts are whitespace-separated words: prompt = words of every
// message (system included; the prompt/system of /api/generate; the inputs
// of embeddings), completion = words of the reply. max_tokens (OpenAI,
// Anthropic) or options.num_predict (Ollama) below the reply's length cuts
// it: finish_reason "length" / stop_reason "max_tokens" / done_reason
// "length". Streams send one word per content chunk (" word" after the
// first). Any model name is served, except names starting with "missing-":
// 404 model_not_found. A missing model → 400.
//
// Fault modes, by model name (matched anywhere after a "/" and before a ":"
// tag, so "mock/fault-cut" and "fault-cut:latest" work too):
//   fault-500        500 with a provider-shaped JSON error
//   fault-429        429 with Retry-After: 1
//   fault-slow       first byte after 2000 ms (header x-mock-delay-ms: N
//                    overrides; that header delays any request)
//   fault-stall      headers and the first chunk/frame, then nothing, until
//                    the client goes away (non-stream: half a JSON body)
//   fault-cut        two frames, then the socket is destroyed mid-stream
//                    (non-stream: half of a Content-Length body, then cut)
//   fault-malformed  a non-JSON `data:` line (NDJSON: a non-JSON line) after
//                    the first frame; non-stream: 200 with a body that is not
//                    JSON
//   fault-gap        a 3000 ms pause after the first content frame (header
//                    x-mock-gap-ms: N overrides); non-stream: like slow
// Headers that steer any request:
//   x-mock-status: NNN        answer NNN (error body in the provider's shape;
//                             429 and 503 get Retry-After: 1)
//   x-mock-delay-ms: N        delay before the first byte
//   x-mock-chunk-delay-ms: N  delay between stream frames (default 0)
// Every response has x-mock-request-id: <counter>.
//
// /__mock/stats: {"total","by_path":{path:n},"by_model":{model:n},
//   "by_fault":{fault:n},"aborted","open","connections","last_request_id"}
//   aborted = requests whose client left before the response ended;
//   open = requests in progress; connections = TCP connections accepted
//   (lets a test check upstream keep-alive reuse).
//
// Robustness: malformed JSON → 400, body over 8 MiB → 413, unknown path →
// 404, wrong method → 405; client aborts clear every timer. Never crashes on
// input; an unexpected exception answers 500.

'use strict';

const http = require('http');
const crypto = require('crypto');

// --- arguments ---------------------------------------------------------------
const args = process.argv.slice(2);
let port = 18081;
let host = '127.0.0.1';
let verbose = false;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--port') port = parseInt(args[++i], 10);
  else if (args[i] === '--host') host = args[++i];
  else if (args[i] === '--verbose') verbose = true;
  else if (args[i] === '--help' || args[i] === '-h') {
    process.stdout.write('usage: server.js --port N [--host H] [--verbose]\n');
    process.exit(0);
  } else {
    process.stderr.write(`server.js: unknown argument ${args[i]}\n`);
    process.exit(2);
  }
}
if (!(port > 0 && port < 65536)) {
  process.stderr.write('server.js: --port N required\n');
  process.exit(2);
}

const MAX_BODY = 8 * 1024 * 1024;
const SLOW_MS = 2000;
const GAP_MS = 3000;
const EMBED_DIM = 8;
const MODELS = ['mock-small', 'mock-large', 'mock-embed',
  'fault-500', 'fault-429', 'fault-slow', 'fault-stall', 'fault-cut',
  'fault-malformed', 'fault-gap'];
const FAULTS = ['500', '429', 'slow', 'stall', 'cut', 'malformed', 'gap'];
const FIXED_TIME = 1700000000;   // "created" of models and tags

// --- state -------------------------------------------------------------------
let counter = 0;
let stats;
let recent;
function resetStats() {
  stats = { total: 0, by_path: {}, by_model: {}, by_fault: {}, aborted: 0,
    open: 0, connections: 0, last_request_id: counter };
  recent = [];
}
resetStats();

function log(...a) {
  if (verbose) process.stderr.write(a.join(' ') + '\n');
}

// --- helpers -----------------------------------------------------------------
function words(s) {
  if (typeof s !== 'string') return [];
  return s.split(/\s+/).filter((w) => w.length > 0);
}

// Text of an OpenAI/Anthropic/Ollama message content (string or parts).
function contentText(c) {
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) {
    return c.map((p) => (p && typeof p.text === 'string' ? p.text
      : typeof p === 'string' ? p : '')).join(' ');
  }
  return '';
}

function replyFor(text) {
  const w = words(text).slice(0, 8);
  return ('mock reply to: ' + w.join(' ')).trim();
}

// A reply cut to `limit` words (if given): {text, words, truncated}.
function buildReply(userText, limit) {
  let w = words(replyFor(userText));
  let truncated = false;
  if (Number.isInteger(limit) && limit >= 0 && limit < w.length) {
    w = w.slice(0, limit);
    truncated = true;
  }
  return { text: w.join(' '), words: w, truncated };
}

function lastUserText(messages) {
  if (!Array.isArray(messages)) return '';
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m && m.role === 'user') return contentText(m.content);
  }
  return '';
}

function messagesWords(messages) {
  if (!Array.isArray(messages)) return 0;
  let n = 0;
  for (const m of messages) if (m) n += words(contentText(m.content)).length;
  return n;
}

function faultOf(model) {
  if (typeof model !== 'string') return null;
  const m = /(?:^|\/)fault-([a-z0-9]+)(?::|$)/.exec(model);
  return m && FAULTS.includes(m[1]) ? m[1] : null;
}

function embedding(input) {
  const h = crypto.createHash('sha256').update(String(input)).digest();
  const v = [];
  for (let i = 0; i < EMBED_DIM; i++) v.push(h.readInt16BE(i * 2) / 32768);
  const norm = Math.sqrt(v.reduce((a, x) => a + x * x, 0)) || 1;
  return v.map((x) => Math.round((x / norm) * 1e6) / 1e6);
}

function intHeader(req, name) {
  const v = req.headers[name];
  if (v === undefined) return null;
  const n = parseInt(v, 10);
  return Number.isFinite(n) && n >= 0 ? n : null;
}

// --- per-request response state ----------------------------------------------
// Wraps res with timers that die with the request.
class Reply {
  constructor(req, res, id, flavor, counted) {
    this.req = req;
    this.res = res;
    this.id = id;
    this.flavor = flavor;       // 'openai' | 'ollama' | 'anthropic'
    this.timers = new Set();
    this.closed = false;
    this.finished = false;
    const gen = stats;
    if (counted) stats.open++;
    res.on('finish', () => { this.finished = true; });
    res.on('close', () => {
      this.closed = true;
      for (const t of this.timers) clearTimeout(t);
      this.timers.clear();
      if (!counted) return;
      stats.open--;
      // an abort counts only in the stats generation it started in
      if (!this.finished && !this.cut && gen === stats) stats.aborted++;
    });
  }

  later(ms, fn) {
    if (this.closed) return;
    if (!ms) { fn(); return; }
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.closed) fn();
    }, ms);
    this.timers.add(t);
  }

  headers(status, extra) {
    const h = Object.assign({ 'x-mock-request-id': String(this.id) }, extra);
    this.res.writeHead(status, h);
  }

  json(status, obj, extra) {
    if (this.closed) return;
    const body = JSON.stringify(obj);
    this.headers(status, Object.assign({
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    }, extra));
    this.res.end(body);
  }

  error(status, message, extra) {
    let body;
    const type = status === 429 ? 'rate_limit_error'
      : status === 401 ? 'authentication_error'
        : status === 404 ? 'not_found_error'
          : status >= 500 ? 'server_error' : 'invalid_request_error';
    if (this.flavor === 'ollama') {
      body = { error: message };
    } else if (this.flavor === 'anthropic') {
      body = { type: 'error', error: {
        type: status >= 500 ? 'api_error' : type, message } };
    } else {
      body = { error: { message, type, param: null,
        code: status === 404 ? 'model_not_found' : `mock_${status}` } };
    }
    const h = Object.assign({}, extra);
    if (status === 429 || status === 503) h['retry-after'] = '1';
    this.json(status, body, h);
  }
}

// --- streaming with faults ----------------------------------------------------
// frames: strings to write in order; contentIndex: index of the first frame
// carrying content (the gap goes after it); malformed: the bad line.
function sendStream(rp, fault, contentType, frames, opts) {
  const { req, res } = rp;
  const chunkDelay = intHeader(req, 'x-mock-chunk-delay-ms') || 0;
  const gapMs = intHeader(req, 'x-mock-gap-ms') ?? GAP_MS;
  rp.headers(200, { 'content-type': contentType,
    'cache-control': 'no-cache' });
  res.flushHeaders();

  if (fault === 'malformed') {
    frames = frames.slice();
    frames.splice(1, 0, opts.malformed);
  }
  let i = 0;
  const next = () => {
    if (rp.closed) return;
    if (i >= frames.length) { res.end(); return; }
    const f = frames[i++];
    if (fault === 'stall' && i === 2) return;         // one frame, then nothing
    if (fault === 'cut' && i === 2) {                 // two frames, then cut
      rp.cut = true;
      res.write(f, () => rp.later(20, () => res.socket && res.socket.destroy()));
      return;
    }
    res.write(f);
    let wait = chunkDelay;
    if (fault === 'gap' && i === (opts.contentIndex ?? 1) + 1) wait = gapMs;
    rp.later(wait, next);
  };
  next();
}

// Non-stream body with faults.
function sendBody(rp, fault, status, obj, extra) {
  const { res } = rp;
  const body = JSON.stringify(obj);
  if (fault === 'malformed') {
    const bad = '{"id": "mock", this is not json';
    rp.headers(200, Object.assign({ 'content-type': 'application/json',
      'content-length': Buffer.byteLength(bad) }, extra));
    res.end(bad);
    return;
  }
  if (fault === 'stall') {
    rp.headers(200, Object.assign({ 'content-type': 'application/json' },
      extra));
    res.write(body.slice(0, Math.floor(body.length / 2)));
    return;                                             // until the client leaves
  }
  if (fault === 'cut') {
    rp.headers(200, Object.assign({ 'content-type': 'application/json',
      'content-length': Buffer.byteLength(body) }, extra));
    rp.cut = true;
    res.write(body.slice(0, Math.floor(body.length / 2)), () => {
      rp.later(20, () => res.socket && res.socket.destroy());
    });
    return;
  }
  rp.json(status, obj, extra);
}

// --- OpenAI ------------------------------------------------------------------
function openaiChat(rp, body, fault) {
  const model = body.model;
  const reply = buildReply(lastUserText(body.messages),
    Number.isInteger(body.max_completion_tokens) ? body.max_completion_tokens
      : body.max_tokens);
  const promptTokens = messagesWords(body.messages);
  const usage = { prompt_tokens: promptTokens,
    completion_tokens: reply.words.length,
    total_tokens: promptTokens + reply.words.length };
  const finish = reply.truncated ? 'length' : 'stop';
  const id = `chatcmpl-mock-${rp.id}`;
  const created = Math.floor(Date.now() / 1000);

  if (!body.stream) {
    sendBody(rp, fault, 200, {
      id, object: 'chat.completion', created, model,
      choices: [{ index: 0,
        message: { role: 'assistant', content: reply.text },
        logprobs: null, finish_reason: finish }],
      usage,
      system_fingerprint: 'fp_mock',
    });
    return;
  }

  const includeUsage = !!(body.stream_options && body.stream_options.include_usage);
  const chunk = (choices, extra) => {
    const c = { id, object: 'chat.completion.chunk', created, model,
      system_fingerprint: 'fp_mock', choices };
    if (includeUsage) c.usage = null;
    Object.assign(c, extra || {});
    return `data: ${JSON.stringify(c)}\n\n`;
  };
  const frames = [chunk([{ index: 0,
    delta: { role: 'assistant', content: '' }, logprobs: null,
    finish_reason: null }])];
  reply.words.forEach((w, k) => {
    frames.push(chunk([{ index: 0, delta: { content: (k ? ' ' : '') + w },
      logprobs: null, finish_reason: null }]));
  });
  frames.push(chunk([{ index: 0, delta: {}, logprobs: null,
    finish_reason: finish }]));
  if (includeUsage) frames.push(chunk([], { usage }));
  frames.push('data: [DONE]\n\n');
  sendStream(rp, fault, 'text/event-stream', frames,
    { contentIndex: 1, malformed: 'data: {"id": "broken", not json\n\n' });
}

function openaiEmbeddings(rp, body, fault) {
  let inputs = body.input;
  if (inputs === undefined || inputs === null) {
    rp.error(400, "'input' is required");
    return;
  }
  if (!Array.isArray(inputs) || (inputs.length && typeof inputs[0] === 'number')) {
    inputs = [inputs];
  }
  inputs = inputs.map((x) => (Array.isArray(x) ? x.join(' ') : String(x)));
  const n = inputs.reduce((a, s) => a + words(s).length, 0);
  const data = inputs.map((s, index) => {
    const v = embedding(s);
    if (body.encoding_format === 'base64') {
      const buf = Buffer.alloc(4 * v.length);
      v.forEach((x, k) => buf.writeFloatLE(x, k * 4));
      return { object: 'embedding', index, embedding: buf.toString('base64') };
    }
    return { object: 'embedding', index, embedding: v };
  });
  sendBody(rp, fault, 200, { object: 'list', data, model: body.model,
    usage: { prompt_tokens: n, total_tokens: n } });
}

function openaiModels(rp) {
  rp.json(200, { object: 'list', data: MODELS.map((id) => ({
    id, object: 'model', created: FIXED_TIME, owned_by: 'nexus-mock' })) });
}

// --- Ollama ------------------------------------------------------------------
function ollamaDurations(promptTokens, evalTokens) {
  return { total_duration: 1000000 * (1 + evalTokens), load_duration: 100000,
    prompt_eval_count: promptTokens, prompt_eval_duration: 10000 * promptTokens,
    eval_count: evalTokens, eval_duration: 100000 * evalTokens };
}

function ollamaChatOrGenerate(rp, body, fault, kind) {
  const model = body.model;
  const opts = body.options || {};
  let userText;
  let promptTokens;
  if (kind === 'chat') {
    userText = lastUserText(body.messages);
    promptTokens = messagesWords(body.messages);
  } else {
    userText = typeof body.prompt === 'string' ? body.prompt : '';
    promptTokens = words(userText).length + words(body.system).length;
  }
  const reply = buildReply(userText, opts.num_predict);
  const doneReason = reply.truncated ? 'length' : 'stop';
  const createdAt = new Date().toISOString();
  const stream = body.stream !== false;
  const piece = (text) => (kind === 'chat'
    ? { message: { role: 'assistant', content: text } } : { response: text });
  const final = Object.assign({ model, created_at: createdAt }, piece(''),
    { done: true, done_reason: doneReason },
    kind === 'generate' ? { context: [1, 2, 3] } : {},
    ollamaDurations(promptTokens, reply.words.length));

  if (!stream) {
    sendBody(rp, fault, 200, Object.assign({}, final, piece(reply.text)));
    return;
  }
  const frames = reply.words.map((w, k) => JSON.stringify(Object.assign(
    { model, created_at: createdAt }, piece((k ? ' ' : '') + w),
    { done: false })) + '\n');
  frames.push(JSON.stringify(final) + '\n');
  sendStream(rp, fault, 'application/x-ndjson', frames,
    { contentIndex: 0, malformed: '{"model": "broken", not json\n' });
}

function ollamaEmbed(rp, body, fault) {
  let inputs = body.input;
  if (inputs === undefined) inputs = body.prompt;
  if (inputs === undefined || inputs === null) {
    rp.error(400, 'input is required');
    return;
  }
  if (!Array.isArray(inputs)) inputs = [inputs];
  inputs = inputs.map(String);
  const n = inputs.reduce((a, s) => a + words(s).length, 0);
  sendBody(rp, fault, 200, { model: body.model,
    embeddings: inputs.map(embedding), total_duration: 1000,
    load_duration: 100, prompt_eval_count: n });
}

function ollamaTags(rp) {
  rp.json(200, { models: MODELS.map((m) => ({
    name: `${m}:latest`, model: `${m}:latest`,
    modified_at: new Date(FIXED_TIME * 1000).toISOString(),
    size: 1000000,
    digest: crypto.createHash('sha256').update(m).digest('hex'),
    details: { parent_model: '', format: 'gguf', family: 'mock',
      families: ['mock'], parameter_size: '1M',
      quantization_level: 'Q4_0' } })) });
}

// --- Anthropic -----------------------------------------------------------------
function anthropicMessages(rp, body, fault) {
  const model = body.model;
  if (!Number.isInteger(body.max_tokens)) {
    rp.error(400, 'max_tokens: Field required');
    return;
  }
  const reply = buildReply(lastUserText(body.messages), body.max_tokens);
  const sysWords = words(contentText(body.system)).length;
  const inTok = messagesWords(body.messages) + sysWords;
  const stop = reply.truncated ? 'max_tokens' : 'end_turn';
  const id = `msg_mock_${rp.id}`;

  if (!body.stream) {
    sendBody(rp, fault, 200, { id, type: 'message', role: 'assistant', model,
      content: [{ type: 'text', text: reply.text }], stop_reason: stop,
      stop_sequence: null,
      usage: { input_tokens: inTok, output_tokens: reply.words.length } });
    return;
  }
  const ev = (name, data) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
  const frames = [
    ev('message_start', { type: 'message_start', message: { id,
      type: 'message', role: 'assistant', model, content: [],
      stop_reason: null, stop_sequence: null,
      usage: { input_tokens: inTok, output_tokens: 1 } } }),
    ev('content_block_start', { type: 'content_block_start', index: 0,
      content_block: { type: 'text', text: '' } }),
  ];
  reply.words.forEach((w, k) => frames.push(ev('content_block_delta', {
    type: 'content_block_delta', index: 0,
    delta: { type: 'text_delta', text: (k ? ' ' : '') + w } })));
  frames.push(ev('content_block_stop', { type: 'content_block_stop', index: 0 }));
  frames.push(ev('message_delta', { type: 'message_delta',
    delta: { stop_reason: stop, stop_sequence: null },
    usage: { output_tokens: reply.words.length } }));
  frames.push(ev('message_stop', { type: 'message_stop' }));
  sendStream(rp, fault, 'text/event-stream', frames,
    { contentIndex: 2,
      malformed: 'event: content_block_delta\ndata: {"type": not json\n\n' });
}

// --- routing -------------------------------------------------------------------
const ROUTES = {
  'POST /v1/chat/completions': ['openai', openaiChat, true],
  'POST /v1/embeddings': ['openai', openaiEmbeddings, true],
  'GET /v1/models': ['openai', openaiModels, false],
  'POST /v1/messages': ['anthropic', anthropicMessages, true],
  'POST /api/chat': ['ollama', (rp, b, f) => ollamaChatOrGenerate(rp, b, f, 'chat'), true],
  'POST /api/generate': ['ollama', (rp, b, f) => ollamaChatOrGenerate(rp, b, f, 'generate'), true],
  'POST /api/embed': ['ollama', ollamaEmbed, true],
  'POST /api/embeddings': ['ollama', ollamaEmbed, true],
  'GET /api/tags': ['ollama', ollamaTags, false],
  'GET /api/version': ['ollama', (rp) => rp.json(200, { version: '0.0.0-mock' }), false],
};
const PATHS = new Set(Object.keys(ROUTES).map((k) => k.split(' ')[1]));

// Does this request get a streamed answer?
function isStream(route, body) {
  if (route[1] === openaiEmbeddings || route[1] === ollamaEmbed) return false;
  if (route[0] === 'ollama') return body.stream !== false;
  return !!body.stream;
}

function handle(req, res, raw, over) {
  const id = ++counter;
  const path = req.url.split('?')[0];

  // control endpoints: not counted
  if (path.startsWith('/__mock/')) {
    const rp = new Reply(req, res, id, 'openai', false);
    if (path === '/__mock/stats' && req.method === 'GET') {
      return rp.json(200, stats);
    }
    if (path === '/__mock/requests' && req.method === 'GET') {
      return rp.json(200, { requests: recent });
    }
    if (path === '/__mock/reset' && req.method === 'POST') {
      const open = stats.open;
      resetStats();
      stats.open = open;
      return rp.json(200, { ok: true });
    }
    return rp.error(404, `unknown path ${path}`);
  }

  stats.total++;
  stats.last_request_id = id;
  stats.by_path[path] = (stats.by_path[path] || 0) + 1;
  recent.push({ id, method: req.method, path: req.url, headers: req.headers,
    body: raw.subarray(0, 65536).toString('utf8'), time: Date.now() / 1000 });
  if (recent.length > 100) recent.shift();
  log(`#${id} ${req.method} ${req.url} ${raw.length}B`);

  const route = ROUTES[`${req.method} ${path}`];
  const flavor = route ? route[0] : path.startsWith('/api/') ? 'ollama'
    : path === '/v1/messages' ? 'anthropic' : 'openai';
  const rp = new Reply(req, res, id, flavor, true);

  if (!route) {
    if (PATHS.has(path)) return rp.error(405, `method ${req.method} not allowed`);
    return rp.error(404, `unknown path ${path}`);
  }

  let body = {};
  if (route[2]) {
    if (over) return rp.error(413, 'request body too large');
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch (e) {
      return rp.error(400, 'invalid JSON body');
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      return rp.error(400, 'request body must be a JSON object');
    }
    if (typeof body.model !== 'string' || body.model === '') {
      return rp.error(400, "'model' is required");
    }
    stats.by_model[body.model] = (stats.by_model[body.model] || 0) + 1;
  }
  const fault = route[2] ? faultOf(body.model) : null;
  if (fault) stats.by_fault[fault] = (stats.by_fault[fault] || 0) + 1;

  let delay = intHeader(req, 'x-mock-delay-ms');
  if (delay === null && fault === 'slow') delay = SLOW_MS;
  if (delay === null && fault === 'gap' && !isStream(route, body)) {
    delay = intHeader(req, 'x-mock-gap-ms') ?? GAP_MS;
  }

  rp.later(delay || 0, () => {
    const forced = intHeader(req, 'x-mock-status');
    if (forced !== null && forced >= 201 && forced <= 599) {
      if (forced === 204 || forced === 304) {
        rp.headers(forced);
        res.end();
        return;
      }
      if (forced < 400) return rp.json(forced, { mock: true });
      return rp.error(forced, `mock forced status ${forced}`);
    }
    if (route[2] && body.model.startsWith('missing-')) {
      return rp.error(404, `The model '${body.model}' does not exist`);
    }
    if (fault === '500') return rp.error(500, 'mock upstream failure');
    if (fault === '429') return rp.error(429, 'mock rate limit');
    route[1](rp, body, fault === 'slow' ? null : fault);
  });
}

const server = http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  let over = false;
  req.on('data', (c) => {
    size += c.length;
    if (size > MAX_BODY) { over = true; return; }
    chunks.push(c);
  });
  req.on('error', () => {});
  res.on('error', () => {});
  req.on('end', () => {
    try {
      handle(req, res, Buffer.concat(chunks), over);
    } catch (e) {
      process.stderr.write(`mock: internal error: ${e && e.stack}\n`);
      try {
        if (!res.headersSent) {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end('{"error":{"message":"mock internal error","type":"server_error"}}');
        } else {
          res.destroy();
        }
      } catch (_) { /* ignore */ }
    }
  });
});

server.keepAliveTimeout = 120000;
server.headersTimeout = 125000;
server.requestTimeout = 0;
server.on('connection', (sock) => {
  stats.connections++;
  sock.setNoDelay(true);
  sock.on('error', () => {});
});
server.on('clientError', (err, sock) => {
  if (sock.writable) {
    sock.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n'
      + 'Content-Length: 0\r\n\r\n');
  } else {
    sock.destroy();
  }
});
server.on('error', (e) => {
  process.stderr.write(`mock: ${e.message}\n`);
  process.exit(1);
});
process.on('uncaughtException', (e) => {
  process.stderr.write(`mock: uncaught: ${e && e.stack}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    process.exit(0);
  });
}

server.listen(port, host, () => {
  process.stdout.write(`mock LLM upstream listening on ${host}:${port}\n`);
});
