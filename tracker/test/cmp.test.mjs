import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BID, TOKEN, TOKEN2, config, page } from './harness.mjs';

const XSS = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>';
const tiersOf = (p) => p.events.filter((e) => e.type === 'viz:consent').map((e) => e.detail.tier);
const consentPosts = (p) => p.xhrs.filter((x) => x.url.pathname === '/cmp/consent');

for (const minified of [false, true]) {
  describe(`cmp.js (${minified ? 'minified' : 'source'})`, () => {
    test('no stored choice: the banner opens, focus moves to its first button', () => {
      const p = page({ minified });
      const box = p.banner();
      assert.ok(box, 'banner shown');
      assert.equal(box.getAttribute('role'), 'dialog');
      assert.equal(p.doc.getElementById(box.getAttribute('aria-labelledby')).textContent, 'Privacy');
      assert.ok(p.doc.getElementById(box.getAttribute('aria-describedby')).textContent.length > 10);
      const buttons = p.buttons();
      // recs is off: tier 1 is all there is, so Accept grants it and needs no separate button.
      assert.deepEqual(buttons.map((b) => b.textContent), ['Decline', 'Accept']);
      for (const b of buttons) assert.equal(b.type, 'button');
      assert.equal(p.doc.activeElement, buttons[0]);
      assert.match(box.querySelector('style').textContent, /button:focus\{outline:3px solid/);
      assert.deepEqual(tiersOf(p), [], 'nothing decided yet');
      assert.equal(p.viz.t, null);
    });

    test('admin texts are rendered inert: an XSS payload stays literal text', () => {
      const cmp_config = {
        title: XSS,
        text: `${XSS} & more`,
        tiers: [{ tier: 1, label: XSS, description: XSS }, { tier: 2, label: 'Two', description: XSS }],
        accept_label: XSS,
        decline_label: '<b>no</b>',
        gpc_text: XSS,
      };
      const p = page({ minified, gpc: true, cfg: config({ cmp_config, features: { collect: true, cmp: true, recs: true } }) });
      const box = p.banner();
      assert.equal(box.querySelectorAll('img, script, b').length, 0, 'no element from admin text');
      assert.equal(box.querySelector('strong').textContent, XSS);
      assert.ok(box.textContent.includes(`${XSS} & more`));
      assert.deepEqual(p.buttons().map((b) => b.textContent), ['<b>no</b>', 'Two', XSS]);
      assert.equal(p.win.pwned, undefined);
      assert.ok(!p.doc.documentElement.outerHTML.includes('<img src="x"'));
    });

    test('accept: stored locally and in a first-party cookie, POSTed with the bid and its token, viz:consent fired', () => {
      const p = page({ minified });
      p.click(p.buttons().at(-1)); // Accept: tier 1 (recs is off, so tier 1 is the top)
      assert.equal(p.banner(), null, 'banner closed');
      assert.deepEqual(tiersOf(p), [1]);
      const stored = JSON.parse(p.win.localStorage.getItem('viz_consent'));
      assert.equal(stored.tier, 1);
      assert.match(stored.v, /^h[0-9a-z]+$/, 'the banner version is a hash of its texts');
      assert.match(p.doc.cookie, new RegExp(`viz_consent=1\\.${stored.v}`));
      assert.equal(consentPosts(p).length, 0, 'the record waits for the browser id');
      p.answerInit();
      const [post] = consentPosts(p);
      assert.equal(post.method, 'POST');
      assert.equal(post.withCredentials, true);
      assert.equal(post.url.href, 'https://cmp.news.example/cmp/consent');
      // The token /init gave with the bid: viz-cmp records a bid only with collect's proof.
      assert.deepEqual(post.json, { sid: 'news-site', tier: 1, banner_version: stored.v, explicit: true, bid: BID, token: TOKEN });
    });

    test('the consent record goes without a bid when /init does not answer within 5 s', () => {
      const p = page({ minified });
      p.click(p.buttons().at(-1));
      p.clock.tick(5000);
      assert.deepEqual(consentPosts(p).map((x) => x.json.bid), [undefined]);
      p.answerInit();
      assert.equal(consentPosts(p).length, 1, 'posted once');
    });

    test('a consent still waiting for the id is never sent after a later decline', () => {
      const p = page({ minified });
      p.click(p.buttons().at(-1)); // accept: waits for /init
      p.viz.consent(0); // changed their mind before collect answered
      p.clock.tick(5000);
      p.answerInit();
      assert.deepEqual(consentPosts(p).map((x) => x.json.tier), [0], 'only the decline is recorded');
      assert.deepEqual(tiersOf(p), [1, 0]);
    });

    test('decline: tier 0 at once, nothing collected, no banner on the next page', () => {
      const p = page({ minified });
      p.click(p.buttons()[0]);
      assert.deepEqual(tiersOf(p), [0]);
      assert.deepEqual(consentPosts(p).map((x) => [x.json.tier, x.json.bid]), [[0, undefined]]);
      assert.equal(p.pending('/init').length, 0);
      const next = page({ minified, storage: { viz_consent: p.win.localStorage.getItem('viz_consent') } });
      assert.equal(next.banner(), null);
      assert.deepEqual(tiersOf(next), [0]);
      assert.equal(next.xhrs.length, 0);
    });

    test('keyboard: Tab order is the buttons, Enter/Space are native, Escape declines', () => {
      const p = page({ minified });
      const [decline, accept] = p.buttons();
      // Real buttons in DOM order: reachable with Tab, activated by Enter/Space natively.
      for (const b of [decline, accept]) assert.equal(b.tabIndex, 0);
      accept.focus();
      p.key(accept, 'Escape', 27);
      assert.equal(p.banner(), null);
      assert.deepEqual(tiersOf(p), [0]);
      const stored = JSON.parse(p.win.localStorage.getItem('viz_consent'));
      assert.equal(stored.tier, 0);
      assert.equal(consentPosts(p)[0].json.explicit, false, 'Escape is not an explicit choice');
      assert.ok(decline instanceof p.win.HTMLButtonElement);
    });

    test('focus returns to where it was when the banner closes', () => {
      const p = page({ minified, modules: [] });
      p.doc.body.insertAdjacentHTML('beforeend', '<button id="page-btn">x</button>');
      const mine = p.doc.getElementById('page-btn');
      mine.focus();
      p.run('cmp');
      assert.notEqual(p.doc.activeElement, mine);
      p.click(p.buttons()[0]);
      assert.equal(p.doc.activeElement, mine);
    });

    test('a stored choice is read from localStorage, else from the cookie', () => {
      const first = page({ minified });
      first.click(first.buttons().at(-1));
      const v = JSON.parse(first.win.localStorage.getItem('viz_consent')).v;
      const fromCookie = page({ minified, cookie: `viz_consent=1.${v}` });
      assert.equal(fromCookie.banner(), null);
      assert.deepEqual(tiersOf(fromCookie), [1]);
      assert.equal(fromCookie.pending('/init').length, 1, 'collect starts right away');
    });

    test('new banner texts (another version) ask again; a choice older than 13 months too', () => {
      const first = page({ minified });
      first.click(first.buttons().at(-1));
      const stored = first.win.localStorage.getItem('viz_consent');
      const changed = page({ minified, storage: { viz_consent: stored }, cfg: config({ cmp_config: { text: 'New text' } }) });
      assert.ok(changed.banner());
      const old = JSON.stringify({ ...JSON.parse(stored), ts: first.clock.now - 400 * 864e5 });
      assert.ok(page({ minified, storage: { viz_consent: old } }).banner());
      const pinned = page({ minified, cfg: config({ cmp_config: { version: 3 } }) });
      pinned.click(pinned.buttons()[0]);
      assert.equal(JSON.parse(pinned.win.localStorage.getItem('viz_consent')).v, '3');
    });

    test('viz.consent() reopens the banner; withdrawal is as easy and sends the bid and its token', () => {
      const p = page({ minified });
      p.click(p.buttons().at(-1));
      p.answerInit();
      p.answerCollect(204);
      p.viz.consent();
      assert.ok(p.banner(), 'reopened');
      p.click(p.buttons()[0]);
      assert.deepEqual(tiersOf(p), [1, 0]);
      assert.deepEqual(consentPosts(p).map((x) => [x.json.tier, x.json.bid, x.json.token]), [[1, BID, TOKEN], [0, BID, TOKEN]]);
      assert.equal(p.win.localStorage.getItem('viz_bid'), null, 'collect forgot the id');
    });

    test('401 token_expired from viz-cmp: a fresh token from /init, the same decision again, once', () => {
      const p = page({ minified });
      p.click(p.buttons().at(-1));
      p.answerInit();
      const [first] = consentPosts(p);
      assert.equal(p.pending('/init').length, 0);
      first.respond(401, { error: { code: 'token_expired', message: 'get a fresh one' } });
      assert.equal(p.pending('/init').length, 1, 'collect asks for a fresh token');
      assert.equal(consentPosts(p).length, 1, 'nothing resent before it is there');
      p.answerInit({ token: TOKEN2 });
      const [, again] = consentPosts(p);
      assert.deepEqual(again.json, { ...first.json, token: TOKEN2 });
      assert.equal(p.viz.id.token, TOKEN2, 'collect uses the fresh token too');
      again.respond(401, { error: { code: 'token_expired' } });
      p.clock.tick(10000);
      assert.equal(consentPosts(p).length, 2, 'a second refusal is final');
      assert.equal(p.pending('/init').length, 0);
    });

    test('403 token_invalid from viz-cmp is final: no refresh, no resend', () => {
      const p = page({ minified });
      p.click(p.buttons().at(-1));
      p.answerInit();
      consentPosts(p)[0].respond(403, { error: { code: 'token_invalid' } });
      p.clock.tick(10000);
      assert.equal(consentPosts(p).length, 1);
      assert.equal(p.pending('/init').length, 0);
    });

    test('a stored bid alone is never sent: a consent waits for /init, a decline goes without a bid', () => {
      // New banner texts: the visitor is asked again and collect has no token yet.
      const storage = { viz_bid: BID, viz_consent: JSON.stringify({ tier: 1, v: 'old', ts: 1 }) };
      const p = page({ minified, storage });
      p.click(p.buttons().at(-1));
      assert.equal(consentPosts(p).length, 0, 'waits for the token');
      assert.equal(p.pending('/init')[0].url.searchParams.get('bid'), BID, 'collect keeps the browser id');
      p.answerInit({ token: TOKEN2 });
      assert.deepEqual(consentPosts(p).map((x) => [x.json.bid, x.json.token]), [[BID, TOKEN2]]);

      const q = page({ minified, storage });
      q.click(q.buttons()[0]);
      assert.deepEqual(consentPosts(q).map((x) => [x.json.tier, 'bid' in x.json, 'token' in x.json]), [[0, false, false]]);
    });

    test('a withdrawal whose token expired is recorded without a bid (collect gives no token at tier 0)', () => {
      const p = page({ minified });
      p.click(p.buttons().at(-1));
      p.answerInit();
      consentPosts(p)[0].respond(200, {});
      p.viz.consent(0);
      const [, withdrawal] = consentPosts(p);
      assert.deepEqual([withdrawal.json.tier, withdrawal.json.bid, withdrawal.json.token], [0, BID, TOKEN]);
      withdrawal.respond(401, { error: { code: 'token_expired' } });
      assert.equal(p.pending('/init').length, 0, 'no id is asked for after a decline');
      const [, , again] = consentPosts(p);
      assert.deepEqual(again.json, { sid: 'news-site', tier: 0, banner_version: withdrawal.json.banner_version, explicit: true });
    });

    test('viz.consent(tier) records a choice made in the site UI; calls queue until the bundle', () => {
      const p = page({ minified, modules: [] });
      p.viz.consent(1);
      assert.equal(p.viz.t, null, 'queued: the banner module decides');
      p.run('cmp');
      assert.equal(p.banner(), null);
      assert.deepEqual(tiersOf(p), [1]);
    });

    test('Global Privacy Control: accept grants tier 1, says so, and tier 2 stays one explicit click', () => {
      const cfg = config({ features: { collect: true, cmp: true, recs: true } });
      const p = page({ minified, gpc: true, cfg });
      assert.deepEqual(p.buttons().map((b) => b.textContent), ['Decline', 'Analytics + recommendations', 'Accept']);
      assert.match(p.banner().textContent, /Global Privacy Control/);
      p.click(p.buttons().at(-1));
      assert.deepEqual(tiersOf(p), [1]);

      const q = page({ minified, gpc: true, cfg });
      q.click(q.buttons()[1]);
      assert.deepEqual(tiersOf(q), [2], 'explicitly chosen');

      const r = page({ minified, cfg });
      assert.deepEqual(r.buttons().map((b) => b.textContent), ['Decline', 'Analytics', 'Accept']);
      assert.doesNotMatch(r.banner().textContent, /Global Privacy Control/);
      r.click(r.buttons().at(-1));
      assert.deepEqual(tiersOf(r), [2], 'without GPC accept is the top tier');
    });

    test('tiers the site cannot honour are not offered; bad tier config falls back to defaults', () => {
      const p = page({ minified, cfg: config({ cmp_config: { tiers: [{ tier: 2, label: 'Recs' }, { tier: 7 }, 'x', null] } }) });
      assert.deepEqual(p.buttons().map((b) => b.textContent), ['Decline', 'Accept']);
      assert.match(p.banner().textContent, /Analytics/);
      const q = page({ minified, cfg: config({ cmp_config: { tiers: [1, 1, 2] }, features: { collect: true, cmp: true, recs: true } }) });
      assert.equal(q.banner().querySelectorAll('li').length, 2);
    });

    test('without features.cmp the site CMP decides through viz.consent(tier)', () => {
      const p = page({ minified, modules: ['collect'], cfg: config({ features: { collect: true, cmp: false } }) });
      assert.equal(p.banner(), null);
      p.viz.consent(2);
      assert.deepEqual(tiersOf(p), [2]);
      assert.equal(p.pending('/init')[0].url.searchParams.get('tier'), '2');
      assert.equal(p.win.localStorage.getItem('viz_consent'), null, 'storing it is the site CMP\'s job');
    });
  });
}
