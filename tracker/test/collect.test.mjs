import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BID, TOKEN, TOKEN2, config, page } from './harness.mjs';

const consent = (p, tier) => p.viz.tier(tier); // what cmp.js does after a choice

function consented(opts = {}) {
  const p = page({ modules: ['collect'], cfg: config({ features: { collect: true, cmp: false } }), ...opts });
  consent(p, 1);
  p.answerInit();
  return p;
}

for (const minified of [false, true]) {
  describe(`collect.js (${minified ? 'minified' : 'source'})`, () => {
    test('a referrer on the same host is sent as a path (navigation within the site)', () => {
      const p = consented({ minified, referrer: 'https://www.news.example/front?page=2' });
      p.clock.tick(1000);
      const [view] = p.sent().filter((e) => e.t === 'pageview');
      assert.equal(view.r, '/front?page=2');
    });

    test('holds events until consent, then asks /init and sends them with the same ids', () => {
      const p = page({ modules: ['collect'], minified, storage: { viz_bid: BID } });
      p.viz.event('signup');
      p.clock.tick(5000);
      assert.equal(p.xhrs.length, 0, 'nothing leaves the page before consent');
      consent(p, 2);
      const [init] = p.pending('/init');
      assert.equal(init.method, 'GET');
      assert.equal(init.withCredentials, true);
      assert.equal(init.url.origin, 'https://c.news.example');
      assert.equal(init.url.searchParams.get('sid'), 'news-site');
      assert.equal(init.url.searchParams.get('tier'), '2');
      assert.equal(init.url.searchParams.get('bid'), BID, 'the localStorage copy is offered');
      p.answerInit();
      const [post] = p.pending('/collect');
      assert.equal(post.method, 'POST');
      assert.equal(post.url.searchParams.get('tier'), '2');
      assert.equal(post.headers['Content-Type'], 'text/plain;charset=UTF-8');
      assert.equal(post.withCredentials, true);
      const body = post.json;
      assert.deepEqual(Object.keys(body), ['sid', 'bid', 'token', 'events']);
      assert.equal(body.bid, BID);
      assert.equal(body.token, TOKEN);
      assert.deepEqual(body.events.map((e) => e.t), ['pageview', 'event']);
      assert.equal(body.events[0].p, '/article?id=1');
      assert.equal(body.events[0].r, 'https://www.google.com/');
      assert.equal(body.events[0].title, 'Hello');
      assert.equal(body.events[1].n, 'signup');
      p.answerCollect(204);
      p.clock.tick(5000);
      assert.equal(p.pending().length, 0);
      assert.equal(p.win.localStorage.getItem('viz_bid'), BID);
      assert.deepEqual(p.events.filter((e) => e.type === 'viz:id').map((e) => e.detail.bid), [BID]);
    });

    test('a decline drops the queue, stores nothing and keeps dropping', () => {
      const p = page({ modules: ['collect'], minified });
      p.viz.event('a');
      consent(p, 0);
      p.viz.event('b');
      p.clock.tick(60_000);
      p.setVisibility('hidden');
      assert.equal(p.xhrs.length, 0);
      assert.deepEqual(p.beacons.map((b) => b.url.pathname), ['/hit'], 'only the anonymous hit');
      assert.equal(p.win.localStorage.length, 0);
      consent(p, 1); // a later accept starts from nothing
      p.answerInit();
      p.viz.event('c');
      p.clock.tick(1000);
      assert.deepEqual(p.sent().map((e) => e.n ?? e.t), ['c']);
    });

    test('withdrawal stops sending and forgets the stored browser id', () => {
      const p = consented({ minified });
      p.answerCollect(204);
      assert.equal(p.win.localStorage.getItem('viz_bid'), BID);
      consent(p, 0);
      p.viz.event('after');
      p.clock.tick(10_000);
      assert.equal(p.pending('/collect').length, 0);
      assert.equal(p.win.localStorage.getItem('viz_bid'), null);
      assert.equal(p.viz.id, null);
    });

    test('401 token_expired: refresh via /init and resend the same events once', () => {
      const p = consented({ minified });
      const first = p.answerCollect(401, { error: { code: 'token_expired' } });
      assert.equal(p.pending('/init').length, 1);
      p.answerInit({ token: TOKEN2 });
      const again = p.pending('/collect')[0];
      assert.equal(again.json.token, TOKEN2);
      assert.deepEqual(again.json.events.map((e) => e.id), first.json.events.map((e) => e.id));
      // A second refusal right after a refresh drops them: no loop.
      again.respond(401, { error: { code: 'token_expired' } });
      p.clock.tick(60_000);
      assert.equal(p.pending().length, 0);
      // The queue went, the tracker did not: new events go out with a fresh token.
      p.viz.event('later');
      p.clock.tick(1000);
      assert.deepEqual(p.pending('/collect')[0].json.events.map((e) => e.n), ['later']);
    });

    test('the token is refreshed before exp while the page is visible', () => {
      const p = consented({ minified });
      p.answerCollect(204);
      assert.equal(p.pending('/init').length, 0);
      p.clock.tick(339_000); // exp is 400 s out: refresh 60 s ahead
      assert.equal(p.pending('/init').length, 0);
      p.clock.tick(2_000);
      assert.equal(p.pending('/init').length, 1);
      p.answerInit({ token: TOKEN2 });
      p.viz.event('x');
      p.clock.tick(1000);
      assert.equal(p.pending('/collect')[0].json.token, TOKEN2);
    });

    test('a stale token is refreshed before sending, and a hidden page does not keep refreshing', () => {
      const p = consented({ minified });
      p.answerCollect(204);
      p.setVisibility('hidden');
      p.clock.tick(600_000);
      assert.equal(p.pending('/init').length, 0, 'no refresh while hidden');
      p.setVisibility('visible');
      assert.equal(p.pending('/init').length, 1, 'coming back refreshes a stale token');
    });

    test('503 + Retry-After and network errors retry with backoff, keeping event ids', () => {
      const p = consented({ minified });
      const first = p.answerCollect(503, { error: { code: 'queue_full' } }, { 'Retry-After': '7' });
      p.clock.tick(6_900);
      assert.equal(p.pending('/collect').length, 0, 'Retry-After is respected');
      p.clock.tick(200);
      const second = p.pending('/collect')[0];
      assert.deepEqual(second.json.events.map((e) => e.id), first.json.events.map((e) => e.id));
      second.respond(0, ''); // network error
      p.clock.tick(4_000); // second attempt: 2 s * [0.5, 1)
      const third = p.pending('/collect')[0];
      assert.ok(third, 'retried after a network error');
      assert.deepEqual(third.json.events.map((e) => e.id), first.json.events.map((e) => e.id));
      third.respond(204);
      p.clock.tick(120_000);
      assert.equal(p.pending('/collect').length, 0, 'acknowledged events are not sent again');
    });

    test('backoff grows exponentially with jitter and is capped', () => {
      const p = consented({ minified });
      const gaps = [];
      let last = p.clock.now;
      for (let i = 0; i < 9; i++) {
        p.answerCollect(503, { error: { code: 'delivery_timeout' } });
        while (!p.pending('/collect').length) p.clock.tick(100);
        gaps.push(p.clock.now - last);
        last = p.clock.now;
      }
      for (let i = 0; i < gaps.length; i++) {
        const base = Math.min(60_000, 1000 * 2 ** i);
        assert.ok(gaps[i] >= base * 0.5 && gaps[i] <= base + 100, `attempt ${i}: ${gaps[i]} ms vs base ${base}`);
      }
    });

    test('4xx other than token errors is not retried; an invalid event is dropped alone', () => {
      const p = consented({ minified });
      p.answerCollect(204);
      p.viz.event('one');
      p.viz.event('two');
      p.viz.event('three');
      p.clock.tick(1000);
      const batch = p.pending('/collect')[0];
      assert.equal(batch.json.events.length, 3);
      batch.respond(400, { error: { code: 'invalid', path: '$.events[1].n', message: 'x' } });
      p.clock.tick(0);
      const rest = p.pending('/collect')[0];
      assert.deepEqual(rest.json.events.map((e) => e.n), ['one', 'three']);
      rest.respond(403, { error: { code: 'origin_not_allowed' } });
      p.clock.tick(120_000);
      assert.equal(p.pending().length, 0);
    });

    test('X-Viz-Dropped means do not retry: the tracker stops', () => {
      const p = consented({ minified });
      p.answerCollect(204, '', { 'X-Viz-Dropped': 'collect_disabled' });
      p.viz.event('x');
      p.clock.tick(60_000);
      assert.equal(p.pending().length, 0);
    });

    test('batches hold at most 50 events', () => {
      const p = consented({ minified });
      p.answerCollect(204);
      for (let i = 0; i < 120; i++) p.viz.event(`e${i}`);
      p.clock.tick(1000);
      const sizes = [];
      for (let x; (x = p.pending('/collect')[0]);) {
        sizes.push(x.json.events.length);
        x.respond(204);
        p.clock.tick(0);
      }
      assert.deepEqual(sizes, [50, 50, 20]);
    });

    test('SPA navigation: pushState/replaceState/popstate pageviews, deduplicated by path', () => {
      const p = consented({ minified });
      p.answerCollect(204);
      const h = p.win.history;
      h.pushState({}, '', '/two');
      h.pushState({}, '', '/two'); // same path: no second pageview
      h.replaceState({}, '', '/two#section'); // hash only: same path
      h.pushState({}, '', '/three?q=1');
      h.replaceState({}, '', '/three?q=1');
      h.pushState({}, '', '/two');
      h.replaceState({}, '', '/four');
      p.win.dispatchEvent(new p.win.PopStateEvent('popstate'));
      p.clock.tick(1000);
      const pvs = p.sent().filter((e) => e.t === 'pageview').map((e) => [e.p, e.r]);
      assert.deepEqual(pvs, [
        ['/article?id=1', 'https://www.google.com/'],
        // Navigation within the site: the referrer is the previous path (medium "internal").
        ['/two', '/article?id=1'],
        ['/three?q=1', '/two'],
        ['/two', '/three?q=1'],
        ['/four', '/two'],
      ]);
    });

    test('active time: visible + interacted in the last 30 s, flushed on hide by sendBeacon', () => {
      const p = consented({ minified });
      p.answerCollect(204);
      const move = () => p.doc.dispatchEvent(new p.win.MouseEvent('mousemove', { bubbles: true }));
      p.clock.tick(10_000);
      move(); // 10 s active since load
      p.clock.tick(100_000); // idle: only 30 s of it count
      move();
      p.clock.tick(5_000);
      p.setVisibility('hidden'); // + 5 s
      const [b] = p.beacons.filter((x) => x.url.pathname === '/collect');
      assert.ok(b, 'flushed with sendBeacon');
      assert.equal(b.url.searchParams.get('tier'), '1');
      const body = JSON.parse(b.body);
      assert.equal(body.token, TOKEN);
      const active = body.events.filter((e) => e.t === 'active');
      assert.deepEqual(active.map((e) => [e.p, e.ms]), [['/article?id=1', 45_000]]);
      // Hidden time does not count; coming back and leaving again flushes the new part only.
      p.clock.tick(50_000);
      p.setVisibility('visible');
      p.clock.tick(3_000);
      p.win.dispatchEvent(new p.win.Event('pagehide'));
      const all = p.sent().filter((e) => e.t === 'active').map((e) => e.ms);
      assert.deepEqual(all, [45_000, 3_000]);
    });

    test('active time of a page is flushed when the SPA moves on', () => {
      const p = consented({ minified });
      p.answerCollect(204);
      p.clock.tick(4_000);
      p.win.history.pushState({}, '', '/next');
      p.clock.tick(1000);
      const ev = p.sent().filter((e) => e.t !== 'pageview' || e.p === '/next');
      assert.deepEqual(ev.map((e) => [e.t, e.p, e.ms]), [['active', '/article?id=1', 4_000], ['pageview', '/next', undefined]]);
    });

    test('without sendBeacon the hide flush is a normal request', () => {
      const p = consented({ minified, beacon: false });
      p.answerCollect(204);
      p.clock.tick(2000);
      p.setVisibility('hidden');
      assert.equal(p.pending('/collect').length, 1);
    });

    test('exit links: a click on <a href> to another host is an exit event with h', () => {
      const p = consented({ minified });
      p.answerCollect(204);
      p.doc.body.innerHTML = '<a id="out" href="https://elsewhere.example/x?y=1"><span id="in">go</span></a>'
        + '<a id="same" href="/local">here</a><a id="mail" href="mailto:a@b.example">mail</a>';
      p.click(p.doc.getElementById('in'));
      p.click(p.doc.getElementById('same'));
      p.click(p.doc.getElementById('mail'));
      p.clock.tick(1000);
      const exits = p.sent().filter((e) => e.t === 'exit');
      assert.deepEqual(exits.map((e) => [e.p, e.h]), [['/article?id=1', 'https://elsewhere.example/x?y=1']]);
    });

    test('custom events: viz.event(name), queued before the bundle loads', () => {
      const p = page({
        minified,
        modules: [],
        cfg: config({ features: { collect: true, cmp: false } }),
      });
      p.viz.event('early');
      p.viz.consent(1);
      p.run('collect');
      p.viz.event('late');
      p.viz.event('');
      p.answerInit();
      assert.deepEqual(p.pending('/collect')[0].json.events.map((e) => e.n ?? e.t), ['pageview', 'early', 'late']);
      p.clock.tick(1000);
      assert.deepEqual(p.sent().filter((e) => e.t === 'event').map((e) => e.n), ['early', 'late']);
    });

    test('event ids are 32 hex characters, unique, and survive retries', () => {
      const p = consented({ minified });
      p.answerCollect(204);
      for (let i = 0; i < 40; i++) p.viz.event('e');
      p.clock.tick(1000);
      const ids = p.sent().map((e) => e.id);
      assert.equal(new Set(ids).size, ids.length);
      for (const id of ids) assert.match(id, /^[0-9a-f]{32}$/);
    });
  });
}

describe('cross-domain linker', () => {
  test('round trip: decorated on the source, stripped and adopted through /init on the destination', () => {
    const src = consented();
    src.answerCollect(204);
    src.doc.body.innerHTML = '<a id="sister" href="https://www.sport.example/live?x=1&_vz=old#top">sport</a>'
      + '<a id="foreign" href="https://other.example/">other</a>';
    const sister = src.doc.getElementById('sister');
    src.click(sister);
    src.click(src.doc.getElementById('foreign'));
    assert.equal(src.doc.getElementById('foreign').href, 'https://other.example/', 'only tenant domains');
    const url = new URL(sister.href);
    const link = url.searchParams.get('_vz');
    assert.match(link, /^[\w-]{22}\.\d+\.[0-9a-f]{64}\.news-site$/);
    assert.equal(url.searchParams.getAll('_vz').length, 1);
    assert.equal(url.searchParams.get('x'), '1');
    assert.equal(url.hash, '#top');
    const [bid, ts, token] = link.split('.');
    assert.equal(bid, BID);
    assert.equal(token, TOKEN);
    assert.equal(Number(ts), Math.floor(src.clock.now / 1000));
    src.clock.tick(1000);
    assert.deepEqual(src.sent().filter((e) => e.t === 'exit').map((e) => e.h),
      ['https://www.sport.example/live?x=1&_vz=old#top', 'https://other.example/'], 'exit h has no linker');

    // The destination, a few seconds later (same device clock).
    const dst = page({
      url: sister.href,
      referrer: 'https://www.news.example/article?id=1',
      modules: ['collect'],
      cfg: config({ sid: 'sport-site', features: { collect: true, cmp: false } }),
      storage: { viz_bid: 'ZZZZZZZZZZZZZZZZZZZZZZ' },
    });
    assert.equal(dst.win.location.href, 'https://www.sport.example/live?x=1#top', 'stripped from the address bar');
    const hit = dst.beacons.find((b) => b.url.pathname === '/hit');
    assert.equal(hit.url.searchParams.get('p'), '/live?x=1', 'the anonymous hit never sees it');
    dst.clock.tick(5000);
    assert.equal(dst.xhrs.length, 0, 'nothing is adopted before consent');
    consent(dst, 1);
    const init = dst.pending('/init')[0];
    assert.equal(init.url.searchParams.get('lk'), link, 'the whole linker goes to /init for collect to verify');
    assert.equal(init.url.searchParams.get('bid'), 'ZZZZZZZZZZZZZZZZZZZZZZ', 'the local copy, kept if collect refuses the linker');
    dst.answerInit();
    dst.clock.tick(1000);
    const pv = dst.sent().find((e) => e.t === 'pageview');
    assert.equal(pv.p, '/live?x=1');
    assert.equal(dst.win.localStorage.getItem('viz_bid'), BID, 'the BID collect answered is kept');
    dst.viz.init();
    assert.equal(dst.pending('/init')[0].url.searchParams.get('lk'), null, 'offered once: later refreshes carry no linker');
  });

  test('a linker is offered even without a local copy, and again when /init must be retried', () => {
    const link = `${BID}.${Math.floor(1_700_000_000_000 / 1000)}.${TOKEN}.news-site`;
    const dst = page({ url: `https://sport.example/?_vz=${link}`, modules: ['collect'] });
    consent(dst, 1);
    let [init] = dst.pending('/init');
    assert.equal(init.url.searchParams.get('bid'), null);
    assert.equal(init.url.searchParams.get('lk'), link);
    init.respond(503, '');
    dst.clock.tick(60000);
    [init] = dst.pending('/init');
    assert.equal(init.url.searchParams.get('lk'), link);
  });

  test('no decoration without consent, no adoption of stale or malformed linkers', () => {
    const src = page({ modules: ['collect'] });
    src.doc.body.innerHTML = '<a id="sister" href="https://sport.example/">sport</a>';
    src.click(src.doc.getElementById('sister'));
    assert.equal(src.doc.getElementById('sister').href, 'https://sport.example/');

    const stale = `${BID}.${Math.floor(1_700_000_000_000 / 1000) - 300}.${TOKEN}.news-site`;
    for (const link of [stale, `${BID}.x.${TOKEN}.news-site`, 'garbage']) {
      const dst = page({ url: `https://sport.example/?_vz=${link}`, modules: ['collect'] });
      assert.equal(dst.win.location.search, '');
      consent(dst, 1);
      assert.equal(dst.pending('/init')[0].url.searchParams.get('bid'), null, link);
      assert.equal(dst.pending('/init')[0].url.searchParams.get('lk'), null, link);
    }
  });

  test('a declined destination drops the linker', () => {
    const link = `${BID}.${Math.floor(1_700_000_000_000 / 1000)}.${TOKEN}.news-site`;
    const dst = page({ url: `https://sport.example/a?_vz=${link}&b=2`, modules: ['collect'] });
    assert.equal(dst.win.location.search, '?b=2');
    consent(dst, 0);
    consent(dst, 1);
    assert.equal(dst.pending('/init')[0].url.searchParams.get('bid'), null);
    assert.equal(dst.pending('/init')[0].url.searchParams.get('lk'), null);
  });
});
