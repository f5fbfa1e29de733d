/* collect.js: analytics, ES5 syntax for IE11+. Builds pageview (initial + SPA history), active
 * (visible and interacted with in the last 30 s), exit (link to another host) and custom events,
 * holds them in memory until the visitor's consent tier is known, drops them on tier 0, and sends
 * them to viz-collect with a BID + token from GET /init. Event ids are random and kept across
 * retries: a 204 means durable, anything else keeps or drops the events as viz/collect/openapi.yaml
 * says. Also decorates links to the tenant's other domains with a linker (?_vz=) and, on arrival,
 * hands it to /init as lk= (collect verifies it before adopting its BID; see README).
 */
(function (w, d) {
  var viz = w.viz, cfg = viz.cfg, url = cfg.urls.collect, loc = w.location, nav = w.navigator, hist = w.history,
    cr = w.crypto || w.msCrypto,
    IDLE_MS = 30000, MAX_QUEUE = 500, MAX_BATCH = 50, MAX_BATCH_BYTES = 60000, LINK_AGE_MS = 120000,
    tier = null, // null: not known yet (hold events), 0: declined (drop), 1 or 2
    id = null, // {bid, tid, token, exp, until}: until = client ms at which to refresh
    q = [], // events not yet acknowledged, oldest first
    busy = 0, initing = 0, auth = 0, retry = 0, timer = 0, refresh = 0,
    linked = null, // a fresh linker (the raw _vz value), until /init answered
    cur = null, prev = null,
    li = 0, covered = 0, acc = 0, // active time: last interaction, counted up to, counted ms
    m = /^([\w-]{22})\.(\d+)\.[0-9a-f]{64}\.[\w-]{3,64}$/.exec(viz.lk || '');

  // A linker from another domain of the tenant, a couple of minutes old at most (same device clock).
  if (m && Math.abs(Date.now() - m[2] * 1000) < LINK_AGE_MS) linked = viz.lk;

  function now() {
    return Date.now();
  }

  // An event id: 128 random bits as 32 hex characters (the server wants [A-Za-z0-9_-]{8,64}).
  function rid() {
    var a = new Uint8Array(16), s = '', i;
    try {
      cr.getRandomValues(a);
    } catch (e) {
      for (i = 0; i < 16; i++) a[i] = Math.random() * 256;
    }
    for (i = 0; i < 16; i++) s += (a[i] + 256).toString(16).slice(1);
    return s;
  }

  // Text the server accepts: no C0 controls, no lone surrogates, at most max code points.
  function txt(s, max) {
    return s == null ? '' : String(s)
      .replace(/[\x00-\x1f]|[\ud800-\udbff](?![\udc00-\udfff])|([^\ud800-\udbff]|^)[\udc00-\udfff]/g, '$1')
      .slice(0, max).replace(/[\ud800-\udbff]$/, '');
  }

  function path() {
    var p = txt(loc.pathname + loc.search, 2048);
    return p.charAt(0) == '/' ? p : txt('/' + p, 2048);
  }

  function push(t, x, p) {
    var e = { id: rid(), t: t, p: p || cur || path(), ts: now() }, k;
    if (tier === 0 || q.length >= MAX_QUEUE) return; // declined, or bounded memory
    for (k in x) if (x[k] !== '' && x[k] != null) e[k] = x[k];
    q.push(e);
    later(1000);
  }

  function later(ms) {
    if (!timer && tier) timer = setTimeout(flush, ms);
  }

  function wait(r) {
    var after = +(r && r.getResponseHeader('Retry-After')) * 1000 || 0;
    return Math.max(after, Math.min(60000, 1000 * Math.pow(2, retry++)) * (0.5 + Math.random() / 2));
  }

  function retryable(s) {
    return !s || s == 429 || s >= 500;
  }

  function drop(b) {
    q = q.filter(function (e) { return b.indexOf(e) < 0; });
  }

  // The oldest events that fit one request: at most 50 and under the 64 KiB body limit.
  function take() {
    for (var b = [], size = 300, i = 0; i < q.length && i < MAX_BATCH; i++) {
      size += unescape(encodeURIComponent(JSON.stringify(q[i]))).length + 1;
      if (size > MAX_BATCH_BYTES && i) break;
      b.push(q[i]);
    }
    return b;
  }

  function body(b) {
    return JSON.stringify({ sid: cfg.sid, bid: id.bid, token: id.token, events: b });
  }

  function off() {
    tier = 0;
    q = [];
    id = viz.id = linked = null;
    clearTimeout(timer);
    clearTimeout(refresh);
    timer = 0;
  }

  function init() {
    var bid = viz.ls('viz_bid') || '';
    if (initing || !tier) return;
    initing = 1;
    viz.x('GET', url + '/init?sid=' + cfg.sid + '&tier=' + tier +
      (/^[\w-]{22}$/.test(bid) ? '&bid=' + bid : '') + (linked ? '&lk=' + linked : ''), 0, function (s, text, r) {
      var j, life, t = now();
      initing = 0;
      if (!tier) return; // declined meanwhile
      try {
        j = JSON.parse(text);
      } catch (e) {}
      if (s == 200 && j && j.bid && j.token) {
        // exp is server time; a client clock far off makes it meaningless, then assume 5 min.
        life = j.exp * 1000 - t;
        if (!(life > 120000 && life < 900000)) life = 300000;
        id = viz.id = j; // {bid, tid, token, exp} + until
        j.until = t + life - 60000;
        linked = null;
        viz.ls('viz_bid', j.bid);
        retry = 0;
        clearTimeout(refresh);
        // Refresh ahead while the page is shown, so a flush on hide has a valid token.
        refresh = setTimeout(function () {
          if (d.visibilityState != 'hidden') init();
        }, life - 60000);
        viz.emit('viz:id', id);
        flush();
      } else if (retryable(s)) {
        setTimeout(init, wait(r));
      } else {
        off(); // 204 X-Viz-Dropped (bot, collect disabled) or a refusal: nothing would be kept
      }
    });
  }

  function flush() {
    var b;
    clearTimeout(timer);
    timer = 0;
    if (busy || !tier || !id || !q.length) return;
    if (now() >= id.until) return init(); // init() flushes once the new token is there
    b = take();
    busy = 1;
    viz.x('POST', url + '/collect?tier=' + tier, body(b), function (s, text, r) {
      var err = {}, i;
      busy = 0;
      if (!tier) return;
      try {
        err = JSON.parse(text).error || {};
      } catch (e) {}
      if (s == 204) {
        retry = auth = 0;
        if (r.getResponseHeader('X-Viz-Dropped')) return off(); // deliberate: never retry
        drop(b);
        return later(0);
      }
      if (s == 401 && err.code == 'token_expired' || s == 403 && err.code == 'token_invalid') {
        // Refresh via /init once and resend the same events; a second refusal drops them.
        if (auth++) {
          auth = 0;
          q = [];
          return;
        }
        id.until = 0;
        return flush();
      }
      if (retryable(s)) {
        timer = setTimeout(flush, wait(r));
        return;
      }
      // Any other 4xx would be refused again. An invalid event is removed alone, so it does
      // not take the valid ones of its batch with it.
      i = /^\$\.events\[(\d+)\]/.exec(err.path || '');
      drop(s == 400 && i && b.length > 1 ? [b[+i[1]]] : b);
      later(0);
    });
  }

  // Page hide/unload: what is left goes out by sendBeacon (text/plain: no preflight). Its answer
  // cannot be read, so these events are not retried; ids make a repeat harmless downstream.
  // Without sendBeacon (IE11) a normal flush is the best there is.
  function beacon() {
    var u = url + '/collect?tier=' + tier, b;
    if (!viz.cap.beacon) return flush();
    while (tier && id && q.length && nav.sendBeacon(u, body(b = take()))) drop(b);
  }

  // Active time: an instant counts when the page is visible and the visitor interacted within
  // IDLE_MS before it. settle() adds what has elapsed since the last count.
  function settle(t) {
    var end = Math.min(t, li + IDLE_MS);
    if (li && end > covered) {
      acc += end - covered;
      covered = end;
    }
  }

  function touch() {
    var t = now();
    if (d.visibilityState == 'hidden' || t - li < 1000) return;
    settle(t);
    li = t;
    if (covered < t) covered = t;
  }

  function active() {
    settle(now());
    if (acc > 0 && cur) push('active', { ms: Math.min(Math.round(acc), 86400000) }, cur);
    acc = 0;
  }

  function hide() {
    active();
    li = 0;
    beacon();
  }

  function page() {
    var p = path();
    if (p === cur) return; // the same page again (replaceState of the query-less part, re-push)
    active();
    push('pageview', { r: txt(viz.ref(cur === null ? d.referrer : prev), 2048), title: txt(d.title, 512) }, p);
    cur = p;
    prev = loc.href;
  }

  function hook(name) {
    var orig = hist[name];
    if (orig) hist[name] = function () {
      var res = orig.apply(this, arguments);
      page();
      return res;
    };
  }

  function ours(host) {
    for (var l = cfg.tenant_domains || [], i = 0; i < l.length; i++) {
      if (host == l[i] || host.slice(-l[i].length - 1) == '.' + l[i]) return 1;
    }
  }

  function click(e) {
    var a = e.target, s;
    while (a && !(a.tagName == 'A' && a.href)) a = a.parentNode;
    if (!a || !/^https?:$/.test(a.protocol) || a.hostname == loc.hostname) return;
    push('exit', { h: txt(a.href, 2048) });
    if (tier && id && ours(a.hostname)) {
      // Linker: bid.ts.token.sid, read by collect.js on the other domain (only with its consent).
      s = a.search.replace(/[?&]_vz=[^&]*/g, '').replace(/^&/, '?');
      a.search = (s ? s + '&' : '?') + '_vz=' + id.bid + '.' + Math.floor(now() / 1000) + '.' + id.token + '.' + cfg.sid;
    }
  }

  function consent(x) {
    var t = x && +x.tier;
    if (t !== 0 && t !== 1 && t !== 2 || t === tier) return;
    if (!t) {
      off();
      viz.ls('viz_bid', null); // withdrawal: the browser id goes too
      return;
    }
    tier = t;
    if (id) flush();
    else init();
  }

  function on(el, types, fn) {
    for (var i = 0; i < types.length; i++) el.addEventListener(types[i], fn, true);
  }

  hook('pushState');
  hook('replaceState');
  on(w, ['popstate'], page);
  on(d, ['mousemove', 'keydown', 'scroll', 'touchstart'], touch);
  on(d, ['click'], click);
  on(d, ['visibilitychange'], function () {
    if (d.visibilityState == 'hidden') return hide();
    touch();
    if (id && now() >= id.until) init();
  });
  on(w, ['pagehide'], hide);
  page();
  touch();
  viz.def('event', function (n) {
    n = txt(n, 128);
    if (n) push('event', { n: n });
  });
  viz.init = init; // cmp.js asks for a fresh token when viz-cmp says the one it sent expired
  viz.on('viz:consent', consent);
  if (viz.t !== null) consent({ tier: viz.t });
})(window, document);
