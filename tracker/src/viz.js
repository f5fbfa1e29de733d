/* viz.js: the boot code, ES5 syntax for IE8+. It runs inside the config script right after
 * `window.__VIZ_CFG = {...};` and does three things: build the `cap` flags, fire the anonymous
 * hit pixel, and load the domain bundle (cmp + collect [+ recs]). It also defines `window.viz`,
 * the tiny runtime the bundle modules share (queue, events, storage, XHR).
 *
 * window.__VIZ_CFG (written by viz-config; public values only, never the site secret):
 *   sid            "news-site"               site id, [A-Za-z0-9_-]{3,64}
 *   tid            "tenant-7"                tenant id
 *   version        "42.1a2b3c4d"             config + tracker build version (bundle URL part)
 *   urls           {collect, config, cmp, recs}  service origins (+ optional path prefix), no
 *                                            trailing slash: "https://c.news.example"
 *   features       {collect, cmp, recs}      booleans; a missing flag means off
 *   cmp_config     {title, text, tiers: [{tier, label, description}], accept_label,
 *                   decline_label, gpc_text, version}   banner texts (plain text, never HTML);
 *                                            every field optional, see cmp.js for defaults
 *   recs_config    {...}                     opaque to the tracker for now (recs.js is a stub)
 *   tenant_domains ["news-a.example", ...]   hosts of the tenant's sites for link decoration
 *                                            (a host matches itself and its subdomains)
 *   bundle         {legacy: url, modern: url}  legacy = cmp+collect (ES5), modern = + recs
 *
 * window.viz (page API): viz.event(name) records a custom event; viz.consent() reopens the
 * banner; viz.consent(tier) records a choice made by the site's own CMP. Calls made before the
 * bundle is there are queued in viz.q. A page may queue calls before this script loads with
 * (window.viz = window.viz || {q: []}).q.push(['event', 'signup']).
 */
(function (w, d) {
  var cfg = w.__VIZ_CFG, nav = w.navigator, old = w.viz, viz, cap, f, l, s, e;
  if (!cfg || !cfg.sid || (old && old.cfg)) return; // no config, or booted already
  f = cfg.features || {};

  function probe(fn) {
    try {
      return !!fn();
    } catch (e) {
      return false;
    }
  }

  cap = {
    beacon: !!nav.sendBeacon,
    fetch: typeof w.fetch == 'function',
    // CORS with credentials (IE10+); the bundle needs it, older browsers only get the pixel.
    xhr: probe(function () { return 'withCredentials' in new XMLHttpRequest(); }),
    // Read-only probe: nothing is written to the device before consent.
    ls: probe(function () { return w.localStorage.length + 1; }),
    // ES2017 syntax support; a CSP without 'unsafe-eval' makes this false: the legacy bundle.
    modern: probe(function () { return new Function('return async()=>{}'); })
  };

  function push(name, a) {
    if (viz.q.length < 100) viz.q.push([name, a]);
  }

  viz = w.viz = {
    cfg: cfg,
    cap: cap,
    q: old && old.q && old.q.slice ? old.q.slice(0, 100) : [],
    event: function (n) {
      push('event', n);
    },
    consent: function (t) {
      // Without the banner module the site's own CMP decides: take its word as the tier.
      if (!f.cmp && /^[012]$/.test(t)) viz.tier(+t);
      else push('consent', t);
    },
    // A module installs its implementation of a page API and replays the calls queued for it.
    def: function (name, fn) {
      var i, all = viz.q, rest = [];
      viz[name] = fn;
      viz.q = rest;
      for (i = 0; i < all.length; i++) {
        if (all[i][0] === name) fn(all[i][1]);
        else rest.push(all[i]);
      }
    },
    // The consent tier is shared state: modules read viz.t at start and follow viz:consent.
    t: null,
    tier: function (t) {
      viz.t = t;
      viz.emit('viz:consent', { tier: t });
    },
    emit: function (type, detail) {
      var e;
      try {
        e = new w.CustomEvent(type, { detail: detail });
      } catch (x) {
        e = d.createEvent('CustomEvent'); // IE11
        e.initCustomEvent(type, false, false, detail);
      }
      w.dispatchEvent(e);
    },
    on: function (type, fn) {
      w.addEventListener(type, function (e) { fn(e.detail); });
    },
    // localStorage get (one argument), set, or remove (v === null); never throws.
    ls: function (k, v) {
      try {
        if (v === undefined) return w.localStorage.getItem(k);
        if (v === null) w.localStorage.removeItem(k);
        else w.localStorage.setItem(k, v);
      } catch (e) {}
      return null;
    },
    // A referrer on this page's own host travels as a path: it marks navigation within the
    // site (medium "internal" downstream); other referrers stay whole.
    ref: function (u) {
      var a = d.createElement('a');
      a.href = u;
      return u && a.hostname == d.location.hostname ? a.pathname.replace(/^\/?/, '/') + a.search : u;
    },
    // A credentialed request; a text/plain body keeps it a simple CORS request (no preflight).
    // cb(status, text, xhr) gets status 0 on network errors and timeouts.
    x: function (method, url, body, cb) {
      var r = new XMLHttpRequest();
      try {
        r.open(method, url, true);
        r.withCredentials = true;
        r.timeout = 15000;
        if (body) r.setRequestHeader('Content-Type', 'text/plain;charset=UTF-8');
        r.onreadystatechange = function () {
          if (r.readyState == 4) cb(r.status, r.responseText, r);
        };
        r.send(body || null);
      } catch (e) {
        cb(0, '', r);
      }
    }
  };

  // A cross-domain linker (?_vz=..., see collect.js) leaves the address bar before anything
  // reads it, and never reaches the anonymous hit: collect.js alone may use it, after consent.
  e = d.location;
  s = e.search;
  l = s.replace(/([?&])_vz=[^&]*&?/, '$1').replace(/[?&]$/, '');
  if (l != s) {
    viz.lk = (s.match(/[?&]_vz=([^&]*)/) || [])[1];
    probe(function () { return w.history.replaceState(w.history.state, '', e.pathname + l + e.hash); });
  }

  // The anonymous hit: no id, no cookie of ours, no storage; counted for every visitor.
  if (cfg.urls && cfg.urls.collect) {
    l = cfg.urls.collect + '/hit?sid=' + cfg.sid +
      '&p=' + encodeURIComponent((e.pathname + l).slice(0, 2048)) +
      '&r=' + encodeURIComponent(viz.ref(d.referrer).slice(0, 2048));
    if (!(cap.beacon && probe(function () { return nav.sendBeacon(l); }))) new Image().src = l;
  }

  // The domain bundle; browsers without credentialed CORS (IE9 and older) stop at the pixel.
  l = cfg.bundle && (cap.modern && f.recs && cfg.bundle.modern || cfg.bundle.legacy);
  if (l && cap.xhr && w.addEventListener && (f.cmp || f.collect || f.recs)) {
    s = d.createElement('script');
    s.async = true;
    s.src = l;
    e = d.getElementsByTagName('script')[0];
    e.parentNode.insertBefore(s, e);
  }
})(window, document);
