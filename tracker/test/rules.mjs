// A JavaScript port of viz/_fast/_payload_py.py (parse_payload), the server's rules for a
// POST /collect body. payload.test.mjs first proves the port agrees with every golden vector in
// tests/fixtures/payload_vectors.json, then runs what the tracker builds through it.
export const MAX_BODY_BYTES = 65536;
export const MAX_EVENTS = 50;
export const MAX_DEPTH = 32;
const PAST_MS = 7 * 24 * 3600 * 1000;
const FUTURE_MS = 5 * 60 * 1000;
const TYPES = new Set(['pageview', 'active', 'exit', 'event']);
const SID = /^[A-Za-z0-9_-]{3,64}$/;
const BID = /^[A-Za-z0-9_-]{22}$/;
const TOKEN = /^[0-9a-f]{64}$/;
const EID = /^[A-Za-z0-9_-]{8,64}$/;
const CONTROL = /[\x00-\x1f]/;
const LONE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const TOP_KEYS = new Set(['sid', 'bid', 'token', 'events']);
const EVENT_KEYS = new Set(['id', 't', 'p', 'r', 'ts', 'ms', 'h', 'n', 'title']);

export class PayloadError extends Error {
  constructor(path, message, tooLarge = false) {
    super(`${path}: ${message}`);
    this.path = path;
    this.kind = tooLarge ? 'PayloadTooLarge' : 'PayloadError';
  }
}

const fail = (path, message) => { throw new PayloadError(path, message); };
// A JSON number written with a fraction or exponent: a float in Python, never an int (even 1.0).
class Float {
  constructor(value) { this.value = value; }
}
const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Float);
const codePoints = (s) => [...s].length;

function deeperThan(obj, limit) {
  if (Array.isArray(obj)) return limit <= 0 || obj.some((v) => deeperThan(v, limit - 1));
  if (isObj(obj)) return limit <= 0 || Object.values(obj).some((v) => deeperThan(v, limit - 1));
  return false;
}

function hasLoneSurrogate(obj) {
  if (typeof obj === 'string') return LONE.test(obj);
  if (Array.isArray(obj)) return obj.some(hasLoneSurrogate);
  if (isObj(obj)) return Object.entries(obj).some(([k, v]) => LONE.test(k) || hasLoneSurrogate(v));
  return false;
}

function ident(obj, key, path, re, what) {
  const v = obj[key];
  if (v === undefined || v === null) fail(path, 'is required');
  if (typeof v !== 'string') fail(path, 'must be a string');
  if (!re.test(v)) fail(path, `must be ${what}`);
  return v;
}

function text(obj, key, path, lo, hi, required) {
  const v = obj[key];
  if (v === undefined || v === null) {
    if (required) fail(path, 'is required');
    return null;
  }
  if (typeof v !== 'string') fail(path, 'must be a string');
  const n = codePoints(v);
  if (n < lo || n > hi) fail(path, `must be ${lo}..${hi} characters long`);
  if (CONTROL.test(v)) fail(path, 'must not contain control characters');
  return v;
}

function int(obj, key, path, lo, hi, required) {
  const v = obj[key];
  if (v === undefined || v === null) {
    if (required) fail(path, 'is required');
    return null;
  }
  // JSON numbers written with a fraction or exponent are floats in Python, even 1.0.
  if (typeof v !== 'number' || !Number.isInteger(v)) fail(path, 'must be an integer');
  if (v < lo || v > hi) fail(path, `must be within ${lo}..${hi}`);
  return v;
}

function checkUnknown(obj, known, level) {
  for (const [k, v] of Object.entries(obj)) {
    if (!known.has(k) && deeperThan(v, MAX_DEPTH - level)) fail('$', 'nested too deeply');
  }
}

function event(ev, path, nowMs) {
  if (!isObj(ev)) fail(path, 'must be an object');
  const id = ident(ev, 'id', `${path}.id`, EID, '8-64 characters of [A-Za-z0-9_-]');
  const t = ev.t;
  if (t === undefined || t === null) fail(`${path}.t`, 'is required');
  if (typeof t !== 'string') fail(`${path}.t`, 'must be a string');
  if (!TYPES.has(t)) fail(`${path}.t`, 'must be pageview, active, exit or event');
  const p = text(ev, 'p', `${path}.p`, 1, 2048, true);
  if (p[0] !== '/') fail(`${path}.p`, 'must start with "/"');
  const out = {
    id, t, p,
    r: text(ev, 'r', `${path}.r`, 0, 2048, false),
    ts: int(ev, 'ts', `${path}.ts`, nowMs - PAST_MS, nowMs + FUTURE_MS, true),
    ms: int(ev, 'ms', `${path}.ms`, 0, 86_400_000, t === 'active'),
    h: text(ev, 'h', `${path}.h`, 1, 2048, t === 'exit'),
    n: text(ev, 'n', `${path}.n`, 1, 128, t === 'event'),
    title: text(ev, 'title', `${path}.title`, 0, 512, false),
  };
  checkUnknown(ev, EVENT_KEYS, 3);
  return out;
}

function payload(doc, nowMs) {
  if (!isObj(doc)) fail('$', 'must be an object');
  const sid = ident(doc, 'sid', '$.sid', SID, '3-64 characters of [A-Za-z0-9_-]');
  const bid = ident(doc, 'bid', '$.bid', BID, '22 base64url characters');
  const token = ident(doc, 'token', '$.token', TOKEN, '64 lowercase hex characters');
  const events = doc.events;
  if (events === undefined || events === null) fail('$.events', 'is required');
  if (!Array.isArray(events)) fail('$.events', 'must be a list');
  if (events.length < 1 || events.length > MAX_EVENTS) fail('$.events', `must hold 1..${MAX_EVENTS} events`);
  const parsed = events.map((ev, i) => event(ev, `$.events[${i}]`, nowMs));
  checkUnknown(doc, TOP_KEYS, 1);
  return { sid, bid, token, events: parsed };
}

// Python's json gives floats for numbers with a fraction or exponent: wrap those (outside
// strings) so the integer checks refuse them like the server does.
const TOKENS = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
function markFloats(text) {
  const marked = text.replace(TOKENS, (tok) => (tok[0] !== '"' && /[.eE]/.test(tok) ? `{"#float#":${tok}}` : tok));
  return JSON.parse(marked, (key, value) => (isObj(value) && '#float#' in value ? new Float(value['#float#']) : value));
}

/** Parse and validate a collect body (a Buffer or a string); throws PayloadError with .path. */
export function parsePayload(body, nowMs) {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  if (bytes.length > MAX_BODY_BYTES) throw new PayloadError('$', 'body too large', true);
  let doc;
  try {
    const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
    if (text.startsWith('\ufeff')) throw new Error('BOM');
    doc = markFloats(text);
    if (hasLoneSurrogate(doc)) throw new Error('lone surrogate');
  } catch (e) {
    if (e instanceof PayloadError) throw e;
    fail('$', 'body is not valid JSON');
  }
  try {
    return payload(doc, nowMs);
  } catch (e) {
    if (e instanceof PayloadError && e.path !== '$' && deeperThan(doc, MAX_DEPTH)) fail('$', 'nested too deeply');
    throw e;
  }
}
