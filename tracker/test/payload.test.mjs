// The events the tracker builds must pass viz-collect's payload rules. rules.mjs ports those rules
// to JavaScript; it is first held to the golden vectors the Python twins are tested with.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { config, page } from './harness.mjs';
import { parsePayload } from './rules.mjs';

const VECTORS = JSON.parse(readFileSync(join(import.meta.dirname, '../../tests/fixtures/payload_vectors.json'), 'utf8'));
const NULLS = { r: null, ms: null, h: null, n: null, title: null };

function vectorBody(c) {
  if (c.body_hex) return Buffer.from(c.body_hex, 'hex');
  return Buffer.from(c.body + ' '.repeat(c.pad_spaces ?? 0), 'utf8');
}

describe('the JavaScript port of the server rules agrees with payload_vectors.json', () => {
  for (const c of VECTORS.cases) {
    test(c.name, () => {
      const body = vectorBody(c);
      if (c.expect) {
        assert.deepEqual(parsePayload(body, VECTORS.now_ms), c.expect);
      } else {
        assert.throws(() => parsePayload(body, VECTORS.now_ms), (e) => e.kind === c.error && e.path === c.path);
      }
    });
  }
});

/** Drive a consented page through every event type; returns the bodies it sent. */
function journey({ title = 'Hello', url, exitHref = 'https://elsewhere.example/x', name = 'signup', referrer } = {}) {
  const p = page({
    url, referrer, modules: ['collect'], cfg: config({ features: { collect: true, cmp: false } }),
    html: `<!doctype html><html><head><script></script><title></title></head><body><a id="out">out</a></body></html>`,
  });
  // Any title a page may set, control characters and lone surrogates included.
  p.doc.title = title;
  p.win.history.replaceState({}, '', '/'); // a fresh pageview that reads the new title
  p.doc.getElementById('out').setAttribute('href', exitHref);
  p.viz.tier(1);
  p.answerInit();
  p.clock.tick(3000);
  p.click(p.doc.getElementById('out'));
  p.viz.event(name);
  p.viz.event(42);
  p.win.history.pushState({}, '', '/next?q=1');
  p.clock.tick(2000);
  p.doc.dispatchEvent(new p.win.MouseEvent('mousemove'));
  p.setVisibility('hidden');
  const bodies = p.xhrs.filter((x) => x.url.pathname === '/collect').map((x) => x.body);
  bodies.push(...p.beacons.filter((b) => b.url.pathname === '/collect').map((b) => b.body));
  return bodies;
}

function check(bodies) {
  const events = [];
  for (const body of bodies) events.push(...parsePayload(Buffer.from(body, 'utf8'), 1_700_000_000_000).events);
  return events;
}

describe('what the tracker builds passes the server rules', () => {
  test('every event type, with the fields each type requires', () => {
    const events = check(journey());
    const types = new Set(events.map((e) => e.t));
    assert.deepEqual([...types].sort(), ['active', 'event', 'exit', 'pageview']);
    for (const e of events) {
      assert.match(e.id, /^[A-Za-z0-9_-]{8,64}$/);
      assert.equal(e.p[0], '/');
      if (e.t === 'active') assert.ok(Number.isInteger(e.ms) && e.ms > 0);
      if (e.t === 'exit') assert.equal(e.h, 'https://elsewhere.example/x');
      if (e.t === 'event') assert.ok(['signup', '42'].includes(e.n));
    }
    // The same shape as the valid vectors: only known keys, nothing null-valued sent.
    const keys = new Set(['id', 't', 'p', 'r', 'ts', 'ms', 'h', 'n', 'title']);
    for (const body of journey()) {
      for (const ev of JSON.parse(body).events) {
        for (const [k, v] of Object.entries(ev)) {
          assert.ok(keys.has(k), k);
          assert.notEqual(v, null);
        }
      }
    }
    const first = events.find((e) => e.t === 'pageview');
    const vector = VECTORS.cases.find((c) => c.name === 'all fields').expect.events[0];
    assert.deepEqual(Object.keys({ ...NULLS, ...first }).sort(), Object.keys(vector).sort());
  });

  test('hostile inputs are cut and cleaned to what the server accepts', () => {
    const long = 'x'.repeat(3000);
    const emoji = '🎉'.repeat(1500); // a pair at every cut point
    const events = check(journey({
      title: `a\u0001b\u001fc\ud800d${emoji}`,
      url: `https://www.news.example/${long}?${'q'.repeat(3000)}`,
      referrer: `https://ref.example/${'r'.repeat(3000)}`,
      exitHref: `https://elsewhere.example/${emoji}`,
      name: `\u0000${'n'.repeat(500)}`,
    }));
    assert.equal(events.find((e) => e.t === 'pageview').p.length, 2048, 'the long address, cut');
    const title = events.find((e) => e.t === 'pageview' && e.p === '/').title;
    assert.ok(title.startsWith('abcd🎉'), title.slice(0, 10));
    assert.ok([...title].length <= 512);
    assert.equal(events.find((e) => e.t === 'event' && e.n.startsWith('n')).n.length, 128);
    assert.ok(events.some((e) => e.t === 'exit' && e.h.length <= 2048));
  });

  test('a long address is cut to 2048 characters and still starts with "/"', () => {
    const p = page({
      url: `https://www.news.example/${'x'.repeat(3000)}`,
      referrer: `https://ref.example/${'r'.repeat(3000)}`,
      modules: ['collect'],
    });
    p.viz.tier(1);
    p.answerInit();
    const [ev] = check([p.pending('/collect')[0].body]);
    assert.equal(ev.p.length, 2048);
    assert.equal(ev.r.length, 2048);
  });

  test('the invalid vectors describe nothing the tracker produces', () => {
    // Each invalid vector's broken field, checked against everything a journey sent.
    const events = [];
    for (const body of journey()) events.push(...JSON.parse(body).events);
    for (const e of events) {
      assert.ok(e.id.length >= 8, 'id too short');
      assert.ok(['pageview', 'active', 'exit', 'event'].includes(e.t), 'unknown type');
      assert.ok(e.p.startsWith('/') && e.p.length <= 2048, 'path');
      assert.ok(Number.isInteger(e.ts), 'ts float/bool');
      assert.ok(e.t !== 'active' || Number.isInteger(e.ms), 'active without ms');
      assert.ok(e.t !== 'exit' || e.h, 'exit without href');
      assert.ok(e.t !== 'event' || e.n, 'event without name');
      assert.ok(!('ms' in e) || e.ms >= 0, 'ms negative');
      for (const v of Object.values(e)) if (typeof v === 'string') assert.doesNotMatch(v, /[\x00-\x1f]/, 'control char');
    }
    assert.ok(events.length >= 5);
  });
});
