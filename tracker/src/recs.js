/* recs.js: recommendations, ES2017 (only in the modern bundle: Chrome 60+, Firefox 55+, Safari 12+).
 * STUB: the recommendations service (viz-recs, GET /recs/items, POST /recs/signal) does not exist
 * yet. This module only waits for a browser id + token (`viz:id`, from collect.js) and consent tier
 * 2 (personalisation), then dispatches `viz:recs` with detail {items: []} so pages can wire their
 * widget now. The real module will fetch {urls.recs}/recs/items and send impression/click signals.
 */
(() => {
  const viz = window.viz;
  let done = false;
  const ready = async () => {
    if (done || !viz.id || !(viz.t >= 2)) return;
    done = true;
    const items = [];
    viz.emit('viz:recs', { items });
  };
  viz.on('viz:id', ready);
  viz.on('viz:consent', ready);
  ready();
})();
