// A page in jsdom with the tracker loaded the way viz-config serves it: window.__VIZ_CFG, then
// viz.js (the config script), then the bundle modules. XHR, sendBeacon, timers and Date.now are
// fakes the test drives; nothing touches the network.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { JSDOM, VirtualConsole } from 'jsdom';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const NOW = 1_700_000_000_000;
export const BID = 'AbCdEfGhIjKlMnOpQrSt_-';
export const TOKEN = '0123456789abcdef'.repeat(4);
export const TOKEN2 = 'fedcba9876543210'.repeat(4);

export function source(name, { minified = false } = {}) {
  return readFileSync(join(ROOT, minified ? `dist/${name}.min.js` : `src/${name}.js`), 'utf8');
}

export function config(over = {}) {
  return {
    sid: 'news-site',
    tid: 'tenant-7',
    version: '7.abc',
    urls: {
      collect: 'https://c.news.example',
      config: 'https://cfg.news.example',
      cmp: 'https://cmp.news.example',
      recs: 'https://recs.news.example',
    },
    features: { collect: true, cmp: true, recs: false },
    cmp_config: {},
    recs_config: {},
    tenant_domains: ['news.example', 'sport.example'],
    bundle: { legacy: 'https://cfg.news.example/b/7.abc/news-site.js?legacy', modern: 'https://cfg.news.example/b/7.abc/news-site.js' },
    ...over,
  };
}

/** A deterministic clock: setTimeout/clearTimeout/Date.now, advanced only by tick(). */
export class Clock {
  constructor(now = NOW) {
    this.now = now;
    this.timers = [];
    this.seq = 0;
  }

  setTimeout(fn, ms) {
    const id = ++this.seq;
    this.timers.push({ id, at: this.now + Math.max(0, Number(ms) || 0), fn });
    return id;
  }

  clearTimeout(id) {
    this.timers = this.timers.filter((t) => t.id !== id);
  }

  tick(ms = 0) {
    const end = this.now + ms;
    for (;;) {
      const due = this.timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.timers = this.timers.filter((t) => t !== due);
      this.now = Math.max(this.now, due.at);
      due.fn();
    }
    this.now = end;
  }
}

function fakeXHR(log) {
  return class FakeXHR {
    constructor() {
      this.readyState = 0;
      this.withCredentials = false;
      this.timeout = 0;
      this.headers = {};
      this.responseHeaders = {};
    }

    open(method, url) {
      this.method = method;
      this.url = new URL(url);
    }

    setRequestHeader(k, v) {
      this.headers[k] = v;
    }

    send(body) {
      this.body = body;
      this.answered = false;
      log.push(this);
    }

    get json() {
      return JSON.parse(this.body);
    }

    respond(status, body = '', headers = {}) {
      this.answered = true;
      this.status = status;
      this.responseText = typeof body === 'string' ? body : JSON.stringify(body);
      this.responseHeaders = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), String(v)]));
      this.readyState = 4;
      if (this.onreadystatechange) this.onreadystatechange();
    }

    getResponseHeader(k) {
      return this.responseHeaders[k.toLowerCase()] ?? null;
    }
  };
}

/**
 * Open a page. `modules` are the bundle modules to run after viz.js (as the bundle would);
 * `storage` seeds localStorage, `cookie` document.cookie.
 */
export function page({
  url = 'https://www.news.example/article?id=1',
  referrer = 'https://www.google.com/',
  cfg = config(),
  modules = ['cmp', 'collect'],
  minified = false,
  beacon = true,
  gpc = false,
  storage = {},
  cookie = '',
  html = '<!doctype html><html><head><script></script><title>Hello</title></head><body><p id="x">text</p></body></html>',
  preload = null,
} = {}) {
  // jsdom reports exceptions thrown in event listeners here: they fail the run. Link clicks
  // also report that jsdom does not navigate, which is expected.
  const virtualConsole = new VirtualConsole();
  virtualConsole.on('jsdomError', (e) => {
    if (/Not implemented: navigation/.test(e.message)) return;
    console.error(e);
    process.exitCode = 1;
  });
  const dom = new JSDOM(html, { url, referrer, runScripts: 'outside-only', virtualConsole });
  const win = dom.window;
  const doc = win.document;
  const clock = new Clock();
  const xhrs = [];
  const beacons = [];
  const events = [];
  let visibility = 'visible';
  win.setTimeout = (fn, ms) => clock.setTimeout(fn, ms);
  win.clearTimeout = (id) => clock.clearTimeout(id);
  win.Date.now = () => clock.now;
  win.XMLHttpRequest = fakeXHR(xhrs);
  if (beacon) {
    Object.defineProperty(win.navigator, 'sendBeacon', {
      configurable: true,
      value: (u, b) => {
        beacons.push({ url: new URL(u), body: b });
        return true;
      },
    });
  }
  if (gpc) Object.defineProperty(win.navigator, 'globalPrivacyControl', { configurable: true, value: true });
  Object.defineProperty(doc, 'visibilityState', { configurable: true, get: () => visibility });
  win.localStorage.clear(); // jsdom shares storage between pages of one origin
  for (const [k, v] of Object.entries(storage)) win.localStorage.setItem(k, v);
  if (cookie) doc.cookie = cookie;
  for (const type of ['viz:consent', 'viz:id', 'viz:recs']) {
    // Cloned into this realm so deepEqual compares values, not jsdom's prototypes.
    win.addEventListener(type, (e) => events.push({ type, detail: JSON.parse(JSON.stringify(e.detail)) }));
  }
  win.__VIZ_CFG = cfg;
  if (preload) preload(win);
  win.eval(source('viz', { minified }));
  for (const m of modules) win.eval(source(m, { minified }));

  const p = {
    dom, win, doc, clock, xhrs, beacons, events,
    viz: win.viz,
    run: (name) => win.eval(source(name, { minified })),
    /** Requests still waiting for an answer, optionally only those whose path is `path`. */
    pending: (path) => xhrs.filter((x) => !x.answered && (!path || x.url.pathname === path)),
    setVisibility(state) {
      visibility = state;
      doc.dispatchEvent(new win.Event('visibilitychange'));
    },
    /** Answer the pending /init like viz-collect does. */
    answerInit({ bid = BID, token = TOKEN, lifeS = 400 } = {}) {
      const [x] = p.pending('/init');
      if (!x) throw new Error('no /init pending');
      x.respond(200, { bid, tid: 'tenant-7', token, exp: Math.floor(clock.now / 1000) + lifeS });
      return x;
    },
    /** Answer the pending POST /collect; returns the request. */
    answerCollect(status = 204, body = '', headers = {}) {
      const [x] = p.pending('/collect');
      if (!x) throw new Error('no /collect pending');
      x.respond(status, body, headers);
      return x;
    },
    banner: () => doc.getElementById('viz-cmp'),
    buttons: () => [...(doc.getElementById('viz-cmp')?.querySelectorAll('button') ?? [])],
    click(el) {
      el.dispatchEvent(new win.MouseEvent('click', { bubbles: true, cancelable: true }));
    },
    key(el, key, keyCode) {
      el.dispatchEvent(new win.KeyboardEvent('keydown', { key, keyCode, bubbles: true, cancelable: true }));
    },
    /** Sent events, in order, from XHR bodies and beacons. */
    sent() {
      const out = [];
      for (const x of xhrs) if (x.url.pathname === '/collect') out.push(...x.json.events);
      for (const b of beacons) if (b.url.pathname === '/collect') out.push(...JSON.parse(b.body).events);
      return out;
    },
  };
  return p;
}
