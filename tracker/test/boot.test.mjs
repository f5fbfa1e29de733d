import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BID, config, page } from './harness.mjs';

const bundleScript = (p) => [...p.doc.querySelectorAll('script[src]')].map((s) => [s.src, s.async]);

for (const minified of [false, true]) {
  describe(`viz.js (${minified ? 'minified' : 'source'})`, () => {
    test('cap flags', () => {
      const p = page({ minified, modules: [] });
      assert.deepEqual({ ...p.viz.cap }, { beacon: true, fetch: false, xhr: true, ls: true, modern: true });
      const old = page({
        minified,
        modules: [],
        beacon: false,
        preload: (win) => {
          win.Function = function NoEval() { throw new win.EvalError('CSP'); };
          win.fetch = () => {};
          Object.defineProperty(win, 'localStorage', { get() { throw new win.DOMException('blocked', 'SecurityError'); } });
        },
      });
      assert.deepEqual({ ...old.viz.cap }, { beacon: false, fetch: true, xhr: true, ls: false, modern: false });
    });

    test('the anonymous hit: sendBeacon with sid, path+query and referrer, no storage', () => {
      const p = page({ minified, modules: [] });
      const [hit] = p.beacons;
      assert.equal(hit.url.origin + hit.url.pathname, 'https://c.news.example/hit');
      assert.deepEqual(Object.fromEntries(hit.url.searchParams), {
        sid: 'news-site', p: '/article?id=1', r: 'https://www.google.com/',
      });
      assert.equal(p.win.localStorage.length, 0);
      assert.equal(p.doc.cookie, '');
    });

    test('the anonymous hit falls back to an image without sendBeacon', () => {
      const images = [];
      page({
        minified,
        modules: [],
        beacon: false,
        preload: (win) => {
          win.Image = function Image() {
            images.push(this);
          };
        },
      });
      assert.equal(images.length, 1);
      assert.match(images[0].src, /^https:\/\/c\.news\.example\/hit\?sid=news-site&p=%2Farticle%3Fid%3D1&r=https%3A%2F%2Fwww\.google\.com%2F$/);
    });

    test('the bundle: modern only with recs and ES2017 support, inserted async', () => {
      const cfg = config();
      assert.deepEqual(bundleScript(page({ minified, modules: [], cfg })), [[cfg.bundle.legacy, true]]);
      const recs = config({ features: { collect: true, cmp: true, recs: true } });
      assert.deepEqual(bundleScript(page({ minified, modules: [], cfg: recs })), [[recs.bundle.modern, true]]);
      const noModern = page({ minified, modules: [], cfg: recs, preload: (win) => { win.Function = () => { throw new Error('x'); }; } });
      assert.deepEqual(bundleScript(noModern), [[recs.bundle.legacy, true]]);
      const off = config({ features: { collect: false, cmp: false, recs: false } });
      assert.deepEqual(bundleScript(page({ minified, modules: [], cfg: off })), []);
      const noCors = page({ minified, modules: [], preload: (win) => { win.XMLHttpRequest = function X() {}; } });
      assert.deepEqual(bundleScript(noCors), [], 'browsers without credentialed CORS only get the pixel');
    });

    test('no config, or a second copy of the config script, does nothing', () => {
      const none = page({ minified, modules: [], cfg: undefined, preload: (win) => { delete win.__VIZ_CFG; } });
      assert.equal(none.win.viz, undefined);
      const p = page({ minified, modules: [] });
      const first = p.viz;
      p.run('viz');
      assert.equal(p.win.viz, first);
      assert.equal(p.beacons.length, 1);
    });

    test('page API: calls queue until a module defines them, including calls from before the tag', () => {
      const p = page({
        minified,
        modules: [],
        cfg: config({ features: { collect: true, cmp: false } }),
        preload: (win) => { win.viz = { q: [['event', 'before-tag']] }; },
      });
      p.viz.event('after-tag');
      assert.deepEqual(p.viz.q.map((c) => c[1]), ['before-tag', 'after-tag']);
      p.viz.consent(1);
      p.run('collect');
      assert.equal(p.viz.q.length, 0);
      p.answerInit();
      assert.deepEqual(p.pending('/collect')[0].json.events.filter((e) => e.t === 'event').map((e) => e.n), ['before-tag', 'after-tag']);
    });

    test('viz:consent is a CustomEvent with detail {tier}; the IE11 fallback works too', () => {
      const p = page({ minified, modules: [] });
      p.viz.tier(2);
      assert.deepEqual(p.events, [{ type: 'viz:consent', detail: { tier: 2 } }]);
      const ie = page({ minified, modules: [], preload: (win) => { win.CustomEvent = function CustomEvent() { throw new TypeError('Object doesn\'t support this action'); }; } });
      ie.viz.emit('viz:id', { bid: BID });
      assert.deepEqual(ie.events, [{ type: 'viz:id', detail: { bid: BID } }]);
    });

    test('a linker in the address bar is removed before anything reads the URL', () => {
      const p = page({ minified, modules: [], url: 'https://sport.example/x?a=1&_vz=abc.1.def.s&b=2#h' });
      assert.equal(p.win.location.href, 'https://sport.example/x?a=1&b=2#h');
      assert.equal(p.viz.lk, 'abc.1.def.s');
      assert.equal(p.beacons[0].url.searchParams.get('p'), '/x?a=1&b=2');
    });
  });
}

describe('recs.js (stub)', () => {
  test('dispatches viz:recs {items: []} once a bid/token and tier 2 are there', () => {
    const cfg = config({ features: { collect: true, cmp: true, recs: true } });
    const p = page({ cfg, modules: ['cmp', 'collect', 'recs'] });
    p.click(p.buttons().at(-1)); // Accept = tier 2 (no GPC)
    assert.deepEqual(p.events.filter((e) => e.type === 'viz:recs'), []);
    p.answerInit();
    assert.deepEqual(p.events.filter((e) => e.type === 'viz:recs').map((e) => e.detail), [{ items: [] }]);
    p.clock.tick(400_000);
    p.answerInit();
    assert.equal(p.events.filter((e) => e.type === 'viz:recs').length, 1, 'once');
  });

  test('tier 1 gets no recommendations', () => {
    const cfg = config({ features: { collect: true, cmp: true, recs: true } });
    const p = page({ cfg, modules: ['cmp', 'collect', 'recs'] });
    p.click(p.buttons()[1]); // Analytics only
    p.answerInit();
    assert.deepEqual(p.events.filter((e) => e.type === 'viz:recs'), []);
  });
});
