// callstream supervisors' wallboard (/console/wallboard): every live call, live over the event
// stream of all calls (WS /events?since=0), and the recent ended calls with their categories.
// Plain JavaScript, no dependencies. Event text is only ever written with textContent.
"use strict";

(() => {
  const byId = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg"; // a namespace name, never fetched

  // An element with attributes and (escaped) text: el("span", {class: "x"}, "text").
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== undefined && value !== null) node.setAttribute(name, String(value));
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  }

  // Writes only when something changed: the board updates many times a second.
  function setText(node, text) {
    const value = String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  function setData(node, name, value) {
    const v = String(value);
    if (node.dataset[name] !== v) node.dataset[name] = v;
  }

  const RECENT_MAX = 20;
  const POLL_MS = 8000;
  const RENDER_MS = 150;
  const SEVERITIES = ["info", "low", "medium", "high", "critical"];
  const severityRank = (s) => SEVERITIES.indexOf(String(s));
  const RECORDING_WORDS = {
    unknown: "—",
    active: "Recording",
    paused: "Paused",
    unconfirmed: "Not confirmed",
    error: "Error",
  };
  const RECORDING_RANK = { unknown: 0, active: 1, paused: 2, unconfirmed: 3, error: 4 };
  const STATE_WORDS = { live: "Live", payment: "Payment window open", ended: "Ended" };
  const STATE_RANK = { ended: 0, live: 1, payment: 2 };
  const CONSULT_WORDS = {
    "consult.requested": "Expert asked to join",
    "consult.added": "Expert joined",
    "consult.failed": "Expert could not join",
  };
  // The direction a column sorts in when first clicked: what needs attention first.
  const FIRST_DIRECTION = {
    call: "ascending", agent: "ascending", duration: "descending", state: "descending",
    sentiment: "ascending", payment: "descending", recording: "descending", alerts: "descending",
  };

  function formatDuration(ms) {
    const total = Math.max(0, Math.floor((Number(ms) || 0) / 1000));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = String(total % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  function formatScore(score) {
    if (typeof score !== "number" || !Number.isFinite(score)) return "—";
    const clamped = Math.max(-1, Math.min(1, score));
    return `${clamped >= 0 ? "+" : "−"}${Math.abs(clamped).toFixed(2)}`;
  }

  function sentimentWord(score) {
    if (typeof score !== "number") return "none";
    if (score >= 0.05) return "positive";
    if (score <= -0.05) return "negative";
    return "neutral";
  }

  function formatClock(ms) {
    if (!Number.isFinite(ms)) return "—";
    return new Date(ms).toLocaleTimeString();
  }

  function parseTime(iso) {
    const t = Date.parse(iso);
    return Number.isNaN(t) ? null : t;
  }

  // ---------------------------------------------------------------- state

  const calls = new Map(); // callId -> call state (live, or ended but not yet moved)
  const recent = new Map(); // callId -> ended call {callId, startedAt, endedAt, reason, agent, analytics, alerts}
  const analyticsTried = new Map(); // callId -> attempts at GET /calls/{id}/analytics for an ended call
  let skewMs = null; // local clock minus the server's, estimated from the freshest event
  let sortKey = "alerts";
  let sortDirection = "descending";
  let filterText = "";
  let alertingOnly = false;
  let inPayment = false;

  function newCall(callId) {
    return {
      callId,
      lastSeq: 0,
      startedAt: null,
      ended: false,
      endedAt: null,
      reason: null,
      roles: new Map(), // participant -> role
      agent: null,
      rolling: { agent: null, customer: null },
      analytics: null,
      payment: { open: false, trigger: null },
      recording: "unknown", // the ACS recording
      localRecording: "off", // callstream's own recorder (recordingId "local")
      consult: null,
      alerts: { count: 0, latest: null, maxRank: -1 },
      catchingUp: null, // while a hole named by `lagged` is fetched again: {target, buffer, socket}
      row: null,
      dirty: true,
    };
  }

  function callFor(callId) {
    let c = calls.get(callId);
    if (!c) {
      c = newCall(callId);
      calls.set(callId, c);
    }
    return c;
  }

  function stateOf(c) {
    if (c.ended) return "ended";
    return c.payment.open ? "payment" : "live";
  }

  function recordingOf(c) {
    // With no ACS recording in sight, callstream's own recorder stands for the recording.
    if (c.recording === "unknown" && c.localRecording !== "off") return c.localRecording;
    return c.recording;
  }

  function durationOf(c) {
    if (c.startedAt !== null) {
      const end = c.ended && c.endedAt !== null ? c.endedAt : Date.now() - (skewMs || 0);
      return Math.max(0, end - c.startedAt);
    }
    return c.analytics && typeof c.analytics.durationMs === "number" ? c.analytics.durationMs : 0;
  }

  function customerScore(c) {
    if (typeof c.rolling.customer === "number") return c.rolling.customer;
    return typeof c.rolling.agent === "number" ? c.rolling.agent : null;
  }

  // ---------------------------------------------------------------- events

  function roleOf(c, participant) {
    return c.roles.get(participant) || "unknown";
  }

  function applyAnalytics(c, doc) {
    if (!doc || typeof doc !== "object") return;
    const before = c.analytics;
    // An answer fetched over HTTP may be older than an event already applied.
    if (before && typeof before.durationMs === "number" && typeof doc.durationMs === "number" && doc.durationMs < before.durationMs && !doc.final) return;
    c.analytics = doc;
  }

  function apply(c, ev) {
    if (typeof ev.type === "string" && ev.type.startsWith("recording.") && ev.recordingId === "local") {
      c.localRecording = ev.type === "recording.paused" ? "paused" : ev.type === "recording.resumed" ? "active" : "error";
      return;
    }
    switch (ev.type) {
      case "call.started": {
        const t = parseTime(ev.time);
        if (t !== null) c.startedAt = t;
        break;
      }
      case "participant.joined":
        if (ev.participant) {
          c.roles.set(ev.participant, ev.role || "unknown");
          if (ev.role === "agent" && !c.agent) c.agent = ev.participant;
        }
        break;
      case "transcript.partial":
      case "transcript.final":
        if (ev.participant && ev.role && !c.roles.has(ev.participant)) c.roles.set(ev.participant, ev.role);
        return; // nothing shown: no render
      case "sentiment": {
        const role = roleOf(c, ev.participant);
        const score = typeof ev.rollingScore === "number" ? ev.rollingScore : ev.score;
        if ((role === "agent" || role === "customer") && typeof score === "number") c.rolling[role] = score;
        break;
      }
      case "analytics":
        applyAnalytics(c, ev);
        break;
      case "alert": {
        c.alerts.count += 1;
        c.alerts.latest = { severity: String(ev.severity || "info"), category: String(ev.category || ""), rule: String(ev.rule || ""), role: roleOf(c, ev.participant) };
        c.alerts.maxRank = Math.max(c.alerts.maxRank, severityRank(ev.severity));
        break;
      }
      case "payment.started":
        c.payment = { open: true, trigger: ev.trigger || null };
        break;
      case "payment.ended":
        c.payment = { open: false, trigger: ev.trigger || null };
        break;
      case "recording.paused":
        c.recording = "paused";
        break;
      case "recording.resumed":
        c.recording = "active";
        break;
      case "recording.error":
        c.recording = ev.error === "unconfirmed" ? "unconfirmed" : "error";
        break;
      case "consult.requested":
      case "consult.added":
      case "consult.failed":
        c.consult = { type: ev.type, name: String(ev.displayName || "") };
        break;
      case "call.ended": {
        c.ended = true;
        c.reason = ev.reason || null;
        const t = parseTime(ev.time);
        c.endedAt = t;
        endCall(c);
        return;
      }
      default:
        return;
    }
    markDirty(c);
  }

  // Applies an event once, in seq order: what a call has applied is never applied again.
  function applyIfNew(c, ev) {
    if (typeof ev.seq !== "number" || ev.seq <= c.lastSeq) return;
    c.lastSeq = ev.seq;
    try {
      apply(c, ev);
    } catch (err) {
      console.error("wallboard: could not apply event", ev.type, err);
    }
  }

  function dispatch(ev) {
    if (!ev || typeof ev !== "object" || typeof ev.callId !== "string" || !ev.callId) return;
    if (recent.has(ev.callId) && !calls.has(ev.callId)) return; // over, and shown as such
    const t = parseTime(ev.time);
    if (t !== null && ev.type !== "lagged") {
      const delta = Date.now() - t;
      if (skewMs === null || delta < skewMs) skewMs = delta;
    }
    const c = callFor(ev.callId);
    if (ev.type === "lagged") {
      lagged(c, ev);
      return;
    }
    if (c.catchingUp) {
      c.catchingUp.buffer.push(ev);
      return;
    }
    applyIfNew(c, ev);
  }

  // Events of this call were dropped for this page: refetch its analytics (trend, categories)
  // and fetch the missed range again from the store over the call's own stream, holding back
  // what the firehose brings meanwhile so that everything is applied in seq order.
  function lagged(c, ev) {
    const target = Number(ev.missedTo) || Number(ev.seq) || 0;
    document.body.dataset.lagged = String(Number(document.body.dataset.lagged || 0) + 1);
    fetchAnalytics(c.callId).then((doc) => {
      if (doc && calls.get(c.callId) === c) {
        applyAnalytics(c, doc);
        markDirty(c);
      }
    });
    if (target <= c.lastSeq) return;
    if (c.catchingUp) {
      c.catchingUp.target = Math.max(c.catchingUp.target, target);
      return;
    }
    const catching = { target, buffer: [], socket: null, timer: null };
    c.catchingUp = catching;
    const finish = () => {
      if (c.catchingUp !== catching) return;
      c.catchingUp = null;
      clearTimeout(catching.timer);
      if (catching.socket) {
        catching.socket.onmessage = catching.socket.onclose = catching.socket.onerror = null;
        catching.socket.close();
      }
      if (c.lastSeq < catching.target) c.lastSeq = catching.target; // the store lacks it too
      catching.buffer.sort((a, b) => a.seq - b.seq);
      for (const held of catching.buffer) applyIfNew(c, held);
      markDirty(c);
    };
    try {
      const ws = new WebSocket(`${wsBase()}/calls/${encodeURIComponent(c.callId)}/events?since=${c.lastSeq}`);
      catching.socket = ws;
      ws.onmessage = (message) => {
        let got;
        try {
          got = JSON.parse(message.data);
        } catch {
          return;
        }
        if (got.type === "lagged") {
          if (typeof got.missedTo === "number" && got.missedTo > c.lastSeq) c.lastSeq = got.missedTo;
        } else {
          applyIfNew(c, got);
        }
        if (c.lastSeq >= catching.target || c.ended) finish();
      };
      ws.onclose = finish;
      ws.onerror = finish;
    } catch {
      finish();
      return;
    }
    catching.timer = setTimeout(finish, 15000);
  }

  function endCall(c) {
    // The call moves from the board to the recent ended calls, with what it was seen with.
    calls.delete(c.callId);
    if (c.catchingUp) {
      clearTimeout(c.catchingUp.timer);
      if (c.catchingUp.socket) c.catchingUp.socket.close();
      c.catchingUp = null;
    }
    if (c.row) c.row.tr.remove();
    const entry = recent.get(c.callId) || { callId: c.callId };
    entry.startedAt = entry.startedAt ?? c.startedAt;
    entry.endedAt = entry.endedAt ?? c.endedAt;
    entry.reason = c.reason;
    entry.agent = c.agent;
    entry.alerts = c.alerts;
    if (c.analytics) entry.analytics = c.analytics;
    recent.set(c.callId, entry);
    if (!(c.analytics && c.analytics.final)) analyticsTried.delete(c.callId);
    scheduleRender();
    renderRecentSoon();
    setTimeout(loadCalls, 300); // the store's record of the end, and the final analytics
  }

  // ---------------------------------------------------------------- the firehose

  const connection = byId("connection");
  let generation = 0;
  let socket = null;
  let reconnectTimer = null;
  let backoff = 500;
  let openedAt = null; // when the current stream opened
  let stopped = false; // unauthorized: retrying cannot help
  let everOpen = false; // until the stream first opens, "no live calls" is not known yet

  function wsBase() {
    return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}`;
  }

  function setConnection(state, text) {
    setData(connection, "state", state);
    setText(connection, text);
  }

  function connect() {
    reconnectTimer = null;
    const gen = ++generation;
    // Every live call from its first event; what this page has applied is skipped.
    const ws = new WebSocket(`${wsBase()}/events?since=0`);
    socket = ws;
    ws.onopen = () => {
      if (gen !== generation) return;
      openedAt = Date.now();
      setConnection("live", "Live");
      if (!everOpen) {
        everOpen = true;
        scheduleRender();
      }
    };
    ws.onmessage = (message) => {
      if (gen !== generation) return;
      let ev;
      try {
        ev = JSON.parse(message.data);
      } catch {
        return;
      }
      dispatch(ev);
    };
    ws.onclose = (event) => {
      if (gen !== generation) return;
      socket = null;
      if (event.code === 1008) {
        stopped = true;
        setConnection("unauthorized", "Not authorized: open the wallboard as /console/wallboard?token=YOUR_TOKEN (a supervisor's).");
        return;
      }
      // A stream that stayed up a while was fine: start again from a short wait. One that
      // the server closes right after its replay does not get the replay every 0.5 s.
      if (openedAt !== null && Date.now() - openedAt > 10000) backoff = 500;
      openedAt = null;
      scheduleReconnect();
      loadCalls(); // calls that ended while this page was away are not replayed
      recheckLive();
    };
  }

  // A call that ended while the stream was away, and is older than GET /calls's newest
  // 100, is not replayed nor listed: ask each call still shown live for its analytics,
  // whose final one says it has ended.
  async function recheckLive() {
    for (const c of [...calls.values()]) {
      if (c.ended || stopped) continue;
      const doc = await fetchAnalytics(c.callId);
      if (doc && doc.final && calls.get(c.callId) === c && !c.ended) {
        c.ended = true;
        c.endedAt = c.endedAt ?? Date.now();
        c.analytics = doc;
        endCall(c);
      }
    }
  }

  function scheduleReconnect(delay) {
    if (stopped || reconnectTimer !== null) return;
    const wait = delay ?? backoff;
    backoff = Math.min(backoff * 2, 5000);
    setConnection("reconnecting", "Reconnecting…");
    reconnectTimer = setTimeout(connect, wait);
  }

  window.addEventListener("online", () => {
    if (!socket && !stopped) {
      clearTimeout(reconnectTimer);
      reconnectTimer = null;
      connect();
    }
  });

  // ---------------------------------------------------------------- HTTP

  async function fetchAnalytics(callId) {
    try {
      const response = await fetch(`/calls/${encodeURIComponent(callId)}/analytics`, { headers: { accept: "application/json" } });
      if (!response.ok) return null;
      return await response.json();
    } catch {
      return null;
    }
  }

  const recentStatus = byId("recent-status");
  let loading = false;

  async function loadCalls() {
    if (loading || stopped) return;
    loading = true;
    try {
      const response = await fetch("/calls?limit=100", { headers: { accept: "application/json" } });
      if (response.status === 401) {
        stopped = true;
        setText(recentStatus, "Not authorized: open the wallboard as /console/wallboard?token=YOUR_TOKEN.");
        setConnection("unauthorized", "Not authorized");
        return;
      }
      if (response.status === 403) {
        setText(recentStatus, "This token may not list the calls (the wallboard is for supervisors).");
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const doc = await response.json();
      await mergeCalls(Array.isArray(doc.calls) ? doc.calls : []);
    } catch (err) {
      setText(recentStatus, `Could not load the recent calls (${err.message}); retrying.`);
    } finally {
      loading = false;
    }
  }

  async function mergeCalls(list) {
    for (const info of list) {
      if (!info || typeof info.callId !== "string") continue;
      const started = parseTime(info.startedAt);
      const ended = parseTime(info.endedAt);
      const c = calls.get(info.callId);
      if (c && c.startedAt === null && started !== null) {
        c.startedAt = started;
        markDirty(c);
      }
      if (ended === null) continue;
      if (c && !c.ended) {
        // Its call.ended came while the stream was away.
        c.ended = true;
        c.endedAt = ended;
        c.reason = info.endReason || null;
        endCall(c);
      }
      const entry = recent.get(info.callId) || { callId: info.callId };
      entry.startedAt = started ?? entry.startedAt ?? null;
      entry.endedAt = ended;
      entry.reason = info.endReason || entry.reason || null;
      recent.set(info.callId, entry);
    }
    const newest = [...recent.values()].sort((a, b) => (b.endedAt || 0) - (a.endedAt || 0));
    for (const stale of newest.slice(RECENT_MAX)) recent.delete(stale.callId);
    for (const callId of analyticsTried.keys()) if (!recent.has(callId)) analyticsTried.delete(callId);
    renderRecent();
    // The final analytics of each recent call (its categories), once each.
    for (const entry of newest.slice(0, RECENT_MAX)) {
      if (entry.analytics && entry.analytics.final) continue;
      const tried = analyticsTried.get(entry.callId) || 0;
      if (tried >= 3) continue;
      analyticsTried.set(entry.callId, tried + 1);
      const doc = await fetchAnalytics(entry.callId);
      if (doc && recent.get(entry.callId) === entry) {
        entry.analytics = doc;
        if (doc.final) analyticsTried.set(entry.callId, 3);
        renderRecent();
      }
    }
  }

  // ---------------------------------------------------------------- rendering

  const liveBody = byId("live-body");
  const liveStatus = byId("live-status");
  const liveEmpty = byId("live-empty");
  let renderTimer = null;

  function markDirty(c) {
    c.dirty = true;
    scheduleRender();
  }

  function scheduleRender() {
    if (renderTimer === null) renderTimer = setTimeout(render, RENDER_MS);
  }

  // A sparkline of the four quarter means (−1..1), one line per role, and the same as text.
  function trendNode(trend) {
    const box = el("span", { class: "trend" });
    const text = [];
    const chart = svg("svg", { viewBox: "0 0 64 24", class: "spark", "aria-hidden": "true", focusable: "false" });
    chart.append(svg("line", { x1: 0, y1: 12, x2: 64, y2: 12, class: "zero" }));
    for (const role of ["customer", "agent"]) {
      const values = trend && Array.isArray(trend[role]) ? trend[role].slice(0, 4) : [];
      const shown = values.map((v) => (typeof v === "number" ? formatScore(v) : "–"));
      text.push(`${role === "agent" ? "Agent" : "Customer"} ${shown.length ? shown.join(" ") : "–"}`);
      let run = [];
      const flush = () => {
        if (run.length > 1) chart.append(svg("polyline", { points: run.join(" "), class: `line ${role}` }));
        run = [];
      };
      values.forEach((v, i) => {
        if (typeof v !== "number") {
          flush();
          return;
        }
        const x = 8 + i * 16;
        const y = (12 - Math.max(-1, Math.min(1, v)) * 10).toFixed(1);
        run.push(`${x},${y}`);
        chart.append(svg("circle", { cx: x, cy: y, r: 2.2, class: `dot ${role}` }));
      });
      flush();
      box.dataset[role] = shown.join(" ");
    }
    box.append(chart, el("span", { class: "visually-hidden" }, `Trend by quarter: ${text.join("; ")}`));
    box.title = text.join("\n");
    return box;
  }

  function trendKey(trend) {
    return JSON.stringify(trend || null);
  }

  function buildRow(c) {
    const tr = el("tr", { "data-call-id": c.callId });
    const cells = {};
    for (const name of ["call", "agent", "duration", "state", "sentiment", "trend", "payment", "recording", "alerts"]) {
      cells[name] = el("td", { class: `col-${name}`, "data-label": name[0].toUpperCase() + name.slice(1) });
      tr.append(cells[name]);
    }
    const link = el("a", { href: "/console/" + encodeURIComponent(c.callId), class: "call-link" }, c.callId);
    cells.call.append(link);
    const statePill = el("span", { class: "pill state" });
    const consult = el("span", { class: "sub consult", hidden: "" });
    cells.state.append(statePill, consult);
    const sentiment = {};
    for (const role of ["customer", "agent"]) {
      const line = el("span", { class: "score", "data-role": role });
      line.append(el("span", { class: "who" }, role === "agent" ? "Agent" : "Cust."), " ", el("span", { class: "value" }, "—"));
      sentiment[role] = line;
      cells.sentiment.append(line);
    }
    const payment = el("span", { class: "pill payment" });
    const trigger = el("span", { class: "sub trigger" });
    cells.payment.append(payment, trigger);
    const recording = el("span", { class: "pill recording" });
    cells.recording.append(recording);
    const count = el("span", { class: "alert-count" }, "0");
    const latest = el("span", { class: "latest" });
    cells.alerts.append(count, latest);
    return { tr, cells, statePill, consult, sentiment, payment, trigger, recording, count, latest, duration: cells.duration, trendKey: null };
  }

  function renderRow(c) {
    if (!c.row) c.row = buildRow(c);
    const r = c.row;
    const state = stateOf(c);
    const rec = recordingOf(c);
    setData(r.tr, "state", state);
    setData(r.tr, "payment", c.payment.open ? "open" : "closed");
    setData(r.tr, "recording", rec);
    setData(r.tr, "alerts", c.alerts.count);
    setData(r.tr, "severity", c.alerts.maxRank >= 0 ? SEVERITIES[c.alerts.maxRank] : "none");
    setText(r.cells.agent, c.agent || "—");
    setText(r.statePill, STATE_WORDS[state]);
    setData(r.statePill, "state", state);
    if (c.consult) {
      setText(r.consult, `${CONSULT_WORDS[c.consult.type]}${c.consult.name ? ": " + c.consult.name : ""}`);
      r.consult.hidden = false;
    }
    for (const role of ["customer", "agent"]) {
      const score = c.rolling[role];
      const line = r.sentiment[role];
      setData(line, "label", sentimentWord(score));
      setData(line, "score", formatScore(score));
      setText(line.lastChild, formatScore(score));
    }
    const key = trendKey(c.analytics && c.analytics.sentimentTrend);
    if (key !== r.trendKey) {
      r.trendKey = key;
      r.cells.trend.replaceChildren(trendNode(c.analytics && c.analytics.sentimentTrend));
    }
    setText(r.payment, c.payment.open ? "Open" : "Closed");
    setData(r.payment, "payment", c.payment.open ? "open" : "closed");
    setText(r.trigger, c.payment.trigger ? `by ${c.payment.trigger}` : "");
    setText(r.recording, RECORDING_WORDS[rec] || rec);
    setData(r.recording, "recording", rec);
    setText(r.count, c.alerts.count);
    const latest = c.alerts.latest;
    if (latest) {
      setData(r.tr, "alertSeverity", latest.severity);
      setData(r.tr, "alertCategory", latest.category);
      const key2 = `${latest.severity}|${latest.category}|${latest.rule}|${latest.role}`;
      if (r.latest.dataset.key !== key2) {
        r.latest.dataset.key = key2;
        r.latest.replaceChildren(
          el("span", { class: "pill severity", "data-severity": latest.severity }, latest.severity),
          " ",
          el("span", { class: "category" }, latest.category),
          el("span", { class: "sub rule" }, latest.rule + (latest.role !== "unknown" ? ` (${latest.role})` : "")),
        );
      }
    }
    tickRow(c);
  }

  function tickRow(c) {
    setText(c.row.duration, formatDuration(durationOf(c)));
  }

  function sortValue(c) {
    switch (sortKey) {
      case "call": return c.callId;
      case "agent": return c.agent || null;
      case "duration": return durationOf(c);
      case "state": return STATE_RANK[stateOf(c)];
      case "sentiment": return customerScore(c);
      case "payment": return c.payment.open ? 1 : 0;
      case "recording": return RECORDING_RANK[recordingOf(c)] ?? 0;
      case "alerts": return c.alerts.count ? (c.alerts.maxRank + 1) * 1e6 + c.alerts.count : 0;
      default: return 0;
    }
  }

  function compare(a, b) {
    const va = sortValue(a);
    const vb = sortValue(b);
    if (va === null || vb === null) {
      if (va !== vb) return va === null ? 1 : -1; // nothing to sort by: last either way
    } else if (va !== vb) {
      const order = typeof va === "string" ? va.localeCompare(vb) : va < vb ? -1 : 1;
      return sortDirection === "ascending" ? order : -order;
    }
    return a.callId.localeCompare(b.callId);
  }

  function matches(c) {
    if (alertingOnly && c.alerts.count === 0) return false;
    if (inPayment && !c.payment.open) return false;
    if (!filterText) return true;
    const hay = [
      c.callId, c.agent || "", STATE_WORDS[stateOf(c)], c.payment.open ? "payment open" : "",
      RECORDING_WORDS[recordingOf(c)] || "",
      ...(c.alerts.latest ? [c.alerts.latest.category, c.alerts.latest.rule, c.alerts.latest.severity] : []),
      ...Object.keys((c.analytics && c.analytics.categories) || {}),
    ].join("\n").toLowerCase();
    return hay.includes(filterText);
  }

  function render() {
    renderTimer = null;
    const live = [...calls.values()].filter((c) => !c.ended);
    for (const c of live) {
      if (c.dirty || !c.row) {
        c.dirty = false;
        renderRow(c);
      }
    }
    live.sort(compare);
    // Reorder only when the order changed (a supervisor may be pointing at a row).
    const rows = live.map((c) => c.row.tr);
    const current = [...liveBody.children];
    if (rows.length !== current.length || rows.some((tr, i) => tr !== current[i])) liveBody.replaceChildren(...rows);
    let shownCount = 0;
    for (const c of live) {
      const visible = matches(c);
      if (c.row.tr.hidden === visible) c.row.tr.hidden = !visible;
      if (visible) shownCount += 1;
    }
    const payment = live.filter((c) => c.payment.open).length;
    const alerting = live.filter((c) => c.alerts.count > 0).length;
    for (const [id, n] of [["total-live", live.length], ["total-payment", payment], ["total-alerting", alerting]]) {
      setText(byId(id), n);
      setData(byId(id), "n", n);
    }
    const filtered = filterText || alertingOnly || inPayment;
    // (with no live call, the line under the table says so)
    setText(liveStatus, live.length === 0
      ? ""
      : `${live.length} live ${live.length === 1 ? "call" : "calls"}${filtered ? `, ${shownCount} shown` : ""}.`);
    liveEmpty.hidden = shownCount > 0;
    setText(liveEmpty, live.length > 0 ? "No live call matches the filter." : everOpen ? "No live calls." : "Connecting to the event stream…");
  }

  // -- recent ended calls

  const recentBody = byId("recent-body");
  let recentTimer = null;

  function renderRecentSoon() {
    if (recentTimer === null) recentTimer = setTimeout(() => { recentTimer = null; renderRecent(); }, RENDER_MS);
  }

  function renderRecent() {
    const list = [...recent.values()].sort((a, b) => (b.endedAt || 0) - (a.endedAt || 0)).slice(0, RECENT_MAX);
    const rows = list.map((entry) => {
      const analytics = entry.analytics || null;
      const categories = analytics && analytics.categories && typeof analytics.categories === "object" ? analytics.categories : {};
      const names = Object.keys(categories).sort((a, b) => (categories[b] - categories[a]) || a.localeCompare(b));
      const tr = el("tr", {
        "data-call-id": entry.callId,
        "data-state": "ended",
        "data-categories": names.join(","),
        "data-final": analytics && analytics.final ? "true" : "false",
      });
      const call = el("td", { class: "col-call", "data-label": "Call" });
      call.append(el("a", { href: "/console/" + encodeURIComponent(entry.callId), class: "call-link" }, entry.callId));
      if (entry.reason) call.append(el("span", { class: "sub" }, entry.reason));
      tr.append(call);
      tr.append(el("td", { class: "col-agent", "data-label": "Agent" }, entry.agent || "—"));
      tr.append(el("td", { "data-label": "Ended" }, formatClock(entry.endedAt)));
      const duration = entry.startedAt != null && entry.endedAt != null
        ? formatDuration(entry.endedAt - entry.startedAt)
        : analytics && typeof analytics.durationMs === "number" ? formatDuration(analytics.durationMs) : "—";
      tr.append(el("td", { class: "col-duration", "data-label": "Duration" }, duration));
      const cats = el("td", { class: "col-categories", "data-label": "Categories" });
      if (names.length === 0) cats.append(el("span", { class: "none" }, analytics ? "none" : "—"));
      for (const name of names) {
        const pill = el("span", { class: "pill category", "data-category": name });
        pill.append(el("span", { class: "name" }, name), " ", el("span", { class: "times" }, `×${categories[name]}`));
        cats.append(pill, " ");
      }
      tr.append(cats);
      const trend = el("td", { class: "col-trend", "data-label": "Trend" });
      trend.append(trendNode(analytics && analytics.sentimentTrend));
      tr.append(trend);
      const alerts = el("td", { class: "col-alerts", "data-label": "Alerts" });
      if (entry.alerts && entry.alerts.count) {
        tr.dataset.alerts = String(entry.alerts.count);
        alerts.append(el("span", { class: "alert-count" }, entry.alerts.count));
        if (entry.alerts.latest) alerts.append(" ", el("span", { class: "pill severity", "data-severity": entry.alerts.latest.severity }, entry.alerts.latest.severity));
      } else {
        alerts.textContent = entry.alerts ? "0" : "—";
      }
      tr.append(alerts);
      return tr;
    });
    recentBody.replaceChildren(...rows);
    setText(recentStatus, rows.length === 0 ? "No ended calls yet." : `The last ${rows.length} ended ${rows.length === 1 ? "call" : "calls"}, newest first.`);
  }

  // ---------------------------------------------------------------- sorting and filtering

  const headers = [...document.querySelectorAll("#live th[data-sort]")];

  function showSort() {
    for (const th of headers) {
      th.setAttribute("aria-sort", th.dataset.sort === sortKey ? sortDirection : "none");
    }
    setData(document.body, "sort", `${sortKey}-${sortDirection}`);
  }

  // The board's view is kept in the address (#sort=alerts-descending&q=...), so a wall
  // screen reloads into the same view.
  function saveView() {
    const params = new URLSearchParams();
    params.set("sort", `${sortKey}-${sortDirection}`);
    if (filterText) params.set("q", filterText);
    if (alertingOnly) params.set("alerting", "1");
    if (inPayment) params.set("payment", "1");
    history.replaceState(null, "", `${location.pathname}${location.search}#${params}`);
  }

  function loadView() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const [key, direction] = String(params.get("sort") || "").split("-");
    if (key in FIRST_DIRECTION && (direction === "ascending" || direction === "descending")) {
      sortKey = key;
      sortDirection = direction;
    }
    filterText = String(params.get("q") || "").trim().toLowerCase();
    alertingOnly = params.get("alerting") === "1";
    inPayment = params.get("payment") === "1";
    byId("filter").value = filterText;
    byId("alerting-only").checked = alertingOnly;
    byId("in-payment").checked = inPayment;
  }

  for (const th of headers) {
    th.querySelector("button").addEventListener("click", () => {
      const key = th.dataset.sort;
      if (key === sortKey) sortDirection = sortDirection === "ascending" ? "descending" : "ascending";
      else {
        sortKey = key;
        sortDirection = FIRST_DIRECTION[key];
      }
      showSort();
      saveView();
      render();
    });
  }

  byId("filter").addEventListener("input", (event) => {
    filterText = event.target.value.trim().toLowerCase();
    saveView();
    render();
  });
  byId("alerting-only").addEventListener("change", (event) => {
    alertingOnly = event.target.checked;
    saveView();
    render();
  });
  byId("in-payment").addEventListener("change", (event) => {
    inPayment = event.target.checked;
    saveView();
    render();
  });

  // ---------------------------------------------------------------- start

  loadView();
  showSort();
  render();
  renderRecent();
  setText(recentStatus, "Loading…");
  connect();
  loadCalls();
  setInterval(loadCalls, POLL_MS);
  setInterval(() => {
    // The durations tick; a board sorted by duration keeps its order right.
    for (const c of calls.values()) if (c.row && !c.ended) tickRow(c);
    if (sortKey === "duration") scheduleRender();
  }, 1000);
})();
