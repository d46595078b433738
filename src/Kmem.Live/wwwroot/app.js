// kmem serve: the live view's page. Reads the server's updates (Server-Sent Events from
// /api/updates: a whole update, then deltas), keeps every frame's class, paints only the
// frames that changed, and fills the panels; side updates (compare on) fill the columns of
// the other slab allocators. Controls POST to /api/control.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const state = { keys: null, legend: [], colors: [], zones: [], maxPfn: 0, perRow: 512, seq: -1, run: -1,
    image: null, ctx: null, last: null, sparks: new Map(), sort: { col: 'pages', desc: true },
    selected: null, markers: [], slabDirty: 0, sides: new Map(), compare: false, compareDrawn: 0, hoverPfn: -1, hoverTimer: 0, pressureDrawn: 0 };
  const ORDER_COLS = 11;

  function post(cmd, args) {
    const q = new URLSearchParams(Object.assign({ cmd }, args || {}));
    return fetch('/api/control?' + q.toString(), { method: 'POST' }).then((r) => {
      if (!r.ok) { return r.text().then((t) => { $('status').textContent = t.trim(); }); }
      return null;
    });
  }

  function hexToRgb(h) { const v = parseInt(h.slice(1), 16); return [(v >> 16) & 255, (v >> 8) & 255, v & 255]; }

  // ---- the map
  function initMap(u) {
    state.maxPfn = u.maxPfn;
    state.perRow = u.maxPfn > 262144 ? 1024 : 512;
    const rows = Math.ceil(u.maxPfn / state.perRow);
    const px = u.maxPfn > 262144 ? 1 : 2;
    const map = $('map'), zones = $('zones');
    map.width = state.perRow; map.height = rows;
    map.style.width = (state.perRow * px) + 'px'; map.style.height = (rows * px) + 'px';
    zones.width = state.perRow * px; zones.height = rows * px;
    zones.style.width = zones.width + 'px'; zones.style.height = zones.height + 'px';
    state.px = px;
    state.ctx = map.getContext('2d');
    state.image = state.ctx.createImageData(state.perRow, rows);
    state.legend = u.legend; state.colors = u.legend.map((l) => hexToRgb(l.color));
    state.zones = u.zones;
    $('legend').innerHTML = u.legend.map((l) => `<span><i style="background:${l.color}"></i>${esc(l.name)}</span>`).join('');
    const zc = zones.getContext('2d');
    zc.clearRect(0, 0, zones.width, zones.height);
    zc.strokeStyle = '#000'; zc.lineWidth = 1; zc.font = '10px sans-serif'; zc.fillStyle = '#000';
    for (const z of u.zones) {
      const r = Math.floor(z.start / state.perRow), c = z.start % state.perRow;
      const r2 = Math.floor((z.end - 1) / state.perRow);
      zc.strokeRect(0.5, r * px + 0.5, zones.width - 1, (r2 - r + 1) * px - 1);
      zc.beginPath(); zc.moveTo(c * px + 0.5, r * px); zc.lineTo(c * px + 0.5, (r + 1) * px); zc.stroke();
      zc.fillStyle = 'rgba(255,255,255,0.8)'; zc.fillRect(2, r * px + 2, zc.measureText(z.name).width + 4, 12);
      zc.fillStyle = '#000'; zc.fillText(z.name, 4, r * px + 12);
    }
    $('mapinfo').textContent = `${u.maxPfn} frames, one per cell`;
  }

  function paint(from, to) {
    const d = state.image.data, keys = state.keys, colors = state.colors;
    for (let p = from; p < to; p++) {
      const c = colors[keys[p]] || [255, 0, 255];
      const o = p * 4; d[o] = c[0]; d[o + 1] = c[1]; d[o + 2] = c[2]; d[o + 3] = 255;
    }
  }

  function flush(minPfn, maxPfn) {
    if (minPfn > maxPfn) { return; }
    const r0 = Math.floor(minPfn / state.perRow), r1 = Math.floor(maxPfn / state.perRow);
    state.ctx.putImageData(state.image, 0, 0, 0, r0, state.perRow, r1 - r0 + 1);
  }

  function applyFull(u) {
    if (state.run !== u.run || !state.image || state.maxPfn !== u.maxPfn) { initMap(u); state.sparks.clear(); }
    const bin = atob(u.frames);
    state.keys = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) { state.keys[i] = bin.charCodeAt(i); }
    paint(0, state.keys.length);
    flush(0, state.keys.length - 1);
  }

  function applyRuns(runs) {
    let lo = Infinity, hi = -1;
    for (let j = 0; j + 2 < runs.length; j += 3) {
      const s = runs[j], n = runs[j + 1], k = runs[j + 2];
      state.keys.fill(k, s, s + n);
      paint(s, s + n);
      lo = Math.min(lo, s); hi = Math.max(hi, s + n - 1);
    }
    flush(lo, hi);
  }

  function keyName(k) { return state.legend[k] ? state.legend[k].name : '?'; }

  // Hovering a cell names its frame at once from what the page knows (pfn, zone, class); the server then says the
  // rest (state, order of its block, migrate type, slab cache, flags), read on the replaying thread between events.
  $('map').addEventListener('mousemove', (ev) => {
    if (!state.keys) { return; }
    const rect = ev.target.getBoundingClientRect();
    const col = Math.floor((ev.clientX - rect.left) / state.px), row = Math.floor((ev.clientY - rect.top) / state.px);
    const pfn = row * state.perRow + col;
    if (col < 0 || col >= state.perRow || pfn < 0 || pfn >= state.keys.length || pfn === state.hoverPfn) { return; }
    state.hoverPfn = pfn;
    const zone = state.zones.find((z) => pfn >= z.start && pfn < z.end);
    $('hover').textContent = `pfn 0x${pfn.toString(16)} (${pfn})  ${zone ? zone.name : ''}  ${keyName(state.keys[pfn])}`;
    clearTimeout(state.hoverTimer);
    state.hoverTimer = setTimeout(() => {
      fetch('/api/frame?pfn=' + pfn).then((r) => (r.ok ? r.json() : null)).then((f) => {
        if (f && f.pfn === state.hoverPfn) { $('hover').textContent = describeFrame(f); }
      });
    }, 60);
  });

  function describeFrame(f) {
    return `pfn 0x${f.pfn.toString(16)} (${f.pfn})  ${f.zone}  ${f.state}  order ${f.order}  ${f.migrateType}`
      + (f.cache ? `  cache ${f.cache}` : '') + `  flags ${f.flags}  refcount ${f.refCount}  mapcount ${f.mapCount}`;
  }

  // ---- panels
  function esc(s) { return String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]); }
  const fmt = (n) => Number(n).toLocaleString('en-US');

  function panels(u) {
    $('source').textContent = u.source;
    for (const b of document.querySelectorAll('#backends button')) { b.classList.toggle('on', b.dataset.backend === u.backend); }
    $('play').textContent = u.playing ? 'pause' : 'play';
    $('play').classList.toggle('on', u.playing);
    $('position').textContent = String(u.position);
    $('total').textContent = u.total ? String(u.total) : '?';
    $('progress').style.width = u.total ? (100 * u.position / u.total).toFixed(2) + '%' : '0';
    $('status').textContent = u.error ? 'error: ' + u.error : u.ended ? 'end of the trace' : u.playing ? 'playing' : 'paused';
    $('event').textContent = u.event || (u.ended ? '(end of the trace)' : '(the machine as booted)');
    $('chapter').textContent = u.chapter ? 'chapter: ' + u.chapter : '';
    if (u.markers && u.markers.length !== state.markers.length) { markers(u.markers, u.total); }
    // The last column, after a step: what the event settled of each kind (the kernel's answer read from the trace,
    // Kmem's from its allocators) and whether they agree.
    $('decisions').tBodies[0].innerHTML = u.decisions.map((d) => {
      const yn = (n) => (n > 0 ? 'yes' : 'no');
      const last = !d.lastCompared ? '' : `kernel ${yn(d.lastKernelYes)}, Kmem ${yn(d.lastKmemYes)}: `
        + (d.lastMatched === d.lastCompared ? '<span class="yes">same</span>' : '<span class="no">differs</span>');
      const pct = d.compared ? (100 * d.matched / d.compared).toFixed(1) + '%' : '';
      return `<tr><td>${esc(d.kind)}</td><td>${fmt(d.compared)}</td><td>${pct}</td><td>${last}</td></tr>`;
    }).join('');
    counters(u);
    pressure(u);
    freeAreas(u);
    $('buddyinfo').textContent = u.buddyinfo;
    pcp(u);
    if (u.slobinfo != null) {
      $('slobinfo').hidden = false; $('slabwrap').hidden = true; $('slobinfo').textContent = u.slobinfo;
      $('slabtitle').textContent = 'SLOB (no slabinfo): slobinfo and its free lists';
    } else {
      $('slobinfo').hidden = true; $('slabwrap').hidden = false; $('slabtitle').textContent = 'Slab caches (slabinfo)';
      slab(u);
    }
  }

  function markers(list, total) {
    state.markers = list;
    $('markers').innerHTML = list.map((m, i) => `<option value="${i}">${esc(m.text)} (event ${m.position})</option>`).join('');
    const tl = $('timeline');
    for (const c of tl.querySelectorAll('.chapter')) { c.remove(); }
    if (!total) { return; }
    list.forEach((m, i) => {
      const d = document.createElement('div');
      d.className = 'chapter'; d.style.left = (100 * m.position / total) + '%'; d.dataset.text = m.text; d.dataset.index = i;
      d.addEventListener('click', (ev) => { ev.stopPropagation(); post('seek', { marker: i }); });
      tl.appendChild(d);
    });
  }

  // The charts draw the counters the server sampled along the run (every `every` events from the start, so a seek
  // or a restart loses nothing), then the moment shown; the watermarks are today's, summed over the zones.
  function counters(u) {
    const c = u.counters;
    const names = ['MemFree', 'Slab', 'pgalloc', 'pgfree', 'pgscan', 'pgsteal', 'pswpout', 'pageoutrun', 'oom_kill',
      'compact_stall', 'compact_success', 'compact_fail', 'compact_migrate_scanned', 'compact_free_scanned'];
    $('counters').innerHTML = names.map((n) => `${n} <b>${fmt(c[n] || 0)}</b>`).join(' · ');
    const cs = u.counterSamples;
    if (!cs) { return; }
    const pts = [];
    const n = cs.series.MemFree.length;
    for (let j = 0; j < n; j++) {
      const p = { position: j * cs.every };
      for (const k in cs.series) { p[k] = cs.series[k][j]; }
      pts.push(p);
    }
    if (!n || pts[n - 1].position < u.position) {
      const p = { position: u.position };
      for (const k in cs.series) { p[k] = c[k] || 0; }
      pts.push(p);
    }
    let min = 0, low = 0, high = 0;
    for (const z of u.watermarks) { min += z.min; low += z.low; high += z.high; }
    const xmax = Math.max(1, u.total || 0, u.position);
    chart($('memchart'), pts, xmax, [['MemFree', '#2a9d8f', 'MemFree kB'], ['Slab', '#f4a261', 'Slab kB']],
      [[min * 4, '#e63946', 'min'], [low * 4, '#e9c46a', 'low'], [high * 4, '#8ab17d', 'high']], 0);
    chart($('evchart'), pts, xmax, [['pgalloc', '#264653', 'pgalloc'], ['pgfree', '#2a9d8f', 'pgfree'], ['pgscan', '#e76f51', 'pgscan'],
      ['pgsteal', '#e9c46a', 'pgsteal'], ['pswpout', '#9b5de5', 'pswpout'], ['compact_stall', '#6d6875', 'compact_stall']], [], cs.every);
  }

  // A chart of sampled counters over the run's positions: values as they are, or (rateEvery > 0) what each rose by
  // per rateEvery events; kswapd runs (pageoutrun rising) are light bars, OOM kills dark red ones.
  function chart(cv, pts, xmax, series, lines, rateEvery) {
    const g = cv.getContext('2d'), W = cv.width, H = cv.height;
    g.clearRect(0, 0, W, H);
    if (pts.length < 2) { return; }
    const val = (i, k) => !rateEvery ? (pts[i][k] || 0)
      : Math.max(0, (pts[i][k] || 0) - (pts[i - 1][k] || 0)) * rateEvery / Math.max(1, pts[i].position - pts[i - 1].position);
    let max = 1;
    for (let i = 1; i < pts.length; i++) { for (const [k] of series) { max = Math.max(max, val(i, k)); } }
    for (const [v] of lines) { max = Math.max(max, v); }
    const x = (pos) => 4 + (W - 8) * pos / xmax, y = (v) => H - 14 - (H - 24) * v / max;
    for (let i = 1; i < pts.length; i++) {
      if (pts[i].pageoutrun > pts[i - 1].pageoutrun) { g.fillStyle = 'rgba(231,111,81,0.25)'; g.fillRect(x(pts[i].position) - 1, 0, 2, H - 12); }
      if (pts[i].oom_kill > pts[i - 1].oom_kill) { g.fillStyle = '#b23a3a'; g.fillRect(x(pts[i].position) - 1, 0, 3, H - 12); }
    }
    const labels = [...series, ...lines.map(([, color, label]) => [null, color, label])];
    for (const [v, color] of lines) {
      g.strokeStyle = color; g.lineWidth = 1; g.beginPath(); g.moveTo(4, y(v)); g.lineTo(W - 4, y(v)); g.stroke();
    }
    for (const [k, color] of series) {
      g.strokeStyle = color; g.lineWidth = 1.5; g.beginPath();
      for (let i = rateEvery ? 1 : 0; i < pts.length; i++) {
        const px = x(pts[i].position), py = y(val(i, k));
        if (i === (rateEvery ? 1 : 0)) { g.moveTo(px, py); } else { g.lineTo(px, py); }
      }
      g.stroke();
    }
    g.font = '10px sans-serif';
    labels.forEach(([, color, label], s) => { g.fillStyle = color; g.fillText(label, 4 + s * 84, H - 2); });
    g.fillStyle = '#555'; g.fillText(fmt(Math.round(max)) + (rateEvery ? ` per ${fmt(rateEvery)} events` : ''), W - 160, 10);
  }

  // ---- memory pressure: shown once either side has shown it (u.pressure), never as an empty panel
  const P_NAMES = ['kswapd wakeups', 'kswapd runs', 'direct reclaims', 'direct reclaimed pages', 'swap-out pages', 'direct compactions',
    'OOM kills', 'free pages at end'];

  function pressure(u) {
    const p = u.pressure;
    $('pressure').hidden = !p;
    if (!p) { return; }
    const t = performance.now();
    if (u.playing && t - state.pressureDrawn < 150) { return; }
    state.pressureDrawn = t;
    const free = p.zones.reduce((n, z) => n + z.free, 0);
    const wm = ['min', 'low', 'high'].map((k) => p.zones.reduce((n, z) => n + z[k], 0));
    $('pinfo').textContent = `phase ${p.phase} · free ${fmt(free)} pages (all zones; min ${fmt(wm[0])}, low ${fmt(wm[1])}, high ${fmt(wm[2])})`
      + (p.kswapdAwake == null ? '' : p.kswapdAwake ? " · Kmem's kswapd awake" : " · Kmem's kswapd asleep");
    const victims = (list) => (list.length ? list.map((v) => `<b class="kill">${esc(v)}</b>`).join(', ') : 'none');
    $('pvictims').innerHTML = 'OOM victims: ' + (p.kernel ? `kernel ${victims(p.kernelVictims)} · ` : '') + `Kmem ${victims(p.kmemVictims)}`
      + (p.kernel && p.kernelVictims.length + p.kmemVictims.length > 0
        ? (p.kernelVictims.join() === p.kmemVictims.join() ? ' <span class="yes">(same)</span>' : ' <span class="no">(differ)</span>') : '');
    zoneCharts(u, p);
    for (const side of ['kernel', 'kmem']) {
      const box = document.querySelector(`#pepisodes .pside[data-side="${side}"]`);
      box.hidden = side === 'kernel' && !p.kernel;
      const t = side === 'kernel' ? p.kernelTotals : p.kmemTotals;
      box.querySelector('.ptotals').textContent = `kswapd wakeups ${fmt(t['kswapd wakeups'] || 0)} · runs ${fmt(t['kswapd runs'] || 0)}`
        + ` · direct reclaims ${fmt(t['direct reclaims'] || 0)} (${fmt(t['direct reclaimed pages'] || 0)} pages)`
        + ` · swap-out ${fmt(t['swap-out pages'] || 0)} pages · direct compactions ${fmt(t['direct compactions'] || 0)} · OOM kills ${fmt(t['OOM kills'] || 0)}`;
      box.querySelector('.plist').innerHTML = p.episodes.filter((e) => e.side === side).reverse().map(episode).join('');
    }
    $('pphasetitle').textContent = p.kernel ? 'Per phase, kernel / Kmem' : "Per phase (Kmem's)";
    phaseTable(p);
    vmstatTable(p);
  }

  function episode(e) {
    const where = `event ${e.position}` + (e.line ? `, line ${e.line}` : '');
    const n = e.count > 1 ? ` ×${e.count}` : '';
    const who = e.who ? ` (${esc(e.who)})` : '';
    const swapped = e.swapped ? `, ${fmt(e.swapped)} pages written to swap` : '';
    let what;
    switch (e.kind) {
      case 'OOM kill': what = `OOM kill: ${esc(e.who)}`; break;
      case 'direct reclaim': what = `direct reclaim${n}${who}` + (e.open ? '' : `: ${fmt(e.reclaimed)} pages reclaimed`) + swapped; break;
      case 'compaction': what = `direct compaction${n}${who}` + (e.result ? `: ${esc(e.result)}` : ''); break;
      case 'swap-out': what = `swap-out: ${fmt(e.swapped)} pages${who}`; break;
      default: what = `${esc(e.kind)}${n}${who}${swapped}`;
    }
    const cls = e.kind === 'OOM kill' ? 'oom' : e.open ? 'open' : '';
    return `<li class="${cls}">${where}: ${what}${e.open ? ' (under way)' : ''}</li>`;
  }

  // One small chart per zone: its free pages sampled from the start (sample i at event i × sampleEvery, then now),
  // against its watermarks, the bands under them tinted; the trace's phases and the OOM kills marked.
  function zoneCharts(u, p) {
    const box = $('pzones');
    if (box.children.length !== p.zones.length) {
      box.innerHTML = p.zones.map((z) => `<canvas width="420" height="110" data-zone="${esc(z.zone)}"></canvas>`).join('');
    }
    p.zones.forEach((z, i) => {
      const cv = box.children[i], g = cv.getContext('2d'), W = cv.width, H = cv.height, top = 14, bottom = H - 12;
      const pts = z.samples.map((v, j) => [j * p.sampleEvery, v]);
      pts.push([u.position, z.free]);
      const xmax = Math.max(1, u.total || 0, u.position);
      let vmax = 1;
      for (const [, v] of pts) { vmax = Math.max(vmax, v); }
      // Close enough to the watermarks to see them: at most eight times the high one (higher values are clipped).
      const ymax = Math.max(4 * z.high, Math.min(vmax, 8 * z.high), 1);
      const x = (pos) => 2 + (W - 4) * pos / xmax, y = (v) => Math.round(bottom - (bottom - top) * Math.min(v, ymax) / ymax);
      g.clearRect(0, 0, W, H);
      g.fillStyle = 'rgba(230,57,70,0.16)'; g.fillRect(0, y(z.min), W, bottom - y(z.min));
      g.fillStyle = 'rgba(244,162,97,0.16)'; g.fillRect(0, y(z.low), W, y(z.min) - y(z.low));
      g.fillStyle = 'rgba(233,196,106,0.14)'; g.fillRect(0, y(z.high), W, y(z.low) - y(z.high));
      g.font = '10px sans-serif';
      for (const m of state.markers) {
        if (!m.text.startsWith('PHASE ')) { continue; }
        g.fillStyle = '#bbb'; g.fillRect(x(m.position), top, 1, bottom - top);
        g.fillStyle = '#777'; g.fillText(m.text.slice(6, 20), x(m.position) + 2, bottom - 2);
      }
      for (const e of p.episodes) {
        if (e.kind !== 'OOM kill') { continue; }
        g.fillStyle = e.side === 'kernel' ? '#b23a3a' : '#6a040f';
        g.fillRect(x(e.position) - 1, e.side === 'kernel' ? top : (top + bottom) / 2, 2, (bottom - top) / 2);
      }
      for (const [k, c] of [['min', '#e63946'], ['low', '#f4a261'], ['high', '#8ab17d']]) {
        g.strokeStyle = c; g.setLineDash([3, 3]); g.beginPath(); g.moveTo(0, y(z[k]) + 0.5); g.lineTo(W, y(z[k]) + 0.5); g.stroke();
      }
      g.setLineDash([]);
      g.strokeStyle = '#2a9d8f'; g.lineWidth = 2; g.beginPath(); // on whole pixels: a flat stretch is a solid line
      pts.forEach(([pos, v], j) => { if (j === 0) { g.moveTo(x(pos), y(v)); } else { g.lineTo(x(pos), y(v)); } });
      g.stroke(); g.lineWidth = 1;
      g.fillStyle = '#222';
      g.fillText(`${z.zone}: free ${fmt(z.free)} · min ${fmt(z.min)} low ${fmt(z.low)} high ${fmt(z.high)}`
        + (vmax > ymax ? ` · clipped at ${fmt(ymax)}` : ''), 4, 10);
    });
  }

  function phaseTable(p) {
    const names = P_NAMES.filter((n) => p.phases.some((ph) => n in ph.kmem || n in ph.kernel));
    $('pphases').tHead.innerHTML = '<tr><th>phase</th>' + names.map((n) => `<th>${esc(n)}</th>`).join('') + "<th>Kmem's fewest free</th></tr>";
    $('pphases').tBodies[0].innerHTML = p.phases.map((ph) => {
      const cell = (n) => {
        const m = n in ph.kmem ? fmt(ph.kmem[n]) : '-';
        return p.kernel ? `${n in ph.kernel ? fmt(ph.kernel[n]) : '-'} / ${m}` : m;
      };
      return `<tr class="${ph.ended ? '' : 'open'}" data-phase="${esc(ph.phase)}"><td>${esc(ph.phase)}${ph.ended ? '' : ' (so far)'}</td>`
        + names.map((n) => `<td>${cell(n)}</td>`).join('') + `<td>${ph.kmemMinFree < 0 ? '-' : fmt(ph.kmemMinFree)}</td></tr>`;
    }).join('');
  }

  function vmstatTable(p) {
    const rows = p.vmstat || [];
    $('pvmstatbox').hidden = rows.length === 0;
    if (!rows.length) { return; }
    const phases = [...new Set(rows.map((r) => r.phase))], names = [...new Set(rows.map((r) => r.name))];
    const at = new Map(rows.map((r) => [r.phase + '|' + r.name, r]));
    $('pvmstat').tHead.innerHTML = '<tr><th>counter</th>' + phases.map((ph) => `<th>${esc(ph)}</th>`).join('') + '</tr>';
    $('pvmstat').tBodies[0].innerHTML = names.map((n) => `<tr><td>${esc(n)}</td>` + phases.map((ph) => {
      const r = at.get(ph + '|' + n);
      return `<td>${r ? `${r.kernel == null ? '-' : fmt(r.kernel)} / ${fmt(r.kmem)}` : ''}</td>`;
    }).join('') + '</tr>').join('');
  }

  function freeAreas(u) {
    const byZone = new Map();
    for (const f of u.freeAreas) { if (!byZone.has(f.zone)) { byZone.set(f.zone, []); } byZone.get(f.zone).push(f); }
    let html = '';
    for (const [zone, rows] of byZone) {
      html += `<table class="freearea" data-zone="${esc(zone)}"><thead><tr><th>${esc(zone)}</th>`;
      for (let o = 0; o < ORDER_COLS; o++) { html += `<th>${o}</th>`; }
      html += '</tr></thead><tbody>';
      for (const r of rows) { html += `<tr><td>${esc(r.type)}</td>${r.counts.map((n) => `<td>${n}</td>`).join('')}</tr>`; }
      html += '</tbody></table>';
    }
    $('freeareas').innerHTML = html;
  }

  function pcp(u) {
    let html = '<table><thead><tr><th>zone</th><th>cpu</th><th>count</th><th>high</th><th>batch</th></tr></thead><tbody>';
    let wm = '<table><thead><tr><th>zone</th><th>free</th><th>min</th><th>low</th><th>high</th><th>managed</th></tr></thead><tbody>';
    for (const z of u.watermarks) {
      for (const p of z.pcp) { html += `<tr><td>${esc(z.zone)}</td><td>${p.cpu}</td><td>${p.count}</td><td>${p.high}</td><td>${p.batch}</td></tr>`; }
      wm += `<tr><td>${esc(z.zone)}</td><td>${z.free}</td><td>${z.min}</td><td>${z.low}</td><td>${z.high}</td><td>${z.managed}</td></tr>`;
    }
    $('pcp').innerHTML = html + '</tbody></table>';
    $('watermarks').innerHTML = wm + '</tbody></table>';
  }

  const SLAB_COLS = [['name', 'name'], ['activeObjs', 'active_objs'], ['numObjs', 'num_objs'], ['objSize', 'objsize'],
    ['objPerSlab', 'objperslab'], ['pagesPerSlab', 'pagesperslab'], ['activeSlabs', 'active_slabs'], ['numSlabs', 'num_slabs'], ['pages', 'pages']];

  function slab(u) {
    for (const r of u.slabinfo) {
      r.pages = r.numSlabs * r.pagesPerSlab;
      let s = state.sparks.get(r.name);
      if (!s) { s = []; state.sparks.set(r.name, s); }
      if (s.length === 0 || s[s.length - 1] !== r.pages || s.length < 2) { s.push(r.pages); if (s.length > 60) { s.shift(); } }
    }
    const now = performance.now();
    if (now - state.slabDirty < 200 && u.playing) { return; }
    state.slabDirty = now;
    const thead = $('slabinfo').tHead;
    if (!thead.rows.length) {
      thead.innerHTML = '<tr>' + SLAB_COLS.map(([k, label]) => `<th data-key="${k}">${label}</th>`).join('') + '<th>pages over time</th></tr>';
      for (const th of thead.querySelectorAll('th[data-key]')) {
        th.addEventListener('click', () => {
          const k = th.dataset.key;
          state.sort = { col: k, desc: state.sort.col === k ? !state.sort.desc : k !== 'name' };
          state.slabDirty = 0; slab(state.last);
        });
      }
    }
    const rows = u.slabinfo.slice();
    const { col, desc } = state.sort;
    rows.sort((a, b) => { const x = a[col], y = b[col]; const c = typeof x === 'string' ? x.localeCompare(y) : x - y; return desc ? -c : c; });
    $('slabinfo').tBodies[0].innerHTML = rows.map((r) => {
      const cells = SLAB_COLS.map(([k, label]) => `<td data-col="${label}">${esc(r[k])}</td>`).join('');
      return `<tr data-cache="${esc(r.name)}"${state.selected === r.name ? ' class="sel"' : ''}>${cells}<td>${spark(state.sparks.get(r.name))}</td></tr>`;
    }).join('');
  }

  function spark(s) {
    if (!s || s.length < 2) { return ''; }
    const max = Math.max(...s, 1);
    const pts = s.map((v, i) => `${(i * 80 / (s.length - 1)).toFixed(1)},${(14 - 12 * v / max).toFixed(1)}`).join(' ');
    return `<svg width="80" height="16"><polyline fill="none" stroke="#e76f51" points="${pts}"/></svg>`;
  }

  $('slabinfo').tBodies[0].addEventListener('click', (ev) => {
    const tr = ev.target.closest('tr');
    if (!tr) { return; }
    state.selected = tr.dataset.cache;
    for (const r of $('slabinfo').tBodies[0].rows) { r.classList.toggle('sel', r === tr); }
    fetch('/api/cache?name=' + encodeURIComponent(state.selected)).then((r) => r.text()).then((t) => { $('cachedetail').textContent = t; });
  });

  // ---- updates
  function apply(u) {
    if (u.side) { state.sides.set(u.backend, u); drawCompare(true); return; }
    if (u.full) { applyFull(u); }
    else if (state.keys && u.run === state.run && u.seq === state.seq + 1) { applyRuns(u.runs || []); }
    else { resync(); return; }
    state.run = u.run; state.seq = u.seq; state.last = u;
    panels(u);
    if (u.compare !== state.compare) { state.compare = !!u.compare; if (!state.compare) { state.sides.clear(); } }
    drawCompare(!u.playing);
  }

  // ---- side by side: this page's machine and the other slab allocators' at the same event
  const BACKENDS = ['slub', 'slab', 'slob'];

  function drawCompare(now) {
    $('compareBtn').classList.toggle('on', state.compare);
    $('columns').hidden = !state.compare;
    if (!state.compare || !state.last) { return; }
    const t = performance.now();
    if (!now && t - state.compareDrawn < 500) { return; }
    state.compareDrawn = t;
    const main = state.last;
    $('columns').innerHTML = BACKENDS.map((b) => `<div class="col" data-backend="${b}"></div>`).join('');
    for (const b of BACKENDS) {
      const col = $('columns').querySelector(`.col[data-backend="${b}"]`);
      const u = b === main.backend ? main : state.sides.get(b);
      if (!u) { col.innerHTML = `<h3>${b.toUpperCase()}</h3><p>replaying to event ${main.position}…</p>`; continue; }
      const behind = u.position === main.position ? '' : main.playing ? ' <span class="no">(follows when this page pauses)</span>'
        : ` <span class="no">(on its way to ${main.position})</span>`;
      const pages = u.slabinfo ? u.slabinfo.reduce((n, r) => n + r.numSlabs * r.pagesPerSlab, 0) : null;
      let html = `<h3>${b.toUpperCase()}${b === main.backend ? ' (this page)' : ''} at event <span class="pos">${u.position}</span>${behind}</h3>`
        + `<canvas class="mini"></canvas>`
        + `<div class="mono">MemFree <b>${fmt(u.counters.MemFree)}</b> kB · Slab <b>${fmt(u.counters.Slab)}</b> kB`
        + (pages != null ? ` · slab pages <b>${fmt(pages)}</b>` : '') + '</div>'
        + `<pre class="buddyinfo">${esc(u.buddyinfo)}</pre>`;
      if (u.slobinfo != null) {
        html += `<pre class="slobinfo">${esc(u.slobinfo)}</pre>`;
      } else {
        const top = u.slabinfo.slice().sort((x, y) => y.numSlabs * y.pagesPerSlab - x.numSlabs * x.pagesPerSlab).slice(0, 12);
        html += '<table class="slabinfo"><thead><tr><th>cache</th><th>active_objs</th><th>num_objs</th><th>objsize</th><th>pages</th></tr></thead><tbody>'
          + top.map((r) => `<tr><td>${esc(r.name)}</td><td>${r.activeObjs}</td><td>${r.numObjs}</td><td>${r.objSize}</td><td>${r.numSlabs * r.pagesPerSlab}</td></tr>`).join('')
          + '</tbody></table>';
      }
      col.innerHTML = html;
      miniMap(col.querySelector('canvas'), u === main ? state.keys : framesOf(u));
    }
  }

  function framesOf(u) {
    if (!u.keys) { const bin = atob(u.frames); u.keys = new Uint8Array(bin.length); for (let i = 0; i < bin.length; i++) { u.keys[i] = bin.charCodeAt(i); } }
    return u.keys;
  }

  // The map at one pixel a frame (the same rows as the big one), from a machine's frame keys.
  function miniMap(cv, keys) {
    if (!keys || !state.colors.length) { return; }
    const rows = Math.ceil(keys.length / state.perRow);
    cv.width = state.perRow; cv.height = rows;
    const g = cv.getContext('2d'), img = g.createImageData(state.perRow, rows), d = img.data;
    for (let p = 0; p < keys.length; p++) {
      const c = state.colors[keys[p]] || [255, 0, 255], o = p * 4;
      d[o] = c[0]; d[o + 1] = c[1]; d[o + 2] = c[2]; d[o + 3] = 255;
    }
    g.putImageData(img, 0, 0);
  }

  let resyncing = false;
  function resync() {
    if (resyncing) { return; }
    resyncing = true;
    fetch('/api/state').then((r) => (r.ok ? r.json() : null)).then((u) => { resyncing = false; if (u) { apply(u); } });
  }

  const events = new EventSource('/api/updates');
  events.onmessage = (m) => apply(JSON.parse(m.data));

  // ---- controls
  const speed = () => $('speed').value;
  $('play').addEventListener('click', () => post(state.last && state.last.playing ? 'pause' : 'play', { speed: speed() }));
  $('step').addEventListener('click', () => post('step', { n: 1 }));
  $('stepN').addEventListener('click', () => post('step', { n: $('stepn').value }));
  $('restart').addEventListener('click', () => post('restart'));
  $('seek').addEventListener('click', () => { if ($('markers').value !== '') { post('seek', { marker: $('markers').value }); } });
  $('speed').addEventListener('change', () => post('speed', { value: speed() }));
  $('timeline').addEventListener('click', (ev) => {
    if (!state.last || !state.last.total) { return; }
    const r = ev.currentTarget.getBoundingClientRect();
    post('seek', { position: Math.floor(state.last.total * (ev.clientX - r.left) / r.width) });
  });
  for (const b of document.querySelectorAll('#backends button')) { b.addEventListener('click', () => post('backend', { name: b.dataset.backend })); }
  $('compareBtn').addEventListener('click', () => post('compare', { on: state.compare ? 0 : 1 }));
  document.addEventListener('keydown', (ev) => {
    if (ev.target.tagName === 'INPUT' || ev.target.tagName === 'SELECT' || ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    const s = $('speed');
    switch (ev.key) {
      case ' ': $('play').click(); break;
      case '.': case 'ArrowRight': $('step').click(); break;
      case 'n': $('stepN').click(); break;
      case 'r': $('restart').click(); break;
      case 'g': $('seek').click(); break;
      case 'c': $('compareBtn').click(); break;
      case '1': case '2': case '3': post('backend', { name: ['slub', 'slab', 'slob'][Number(ev.key) - 1] }); break;
      case '[': s.selectedIndex = Math.max(0, s.selectedIndex - 1); s.dispatchEvent(new Event('change')); break;
      case ']': s.selectedIndex = Math.min(s.options.length - 1, s.selectedIndex + 1); s.dispatchEvent(new Event('change')); break;
      default: return;
    }
    ev.preventDefault();
  });
})();
