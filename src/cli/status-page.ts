/**
 * The status page at `/`: one HTML document, its script at `/status.js` and
 * its style sheet at `/status.css`, all same-origin so the page runs under a
 * strict Content-Security-Policy with no inline script or style. No framework,
 * no build step: the files are these strings, so the built program carries
 * them too.
 *
 * The script polls `/api/backends`, `/api/events` and `/stats` (for the
 * checks' latency) every second and builds
 * every node with `createElement` and `textContent`: a backend named
 * `<img src=x onerror=...>` shows as that text. The token typed into the page
 * lives in one variable of the script (never in storage, cookies or the URL)
 * and is sent as `Authorization: Bearer`. Drain and maintenance ask first:
 * the page says what the action does and waits for a second click (in the
 * page; no `window.confirm`, which a headless browser or a blocked dialog
 * would answer on its own). Times carry their date and UTC offset.
 *
 * @module
 */

/** The page's Content-Security-Policy: only same-origin script, style and fetches; no framing, forms or base. */
export const statusPageCsp =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** `GET /`. */
export const statusPageHtml = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>apiserver-balancer</title>
<link rel="stylesheet" href="/status.css">
<script src="/status.js" defer></script>
</head>
<body>
<header>
<h1>apiserver-balancer</h1>
<p id="summary">loading…</p>
<p id="zone"></p>
</header>
<main>
<section>
<h2>Backends</h2>
<table id="backends">
<thead><tr>
<th>backend</th><th>address</th><th>source</th><th>state</th><th>in state</th><th>health</th><th>admin</th><th>cause</th>
<th>members</th><th>bytes in / out</th><th>check</th><th>weight</th><th>effective</th><th>actions</th>
</tr></thead>
<tbody></tbody>
</table>
</section>
<section id="token-box">
<h2>Admin token</h2>
<p>Drain, maintenance and ready need the admin token. It stays in this page's memory only and is sent as a bearer token.</p>
<input id="token" type="password" autocomplete="off" spellcheck="false" aria-label="admin token">
<button id="token-use" type="button">use token</button>
<button id="token-forget" type="button">forget</button>
<p id="message" role="status"></p>
<div id="confirm" hidden>
<p id="confirm-text"></p>
<button id="confirm-yes" type="button">confirm</button>
<button id="confirm-no" type="button">cancel</button>
</div>
</section>
<section>
<h2>Teardowns by reason</h2>
<table id="teardowns"><thead><tr><th>reason</th><th>connections</th></tr></thead><tbody></tbody></table>
</section>
<section>
<h2>Recent transitions</h2>
<table id="events">
<thead><tr><th>time</th><th>backend</th><th>event</th><th>what changed</th><th>reason</th><th>torn down</th></tr></thead>
<tbody></tbody>
</table>
</section>
</main>
</body>
</html>
`;

/** `GET /status.css`. */
export const statusPageCss = `body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1b1b1b; background: #fafafa; }
h1 { font-size: 1.3rem; margin: 0; }
h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #ddd; vertical-align: top; }
th { font-weight: 600; background: #f0f0f0; }
td.name { font-family: ui-monospace, monospace; word-break: break-all; }
td.actions { white-space: nowrap; }
.state { font-weight: 600; padding: .05rem .4rem; border-radius: .3rem; }
.state-up { background: #d7f5dd; }
.state-down, .state-unknown { background: #fbd5d5; }
.state-draining { background: #fdf0c4; }
.state-leaving { background: #fde2c4; }
.state-maintenance { background: #dcdcf7; }
.stale { opacity: .5; }
button { margin-right: .25rem; }
button:disabled { opacity: .4; }
#message { min-height: 1.4em; font-family: ui-monospace, monospace; }
#zone { color: #555; margin: .2rem 0 0; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
#confirm { border: 1px solid #c9a400; background: #fff8dc; padding: .5rem .75rem; border-radius: .3rem; }
#confirm p { margin: 0 0 .5rem; }
#confirm-yes { font-weight: 600; }
`;

/** `GET /status.js`. Plain ES2020, no dependency. */
export const statusPageJs = `'use strict';
(function () {
  var token = '';
  var lastSeq = 0;
  var events = [];
  var MAX_EVENTS = 50;

  function $(id) { return document.getElementById(id); }
  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function say(text) { $('message').textContent = text; }
  function pad(n, w) { n = String(n); while (n.length < (w || 2)) n = '0' + n; return n; }
  // A local date with its UTC offset: 2026-12-07 01:31:05.123 UTC+01:00.
  function stamp(ms) {
    var d = new Date(ms);
    var off = -d.getTimezoneOffset();
    var sign = off < 0 ? '-' : '+';
    off = Math.abs(off);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()) + '.' + pad(d.getMilliseconds(), 3) +
      ' UTC' + sign + pad(Math.floor(off / 60)) + ':' + pad(off % 60);
  }
  function ago(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + ' s';
    var m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + (s % 60) + ' s';
    var h = Math.floor(m / 60);
    if (h < 48) return h + ' h ' + (m % 60) + ' min';
    return Math.floor(h / 24) + ' d ' + (h % 24) + ' h';
  }
  function bytes(n) {
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
  }

  function act(name, action) {
    if (token === '') { say('enter the admin token first'); return; }
    var path = '/api/backends/' + encodeURIComponent(name) + '/' + action;
    fetch(path, {
      method: 'POST',
      headers: { 'authorization': 'Bearer ' + token, 'content-type': 'application/json' },
      body: '{}',
      cache: 'no-store',
      credentials: 'omit',
    }).then(function (res) {
      return res.json().then(function (doc) {
        say(res.ok ? action + ' ' + name + ': ' + doc.admin : action + ' ' + name + ': ' + res.status + ' ' + doc.error + ' (' + doc.message + ')');
        refresh();
      });
    }).catch(function (err) { say(action + ' failed: ' + err); });
  }

  var probe = {};
  var pending;
  var DESCRIBE = {
    drain: 'Drain NAME? No new connections go to it; open ones may finish until the drain deadline, then they are closed.',
    maintenance: 'Put NAME in maintenance? Every connection on it is closed now and it takes no new ones until ready.',
  };
  function ask(name, action) {
    if (token === '') { say('enter the admin token first'); return; }
    var text = DESCRIBE[action];
    if (text === undefined) { act(name, action); return; }
    pending = { name: name, action: action };
    $('confirm-text').textContent = text.replace('NAME', name);
    $('confirm-yes').textContent = action + ' ' + name;
    $('confirm').hidden = false;
    $('confirm-no').focus();
  }
  function settle(go) {
    var p = pending;
    pending = undefined;
    $('confirm').hidden = true;
    if (p === undefined) return;
    if (go) act(p.name, p.action); else say(p.action + ' ' + p.name + ': cancelled');
  }

  function renderBackends(doc) {
    var body = $('backends').tBodies[0];
    clear(body);
    doc.backends.forEach(function (b) {
      var row = el('tr');
      row.dataset.backend = b.id;
      row.appendChild(el('td', b.id, 'name'));
      row.appendChild(el('td', b.address));
      row.appendChild(el('td', b.source, 'source'));
      var state = el('td');
      state.appendChild(el('span', b.state, 'state state-' + b.state));
      row.appendChild(state);
      var since = el('td', ago(Date.now() - b.since), 'since num');
      since.title = 'since ' + stamp(b.since);
      row.appendChild(since);
      row.appendChild(el('td', b.health, 'health'));
      row.appendChild(el('td', b.admin, 'admin'));
      row.appendChild(el('td', b.cause.code + (b.cause.message ? ': ' + b.cause.message : ''), 'cause'));
      row.appendChild(el('td', b.members, 'members'));
      var traffic = el('td', bytes(b.bytesFromClient) + ' / ' + bytes(b.bytesFromUpstream), 'bytes num');
      traffic.title = b.bytesFromClient + ' bytes from clients to it, ' + b.bytesFromUpstream + ' bytes from it to clients';
      row.appendChild(traffic);
      var p = probe[b.id];
      var last = p && p.last && !p.last.passive ? p.last : undefined;
      var check = el('td', last ? last.durationMs + ' ms' + (p.latencyCount > 0 ? ' (mean ' + Math.round(p.latencySumSeconds / p.latencyCount * 1000) + ' ms)' : '') : '-', 'check num');
      if (last) check.title = 'last check ' + (last.ok ? 'passed' : 'failed') + ' at ' + stamp(last.at) + '; ' + p.latencyCount + ' checks timed';
      row.appendChild(check);
      row.appendChild(el('td', b.weight, 'weight'));
      row.appendChild(el('td', (Math.round(b.effectiveWeight * 100) / 100) + (b.warming ? ' (warming)' : ''), 'effective'));
      var actions = el('td', undefined, 'actions');
      ['drain', 'maintenance', 'ready'].forEach(function (action) {
        var button = el('button', action);
        button.type = 'button';
        button.dataset.action = action;
        button.disabled = token === '';
        button.addEventListener('click', function () { ask(b.id, action); });
        actions.appendChild(button);
      });
      row.appendChild(actions);
      body.appendChild(row);
    });
    var up = doc.backends.filter(function (b) { return b.eligible; }).length;
    $('summary').textContent = up + ' of ' + doc.backends.length + ' backends taking connections; ' + doc.active + ' connections open, ' + doc.waiting + ' clients waiting' + (doc.allDown ? '; ALL DOWN' : '') + (doc.readOnly ? '; admin API read-only' : '');
    $('summary').className = '';
  }

  function renderTeardowns(teardowns) {
    var body = $('teardowns').tBodies[0];
    clear(body);
    var reasons = Object.keys(teardowns).sort();
    if (reasons.length === 0) {
      var none = el('tr');
      none.appendChild(el('td', 'none yet'));
      none.appendChild(el('td', ''));
      body.appendChild(none);
    }
    reasons.forEach(function (reason) {
      var row = el('tr');
      row.appendChild(el('td', reason));
      row.appendChild(el('td', teardowns[reason]));
      body.appendChild(row);
    });
  }

  // What the event changed, in words: the axis and its new value, or the tunables.
  function changed(e) {
    if (e.kind === 'state') return e.axis === 'admin' ? 'admin -> ' + e.admin : 'health -> ' + e.health;
    if (e.kind === 'updated') return Object.keys(e.changed || {}).map(function (k) { return k + ' = ' + JSON.stringify(e.changed[k]); }).join(', ');
    return e.kind === 'added' ? 'added to the pool' : 'removed from the pool';
  }

  function renderEvents(doc) {
    doc.events.forEach(function (e) {
      if (e.seq > lastSeq) { events.unshift(e); lastSeq = e.seq; }
    });
    if (events.length > MAX_EVENTS) events.length = MAX_EVENTS;
    var body = $('events').tBodies[0];
    clear(body);
    events.forEach(function (e) {
      var row = el('tr');
      row.appendChild(el('td', stamp(e.at), 'num'));
      row.appendChild(el('td', e.backend, 'name'));
      var what = e.kind === 'state' ? e.from + ' -> ' + e.to : e.kind;
      row.appendChild(el('td', what));
      row.appendChild(el('td', changed(e), 'changed'));
      // The health cause only explains a health change.
      row.appendChild(el('td', e.kind === 'state' ? e.reason + (e.axis === 'health' && e.cause && e.cause !== e.reason ? ' (' + e.cause + ')' : '') : ''));
      row.appendChild(el('td', e.tornDown === undefined ? '' : e.tornDown));
      body.appendChild(row);
    });
    renderTeardowns(doc.teardowns);
  }

  function getJson(path) {
    return fetch(path, { cache: 'no-store', credentials: 'omit' }).then(function (res) {
      if (!res.ok) throw new Error(path + ': ' + res.status);
      return res.json();
    });
  }

  var busy = false;
  function refresh() {
    if (busy) return;
    busy = true;
    Promise.all([getJson('/api/backends'), getJson('/api/events?after=' + lastSeq), getJson('/stats').catch(function () { return undefined; })]).then(function (docs) {
      if (docs[2] && docs[2].probe) probe = docs[2].probe.backends || {};
      renderBackends(docs[0]);
      renderEvents(docs[1]);
    }).catch(function (err) {
      $('summary').textContent = 'cannot reach the balancer (' + err.message + ')';
      $('summary').className = 'stale';
    }).then(function () { busy = false; });
  }

  function setToken(value) {
    token = value;
    $('token').value = '';
    say(token === '' ? 'token forgotten' : 'token set (kept in this page only)');
    refresh();
  }

  document.addEventListener('DOMContentLoaded', function () {
    $('token-use').addEventListener('click', function () { setToken($('token').value.trim()); });
    $('token-forget').addEventListener('click', function () { setToken(''); });
    $('token').addEventListener('keydown', function (e) { if (e.key === 'Enter') setToken($('token').value.trim()); });
    $('confirm-yes').addEventListener('click', function () { settle(true); });
    $('confirm-no').addEventListener('click', function () { settle(false); });
    var zone = '';
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ''; } catch (err) { zone = ''; }
    $('zone').textContent = 'Times are in the local time of this browser' + (zone ? ' (' + zone + ')' : '') + ', with their offset from UTC.';
    refresh();
    setInterval(refresh, 1000);
  });
})();
`;
