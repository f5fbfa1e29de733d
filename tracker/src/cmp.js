/* cmp.js: the consent banner, ES5 syntax for IE11+. Reads the stored choice (localStorage
 * `viz_consent`, else the first-party cookie `viz_consent`), shows the banner when there is none
 * for the current banner version, records a choice (locally + POST {urls.cmp}/cmp/consent, with
 * collect's bid + token when there are some) and announces it with viz.tier(t) -> `viz:consent`
 * {tier}. viz.consent() reopens the banner.
 *
 * Banner texts come from cfg.cmp_config and are admin-written plain text: they are only ever
 * set with textContent. Keyboard: focus moves to the first button when the banner opens (Decline,
 * the privacy-preserving choice), every choice is a real <button>, Escape inside the banner
 * declines (recorded as a non-explicit tier 0), focus returns to where it was.
 * Global Privacy Control: the "accept" button grants at most tier 1 and the banner says so; tier 2
 * stays one explicit click away (the server caps Sec-GPC browsers the same way unless explicit).
 */
(function (w, d) {
  var viz = w.viz, cfg = viz.cfg, f = cfg.features || {}, cc = cfg.cmp_config || {}, gpc = w.navigator.globalPrivacyControl === true,
    KEY = 'viz_consent', MAX_AGE_S = 34128000, // 395 days: under 13 months
    DEF = [
      { tier: 1, label: 'Analytics', description: 'page views, time on page and outbound links, with a random browser id' },
      { tier: 2, label: 'Analytics + recommendations', description: 'also suggests pages from what you read on our sites' }
    ],
    tiers = [], seen = {}, src = cc.tiers && cc.tiers.length ? cc.tiers : DEF, top = 0,
    i, t, n, title, text, accept, decline, note, version, box, back, seq = 0;

  function str(v, dflt) {
    return typeof v == 'string' && v ? v : dflt;
  }

  for (i = 0; i < src.length; i++) {
    t = src[i];
    t = t && typeof t == 'object' ? t : { tier: t };
    n = +t.tier;
    // Only tiers this site can honour: 2 means recommendations, which need features.recs.
    if ((n === 1 || n === 2 && f.recs) && !seen[n]) {
      seen[n] = 1;
      tiers.push({ tier: n, label: str(t.label, DEF[n - 1].label), description: str(t.description, t.label ? '' : DEF[n - 1].description) });
      if (n > top) top = n;
    }
  }
  if (!top) tiers.push(DEF[top++]);
  title = str(cc.title, 'Privacy');
  text = str(cc.text, 'We measure our audience without advertising trackers. Choose what you allow; you can change it any time.');
  accept = str(cc.accept_label, 'Accept');
  decline = str(cc.decline_label, 'Decline');
  note = str(cc.gpc_text, 'Your browser sent a Global Privacy Control signal: "' + accept + '" allows ' + tiers[0].label + ' only.');
  // The version names the texts the visitor saw (proof of consent); a new version asks again.
  version = cc.version != null ? String(cc.version) : 'h' + hash(JSON.stringify([title, text, tiers, accept, decline]));

  function hash(s) { // FNV-1a, 32 bits, base 36
    for (var h = 2166136261, j = 0; j < s.length; j++) h = (h ^ s.charCodeAt(j)) * 16777619 >>> 0;
    return h.toString(36);
  }

  function stored() {
    var s = null, m;
    try {
      s = JSON.parse(viz.ls(KEY));
    } catch (e) {}
    if (!s) {
      m = /(?:^|;\s*)viz_consent=([012])\.([^;]*)/.exec(d.cookie);
      if (m) s = { tier: +m[1], v: decodeURIComponent(m[2]) };
    }
    return s && s.v === version && /^[012]$/.test(s.tier) && !(Date.now() - s.ts > MAX_AGE_S * 1000) ? +s.tier : null;
  }

  // how: true for a button, false for Escape (not an explicit decision).
  function choose(tier, how) {
    var body = { sid: cfg.sid, tier: tier, banner_version: version, explicit: how },
      id = viz.id, sent = 0, again = 0, me = ++seq;
    close();
    // Remembering the choice (a refusal too) is what keeps the banner from asking again.
    viz.ls(KEY, JSON.stringify({ tier: tier, v: version, ts: Date.now() }));
    d.cookie = KEY + '=' + tier + '.' + encodeURIComponent(version) + '; Max-Age=' + MAX_AGE_S +
      '; Path=/; SameSite=Lax' + (w.location.protocol == 'https:' ? '; Secure' : '');
    // The record names a browser only with collect's proof that it is this one: the bid and the
    // token /init gave with it (viz-cmp refuses a bid without its token).
    // A later choice supersedes this one: one still waiting for the id is never sent after it.
    function send(i) {
      if (sent++ || me != seq || !cfg.urls || !cfg.urls.cmp) return;
      body.bid = i && i.bid; // undefined: left out of the JSON
      body.token = i && i.token;
      viz.x('POST', cfg.urls.cmp + '/cmp/consent', JSON.stringify(body), function (s) {
        // 401 token_expired (a page left open): once, a fresh token from collect, then again.
        if (s == 401 && !again++) wait(viz.init);
      });
    }
    // A consent without an id yet waits for the one collect gets from /init (at most 5 s) so
    // the ledger row names the browser it is about; a decline without one goes without a bid.
    function wait(refresh) {
      sent = 0;
      if (tier && f.collect) {
        viz.on('viz:id', send);
        setTimeout(send, 5000);
        if (refresh) refresh();
      } else send();
    }
    viz.tier(tier);
    if (id) send(id);
    else wait();
  }

  // Text only ever enters the page as textContent: admin texts stay inert.
  function el(tag, parent, txt, id) {
    var e = d.createElement(tag);
    if (txt) e.textContent = txt;
    if (id != null) e.id = 'viz-cmp' + id;
    parent.appendChild(e);
    return e;
  }

  function button(row, label, tier) {
    var b = el('button', row, label);
    b.type = 'button';
    b.onclick = function () {
      choose(tier, true);
    };
    return b;
  }

  function show() {
    var list, row, def = gpc && top > 1 ? 1 : top, first;
    if (!d.body) return d.addEventListener('DOMContentLoaded', show);
    if (box) return box.querySelector('button').focus();
    back = d.activeElement;
    box = el('div', d.body, 0, '');
    box.setAttribute('role', 'dialog');
    box.setAttribute('aria-labelledby', 'viz-cmp-t');
    box.setAttribute('aria-describedby', 'viz-cmp-d');
    el('style', box, '#viz-cmp{position:fixed;z-index:2147483647;left:1em;right:1em;bottom:1em;max-width:40em;margin:auto;padding:1em;background:#fff;color:#111;border:1px solid;box-shadow:0 2px 9px #0008;font:15px/1.4 sans-serif}' +
      '#viz-cmp button{font:inherit;margin:.5em .5em 0 0;padding:.5em 1em;border:2px solid;background:#fff;color:#111}#viz-cmp button:focus{outline:3px solid #15c!important}');
    el('strong', box, title, '-t');
    el('p', box, text, '-d');
    list = el('ul', box);
    for (i = 0; i < tiers.length; i++) {
      t = el('li', list);
      el('strong', t, tiers[i].label);
      if (tiers[i].description) t.appendChild(d.createTextNode(': ' + tiers[i].description));
    }
    if (def < top) el('p', box, note);
    row = el('div', box);
    first = button(row, decline, 0);
    // Tiers other than the one "accept" grants get their own button, so each is one click.
    for (i = 0; i < tiers.length; i++) if (tiers[i].tier !== def) button(row, tiers[i].label, tiers[i].tier);
    button(row, accept, def);
    box.onkeydown = function (e) {
      if (/^Esc/.test(e.key) || e.keyCode == 27) choose(0, false);
    };
    first.focus();
  }

  function close() {
    if (!box) return;
    box.parentNode.removeChild(box);
    box = null;
    if (back && back.focus && back !== d.body) back.focus();
  }

  t = stored();
  if (t !== null) viz.tier(t);
  // viz.consent() reopens the banner; viz.consent(tier) records a choice made in the site's UI.
  viz.def('consent', function (x) {
    if (/^[012]$/.test(x)) choose(+x, true);
    else show();
  });
  if (viz.t === null && !box) show();
})(window, document);
