// callstream agent console: the call list (/console) and one live call (/console/{callId}).
// Plain JavaScript, no dependencies. Event text is only ever written with textContent.
"use strict";

(() => {
  const byId = (id) => document.getElementById(id);

  // An element with attributes and (escaped) text: el("span", {class: "x"}, "text").
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== undefined && value !== null) node.setAttribute(name, String(value));
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function formatTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
  }

  function formatOffset(ms) {
    const s = Math.max(0, Number(ms) || 0) / 1000;
    const m = Math.floor(s / 60);
    return `${String(m).padStart(2, "0")}:${(s - m * 60).toFixed(1).padStart(4, "0")}`;
  }

  // ---------------------------------------------------------------- the call list

  function initIndex() {
    const body = byId("calls-body");
    const status = byId("calls-status");
    let lastStatus = "";

    function setStatus(text) {
      if (text !== lastStatus) {
        lastStatus = text;
        status.textContent = text;
      }
    }

    function render(calls) {
      calls.sort((a, b) => (b.live - a.live) || String(b.startedAt).localeCompare(String(a.startedAt)));
      const rows = calls.map((c) => {
        const tr = el("tr", { "data-call-id": c.callId, "data-live": c.live ? "true" : "false" });
        const cell = el("td");
        cell.append(el("a", { href: "/console/" + encodeURIComponent(c.callId) }, c.callId));
        tr.append(cell);
        const state = el("td");
        state.append(el("span", { class: c.live ? "pill live" : "pill ended" }, c.live ? "Live" : "Ended"));
        tr.append(state);
        tr.append(el("td", {}, formatTime(c.startedAt)));
        tr.append(el("td", {}, c.endedAt ? formatTime(c.endedAt) : c.live ? "in progress" : "—"));
        tr.append(el("td", {}, c.mode || "—"));
        tr.append(el("td", { class: "num" }, c.lastSeq ?? 0));
        return tr;
      });
      body.replaceChildren(...rows);
      const live = calls.filter((c) => c.live).length;
      setStatus(calls.length === 0 ? "No calls yet." : `${calls.length} ${calls.length === 1 ? "call" : "calls"}, ${live} live.`);
    }

    async function load() {
      try {
        // With API tokens configured, the browser sends the console's cookie (set by /console?token=).
        const response = await fetch("/calls?limit=100", { headers: { accept: "application/json" } });
        if (response.status === 401) {
          setStatus("Not authorized: open the console as /console?token=YOUR_TOKEN.");
          return;
        }
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const doc = await response.json();
        render(Array.isArray(doc.calls) ? doc.calls : []);
      } catch (err) {
        setStatus(`Could not load the calls (${err.message}); retrying.`);
      }
    }

    byId("refresh").addEventListener("click", load);
    load();
    setInterval(load, 5000);
  }

  // ---------------------------------------------------------------- one call

  const ROLE_NAMES = { agent: "Agent", customer: "Customer" };
  const TRIGGERS = {
    intent: "a payment phrase",
    digits: "a card-like number",
    dtmf: "keypad tones",
    manual: "the agent",
    phrase: "a closing phrase",
    timeout: "a time limit (or the end of the call)",
  };

  function roleName(role) {
    return ROLE_NAMES[role] || "Speaker";
  }

  function sentimentWord(score) {
    if (score >= 0.05) return "positive";
    if (score <= -0.05) return "negative";
    return "neutral";
  }

  function initCall() {
    const callId = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop() || "");
    const encodedId = encodeURIComponent(callId);
    document.title = `Call ${callId} — callstream agent console`;
    byId("call-id").textContent = callId;

    const transcript = byId("transcript");
    const connection = byId("connection");
    const banner = byId("banner");
    const pauseButton = byId("pause");
    const resumeButton = byId("resume");
    const controlStatus = byId("control-status");
    const consultSection = byId("consult");
    const expertSelect = byId("expert");
    const askButton = byId("consult-ask");
    const consultStatus = byId("consult-status");

    let lastSeq = 0; // the last seq applied: every (re)connection asks for what came after it
    let generation = 0; // the socket whose messages count; older ones are ignored
    let backoff = 500;
    let ended = false;
    let socket = null;
    let reconnectTimer = null;
    let busy = false;
    let consultBusy = false;
    const expertNames = new Map(); // teamsUserId -> name (GET /experts)
    const consults = new Map(); // teamsUserId -> the list item showing that expert's consult

    const utterances = new Map(); // utteranceId -> {li, text, state, startMs, sentiment, translations}
    const pendingSentiment = new Map();
    const pendingTranslations = new Map();
    const roles = new Map(); // participant -> role
    const gauges = new Map(); // participant -> {box, label, meter, value}
    const payment = { open: false, trigger: null };
    const recording = { state: "unknown", detail: "" };
    // callstream's own recorder (CALLSTREAM_RECORDER=local): its recording.* events carry
    // recordingId "local". "off" until one arrives; "paused" while a payment is cut out.
    const localRecording = { state: "off", detail: "" };

    // -- connection

    function setConnection(state, text) {
      connection.dataset.state = state;
      if (connection.textContent !== text) connection.textContent = text;
    }

    function connect() {
      reconnectTimer = null;
      const gen = ++generation;
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(`${scheme}//${location.host}/calls/${encodedId}/events?since=${lastSeq}`);
      socket = ws;
      ws.onopen = () => {
        if (gen !== generation) return;
        setConnection("live", lastSeq ? "Live" : "Connected — waiting for the call");
      };
      ws.onmessage = (message) => {
        if (gen !== generation) return;
        let ev;
        try {
          ev = JSON.parse(message.data);
        } catch {
          return;
        }
        if (ev.type === "lagged") {
          // Events were dropped for this page: fetch them again from the store.
          notice(`Catching up on events ${ev.missedFrom}–${ev.missedTo}.`);
          generation++;
          ws.close();
          scheduleReconnect(0);
          return;
        }
        if (typeof ev.seq !== "number" || ev.seq <= lastSeq) return; // already applied
        lastSeq = ev.seq;
        document.body.dataset.lastSeq = String(lastSeq);
        backoff = 500;
        if (connection.dataset.state !== "live" || connection.textContent !== "Live") setConnection("live", "Live");
        try {
          apply(ev);
        } catch (err) {
          console.error("console: could not show event", ev.type, err);
        }
      };
      ws.onclose = (event) => {
        if (gen !== generation) return;
        socket = null;
        if (ended) return;
        if (event.code === 1008) {
          // The token was refused: retrying cannot help until the page is opened with a good one.
          setConnection("unauthorized", "Not authorized: open the console as /console?token=YOUR_TOKEN.");
          return;
        }
        scheduleReconnect();
      };
    }

    function scheduleReconnect(delay) {
      if (ended || reconnectTimer !== null) return;
      const wait = delay ?? backoff;
      if (delay === undefined) backoff = Math.min(backoff * 2, 3000);
      if (lastSeq === 0) setConnection("waiting", "Waiting for the call to start…");
      else setConnection("reconnecting", "Reconnecting…");
      reconnectTimer = setTimeout(connect, wait);
    }

    window.addEventListener("online", () => {
      if (!socket && !ended) {
        clearTimeout(reconnectTimer);
        reconnectTimer = null;
        connect();
      }
    });

    // -- events

    function apply(ev) {
      if (ev.recordingId === "local" && ev.type.startsWith("recording.")) {
        showLocalRecording(ev);
        return;
      }
      switch (ev.type) {
        case "call.started":
          document.body.dataset.callMode = ev.mode || "";
          break;
        case "participant.joined":
          roles.set(ev.participant, ev.role);
          if (gauges.has(ev.participant)) labelGauge(ev.participant);
          break;
        case "transcript.partial":
        case "transcript.final":
          showTranscript(ev);
          break;
        case "sentiment":
          showSentiment(ev);
          break;
        case "translation":
          showTranslation(ev);
          break;
        case "payment.started":
          payment.open = true;
          payment.trigger = ev.trigger;
          renderBanner();
          break;
        case "payment.ended":
          payment.open = false;
          payment.trigger = ev.trigger;
          renderBanner();
          break;
        case "recording.paused":
          recording.state = "paused";
          recording.detail = latencyText("Recording paused", ev);
          renderBanner();
          break;
        case "recording.resumed":
          recording.state = "active";
          recording.detail = latencyText("Recording resumed", ev);
          renderBanner();
          break;
        case "recording.error":
          if (ev.error === "unconfirmed") {
            // ACS accepted the request but has not reported the new state: as far as anyone
            // knows the recording has not changed; the pipeline keeps asking.
            recording.state = "unconfirmed";
            recording.detail = `ACS has not confirmed the ${payment.open ? "pause" : "resume"} (attempt ${ev.attempt || "?"}); asking again.`;
          } else {
            recording.state = "error";
            recording.detail = `Recording control failed (attempt ${ev.attempt || "?"}): ${ev.error || "unknown error"}`;
          }
          notice(recording.detail);
          renderBanner();
          break;
        case "consult.requested":
        case "consult.added":
        case "consult.failed":
          showConsult(ev);
          break;
        case "speech.error":
          notice(`Speech recognition error for ${roleName(roles.get(ev.participant))}: ${ev.error || "unknown"}`);
          break;
        case "summary":
          byId("summary").textContent = ev.text || "";
          byId("summary-section").hidden = false;
          break;
        case "call.ended":
          ended = true;
          document.body.dataset.ended = "true";
          pauseButton.disabled = true;
          resumeButton.disabled = true;
          expertSelect.disabled = true;
          askButton.disabled = true;
          setConnection("ended", `Call ended (${ev.reason || "ended"})`);
          renderBanner();
          break;
        default:
          break;
      }
    }

    function showLocalRecording(ev) {
      if (ev.type === "recording.paused") {
        localRecording.state = "paused";
        localRecording.detail = "callstream's own recording: the payment is being cut out (silence), nothing of it is written.";
      } else if (ev.type === "recording.resumed") {
        localRecording.state = "active";
        localRecording.detail = "callstream's own recording: on; the payment was cut out.";
      } else {
        localRecording.state = "error";
        localRecording.detail = `callstream's own recording: ${ev.error || "error"}`;
        notice(localRecording.detail);
      }
      renderBanner();
    }

    function latencyText(what, ev) {
      const parts = [what];
      if (typeof ev.latencyMs === "number") parts.push(`${Math.round(ev.latencyMs)} ms after the trigger`);
      if (ev.attempt) parts.push(`attempt ${ev.attempt}`);
      return parts.join(", ") + ".";
    }

    // Text with redaction tags such as [CREDIT_CARD] set apart; every piece via textContent.
    function fillText(node, text) {
      const pieces = String(text || "").split(/(\[[A-Z][A-Z0-9_]*\])/);
      node.replaceChildren(
        ...pieces.filter((p) => p !== "").map((p) => (/^\[[A-Z][A-Z0-9_]*\]$/.test(p) ? el("span", { class: "tag" }, p) : document.createTextNode(p))),
      );
    }

    function newBubble(ev) {
      const role = ev.role || roles.get(ev.participant) || "unknown";
      const li = el("li", {
        class: "bubble",
        "data-role": role,
        "data-utterance-id": ev.utteranceId,
        "data-participant": ev.participant,
        "data-start-ms": ev.startMs,
      });
      const meta = el("p", { class: "meta" });
      meta.append(el("span", { class: "who" }, roleName(role)), " ");
      meta.append(el("span", { class: "at" }, formatOffset(ev.startMs)), " ");
      const live = el("span", { class: "live-label" }, "speaking…");
      meta.append(live, " ");
      const sentiment = el("span", { class: "sentiment", hidden: "" });
      meta.append(sentiment);
      const text = el("p", { class: "text" });
      if (ev.language) text.lang = ev.language;
      const translations = el("ul", { class: "translations", "aria-label": "Translations", hidden: "" });
      li.append(meta, text, translations);
      const u = { li, text, live, sentiment, translations, state: "", startMs: Number(ev.startMs) || 0, partials: 0 };
      utterances.set(ev.utteranceId, u);
      // In speaking order: usually at the end, before any later utterance otherwise.
      let next = null;
      for (let node = transcript.lastElementChild; node; node = node.previousElementSibling) {
        if (Number(node.dataset.startMs) <= u.startMs) break;
        next = node;
      }
      transcript.insertBefore(li, next);
      byId("transcript-empty").hidden = true;
      if (pendingSentiment.has(ev.utteranceId)) {
        setSentiment(u, pendingSentiment.get(ev.utteranceId));
        pendingSentiment.delete(ev.utteranceId);
      }
      for (const t of pendingTranslations.get(ev.utteranceId) || []) addTranslation(u, t);
      pendingTranslations.delete(ev.utteranceId);
      return u;
    }

    function showTranscript(ev) {
      const nearBottom = isNearBottom();
      let u = utterances.get(ev.utteranceId);
      if (u && u.state === "final" && ev.type === "transcript.partial") return; // never undo a final
      if (!u) u = newBubble(ev);
      fillText(u.text, ev.text);
      u.li.dataset.seq = String(ev.seq);
      if (ev.type === "transcript.partial") {
        u.state = "partial";
        u.partials += 1;
        u.li.dataset.partials = String(u.partials);
        u.li.setAttribute("aria-busy", "true"); // announced once, when the final lands
      } else {
        if (u.state === "partial") u.li.dataset.replacedPartial = "true";
        u.state = "final";
        u.li.removeAttribute("aria-busy");
        u.live.remove();
        if (typeof ev.confidence === "number") u.li.dataset.confidence = ev.confidence.toFixed(2);
      }
      u.li.dataset.state = u.state;
      if (nearBottom) u.li.scrollIntoView({ block: "nearest" });
    }

    function isNearBottom() {
      return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 120;
    }

    function setSentiment(u, ev) {
      const label = String(ev.label || sentimentWord(ev.score));
      u.sentiment.dataset.label = label;
      u.li.dataset.sentiment = label;
      const score = typeof ev.score === "number" ? ` (${ev.score >= 0 ? "+" : ""}${ev.score.toFixed(2)})` : "";
      u.sentiment.replaceChildren(el("span", { class: "visually-hidden" }, "Sentiment: "), label);
      u.sentiment.title = `Sentiment ${label}${score}`;
      u.sentiment.hidden = false;
    }

    function showSentiment(ev) {
      const u = utterances.get(ev.utteranceId);
      if (u) setSentiment(u, ev);
      else pendingSentiment.set(ev.utteranceId, ev);
      const rolling = typeof ev.rollingScore === "number" ? ev.rollingScore : ev.score;
      if (typeof rolling === "number" && ev.participant) setGauge(ev.participant, rolling);
    }

    function gaugeFor(participant) {
      let g = gauges.get(participant);
      if (g) return g;
      const id = `gauge-${gauges.size + 1}`;
      const box = el("div", { class: "gauge", "data-participant": participant });
      const label = el("label", { for: id });
      const meter = el("meter", { id, min: "-1", max: "1", low: "-0.05", high: "0.05", optimum: "1", value: "0" });
      const value = el("span", { class: "gauge-value", "aria-hidden": "true" });
      const track = el("div", { class: "gauge-row" });
      track.append(meter, value);
      box.append(label, track);
      byId("gauges").append(box);
      byId("gauges-empty").hidden = true;
      g = { box, label, meter, value };
      gauges.set(participant, g);
      labelGauge(participant);
      return g;
    }

    function labelGauge(participant) {
      const g = gauges.get(participant);
      const role = roles.get(participant) || "unknown";
      g.box.dataset.role = role;
      g.label.replaceChildren(el("span", { class: "who" }, roleName(role)), " ", el("span", { class: "participant" }, participant));
    }

    function setGauge(participant, score) {
      const g = gaugeFor(participant);
      const clamped = Math.max(-1, Math.min(1, score));
      const word = sentimentWord(clamped);
      const shown = `${clamped >= 0 ? "+" : ""}${clamped.toFixed(2)}`;
      g.meter.value = clamped;
      g.meter.textContent = `${shown} ${word}`;
      g.meter.setAttribute("aria-valuetext", `${shown}, ${word}`);
      g.value.textContent = `${shown} ${word}`;
      g.box.dataset.score = shown;
      g.box.dataset.label = word;
    }

    function addTranslation(u, ev) {
      const lang = String(ev.language || "");
      let item = u.translations.querySelector(`li[data-language="${CSS.escape(lang)}"]`);
      if (!item) {
        item = el("li", { "data-language": lang });
        item.append(el("span", { class: "lang" }, lang.toUpperCase()), " ", el("span", { class: "translated", lang: lang || undefined }));
        u.translations.append(item);
      }
      fillText(item.querySelector(".translated"), ev.text);
      u.translations.hidden = false;
    }

    function showTranslation(ev) {
      const u = utterances.get(ev.utteranceId);
      if (u) addTranslation(u, ev);
      else {
        const list = pendingTranslations.get(ev.utteranceId) || [];
        list.push(ev);
        pendingTranslations.set(ev.utteranceId, list);
      }
    }

    function renderBanner() {
      // With no ACS recording in sight (the demo), callstream's own recorder drives the banner.
      const shown = recording.state === "unknown" && localRecording.state !== "off" ? localRecording : recording;
      banner.dataset.payment = payment.open ? "open" : "closed";
      banner.dataset.recording = shown.state;
      banner.dataset.localRecording = localRecording.state;
      let text;
      const details = [];
      if (ended) {
        text = payment.open ? "Call ended during a payment" : "Call ended";
      } else if (payment.open) {
        if (shown.state === "paused") text = "Payment in progress — recording paused";
        else if (shown.state === "error" && shown === localRecording) text = "Payment in progress — part of it was written before the cut (exposure on the audit)";
        else if (shown.state === "error") text = "Payment in progress — pausing the recording failed, retrying";
        else if (shown.state === "unconfirmed") text = "Payment in progress — recording NOT confirmed paused, retrying";
        else text = "Payment in progress — recording not yet confirmed paused";
        details.push(`Opened by ${TRIGGERS[payment.trigger] || payment.trigger || "the pipeline"}; digits are hidden until it closes.`);
      } else if (shown.state === "paused") {
        text = "Payment ended — resuming the recording";
      } else if (shown.state === "unconfirmed") {
        text = "Payment ended — recording state not confirmed by ACS, retrying";
      } else if (shown.state === "error") {
        text = "Recording control error";
      } else if (shown.state === "active") {
        text = "No payment in progress — recording on";
      } else {
        text = "No payment in progress";
      }
      if (!payment.open && payment.trigger) details.push(`The last payment window was closed by ${TRIGGERS[payment.trigger] || payment.trigger}.`);
      if (recording.detail) details.push(recording.detail);
      if (localRecording.detail) details.push(localRecording.detail);
      const textNode = byId("banner-text");
      if (textNode.textContent !== text) textNode.textContent = text;
      byId("banner-detail").textContent = details.join(" ");
    }

    function notice(text) {
      const list = byId("notices");
      list.append(el("li", {}, text));
      while (list.children.length > 50) list.firstElementChild.remove();
    }

    // -- recording control

    async function control(action) {
      if (busy) return;
      busy = true;
      pauseButton.disabled = true;
      resumeButton.disabled = true;
      controlStatus.dataset.result = "pending";
      controlStatus.textContent = action === "pause" ? "Asking to pause the recording…" : "Asking to resume the recording…";
      let result = "error";
      let text;
      try {
        const response = await fetch(`/calls/${encodedId}/recording/${action}`, {
          method: "POST",
          headers: { "content-type": "application/json", accept: "application/json" },
          body: "{}",
        });
        if (response.status === 202) {
          result = "changed";
          text = action === "pause"
            ? "Pause requested: the payment window is open and the recording is being paused."
            : "Resume requested: the payment window is closed and the recording is being resumed.";
        } else if (response.status === 200) {
          result = "unchanged";
          text = action === "pause" ? "Already paused: a payment window is open." : "Nothing to resume: no payment window is open.";
        } else if (response.status === 404) {
          text = "This call is not live any more.";
        } else if (response.status === 401) {
          text = "Not authorized: the console's token was refused.";
        } else {
          text = `The request failed (HTTP ${response.status}).`;
        }
      } catch (err) {
        text = `The request failed (${err.message}).`;
      } finally {
        busy = false;
        pauseButton.disabled = ended;
        resumeButton.disabled = ended;
      }
      controlStatus.dataset.result = result;
      controlStatus.textContent = text;
    }

    pauseButton.addEventListener("click", () => control("pause"));
    resumeButton.addEventListener("click", () => control("resume"));

    // -- asking a Teams expert into the call (POST /calls/{id}/consult)

    const CONSULT_WORDS = {
      requested: "asked to join…",
      added: "joined the call",
      failed: "could not be added",
    };

    function showConsult(ev) {
      const state = ev.type.slice("consult.".length); // requested | added | failed
      const id = String(ev.teamsUserId || "");
      let li = consults.get(id);
      if (!li) {
        li = el("li", { "data-teams-user-id": id });
        byId("consults").append(li);
        consults.set(id, li);
      }
      const name = ev.displayName || expertNames.get(id) || id;
      li.dataset.state = state;
      const words = state === "failed" ? `${CONSULT_WORDS.failed}: ${ev.error || "unknown error"}` : CONSULT_WORDS[state] || state;
      li.replaceChildren(el("span", { class: "who" }, name), ` — ${words}`);
      consultSection.dataset.state = state;
      if (state === "failed") notice(`${name} ${words}.`);
    }

    function canAsk() {
      return !ended && expertNames.size > 0 && !consultBusy;
    }

    async function loadExperts() {
      try {
        const response = await fetch("/experts", { headers: { accept: "application/json" } });
        if (response.status === 401 || response.status === 403) {
          consultSection.dataset.available = "false";
          consultStatus.textContent = "Asking an expert is not available with this console's token.";
          return;
        }
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const doc = await response.json();
        const experts = Array.isArray(doc.experts) ? doc.experts : [];
        expertNames.clear();
        for (const e of experts) expertNames.set(String(e.teamsUserId), String(e.name));
        expertSelect.replaceChildren(...experts.map((e) => el("option", { value: e.teamsUserId }, e.name)));
        consultSection.dataset.available = experts.length ? "true" : "false";
        consultStatus.textContent = experts.length ? "" : "No experts are configured (CALLSTREAM_EXPERTS).";
      } catch (err) {
        consultStatus.textContent = `Could not load the experts (${err.message}).`;
      }
      expertSelect.disabled = !canAsk();
      askButton.disabled = !canAsk();
    }

    async function askExpert() {
      if (!canAsk()) return;
      const teamsUserId = expertSelect.value;
      const name = expertNames.get(teamsUserId);
      if (!name) return;
      consultBusy = true;
      askButton.disabled = true;
      consultStatus.dataset.result = "pending";
      consultStatus.textContent = `Asking ${name} to join…`;
      let result = "error";
      let text;
      try {
        const response = await fetch(`/calls/${encodedId}/consult`, {
          method: "POST",
          headers: { "content-type": "application/json", accept: "application/json" },
          body: JSON.stringify({ teamsUserId, displayName: name }),
        });
        if (response.status === 202) {
          result = "accepted";
          text = `${name} has been asked to join; the answer shows below.`;
        } else if (response.status === 404) {
          text = "This call is not live (yet, or any more).";
        } else if (response.status === 503) {
          text = "Experts cannot be added: ACS Call Automation is not configured.";
        } else if (response.status === 403) {
          text = "This console's token may not ask that expert into the call.";
        } else if (response.status === 401) {
          text = "Not authorized: the console's token was refused.";
        } else {
          text = `The request failed (HTTP ${response.status}).`;
        }
      } catch (err) {
        text = `The request failed (${err.message}).`;
      } finally {
        consultBusy = false;
        askButton.disabled = !canAsk();
      }
      consultStatus.dataset.result = result;
      consultStatus.textContent = text;
    }

    askButton.addEventListener("click", askExpert);

    renderBanner();
    connect();
    loadExperts();
  }

  const page = document.body.dataset.page;
  if (page === "index") initIndex();
  else if (page === "call") initCall();
})();
