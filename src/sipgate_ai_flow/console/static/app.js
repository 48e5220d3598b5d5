// aiflow console: the page. Plain JavaScript, no build step, nothing loaded from the network.
// The server runs the calls (the AI Flow emulator on a real clock) and streams every message
// over /api/live; this page draws them and sends the caller's commands as JSON.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];
const Recognition = window.SpeechRecognition || window.webkitSpeechRecognition;
const synth = window.speechSynthesis || null;

const page = { info: null, calls: new Map(), selected: null, socket: null, live: false };

function clock(ms) {
  const seconds = ms / 1000;
  return `${Math.floor(seconds / 60)}:${(seconds % 60).toFixed(1).padStart(4, "0")}`;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function tag(text, kind = "") {
  return el("span", { className: `tag ${kind}`, textContent: text });
}

function banner(text) {
  const node = $("#banner");
  node.textContent = text || "";
  node.hidden = !text;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

// -- the live feed ---------------------------------------------------------------------------

function connect() {
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/live`);
  page.socket = socket;
  socket.onopen = () => {
    const status = $("#connection");
    status.textContent = "connected";
    status.className = "chip ok";
    banner("");
  };
  let backlog = true;
  socket.onmessage = (message) => {
    // The first batch is every call so far: drawn, but not played out loud again.
    page.live = !backlog;
    backlog = false;
    for (const item of JSON.parse(message.data)) handle(item);
  };
  socket.onclose = () => {
    const status = $("#connection");
    status.textContent = "disconnected";
    status.className = "chip bad";
    banner("The console server cannot be reached (stopped?). Trying again every 2 seconds…");
    setTimeout(connect, 2000);
  };
}

function handle(message) {
  if (message.type === "hello") return hello(message);
  if (message.type === "call") return addCall(message);
  const call = page.calls.get(message.call);
  if (!call) return;
  if (message.type === "entry") entry(call, message);
  else if (message.type === "reply") reply(call, message);
  else if (message.type === "state") showState(call, message.state);
  else if (message.type === "status") status(call, message);
  else if (message.type === "error") failed(call, message.message);
}

function hello(info) {
  // A (re)connection: the server sends every call again, so start from nothing.
  for (const call of page.calls.values()) stopSound(call);
  page.info = info;
  page.calls.clear();
  page.selected = null;
  $("#calls").replaceChildren();
  $("#views").replaceChildren($("#empty") || "");
  $("#target").textContent = info.target;
  $("#transport").textContent = info.transport;
  const form = $("#new-call");
  if (!form.caller_number.value) form.caller_number.value = info.caller_number;
  if (!form.flow_number.value) form.flow_number.value = info.flow_number;
}

// -- a call's view ----------------------------------------------------------------------------

function addCall(info) {
  if (page.calls.has(info.call)) return;
  const view = $("#call-template").content.firstElementChild.cloneNode(true);
  view.dataset.call = info.call;
  view.id = `call-${info.call}`;
  const session = info.session;
  $(".title", view).textContent = `Call ${info.call}`;
  $(".session", view).textContent =
    `${session.direction}, ${session.from_phone_number} → ${session.to_phone_number}`;
  $(".download-recording", view).href = `/api/calls/${info.call}/recording.jsonl`;
  $(".download-scenario", view).href = `/api/calls/${info.call}/scenario.yaml`;
  const call = {
    id: info.call, view, rows: new Map(), turns: [], ended: false, speaking: null, audio: null,
  };
  page.calls.set(info.call, call);
  wire(call);
  $("#empty")?.remove();
  $("#views").append(view);
  const item = el("li", {}, el("button", { type: "button" },
    el("span", { textContent: `Call ${info.call}` }), el("span", { className: "chip", textContent: "live" })));
  item.firstChild.addEventListener("click", () => select(info.call));
  item.dataset.call = info.call;
  $("#calls").append(item);
  call.item = item;
  select(info.call);
}

function select(id) {
  page.selected = id;
  for (const call of page.calls.values()) {
    call.view.hidden = call.id !== id;
    call.item.firstChild.classList.toggle("selected", call.id === id);
    if (call.id !== id) stopSound(call);
  }
}

function wire(call) {
  const view = call.view;
  const input = $(".say-input", view);
  $(".say", view).addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    command(call, "say", { text });
  });
  const keypad = $(".keypad", view);
  for (const key of KEYS) {
    const button = el("button", { type: "button", textContent: key });
    button.dataset.key = key;
    button.addEventListener("click", () => command(call, "press", { keys: key }));
    keypad.append(button);
  }
  $(".hangup", view).addEventListener("click", () => command(call, "hangup", {}));
  if (Recognition) {
    const mic = $(".mic", view);
    mic.hidden = false;
    mic.addEventListener("click", () => listen(call, mic));
  }
}

async function command(call, name, body) {
  try {
    await post(`/api/calls/${call.id}/${name}`, body);
  } catch (error) {
    if (!call.failed) showError(call, error.message); // a failed call already says why
  }
}

function showError(call, text) {
  const node = $(".call-error", call.view);
  node.textContent = text;
  node.hidden = !text;
}

function listen(call, mic) {
  // The browser's speech recognition, where it has one: what it hears is said like typed text.
  const recognition = new Recognition();
  recognition.lang = navigator.language || "en-US";
  recognition.interimResults = false;
  mic.disabled = true;
  recognition.onresult = (event) => {
    const text = Array.from(event.results).map((r) => r[0].transcript).join(" ").trim();
    if (text) command(call, "say", { text });
  };
  recognition.onerror = (event) => showError(call, `speech recognition: ${event.error}`);
  recognition.onend = () => { mic.disabled = call.ended; };
  recognition.start();
}

// -- the timeline ----------------------------------------------------------------------------

function describe(message) {
  const data = message[message.kind];
  if (message.kind === "violation") {
    return [el("span", { textContent: `violation ${data.kind}: ${data.message}` })];
  }
  if (message.kind === "action") return describeAction(data, message.tag);
  switch (data.type) {
    case "session_start":
      return [message.step > 0 ? "the transfer was not answered: the call is back" : "call starts"];
    case "user_speak":
      return [`caller: “${data.text}”`, data.barged_in ? tag("barge-in", "barge") : null];
    case "dtmf_received":
      return [`caller presses ${data.digit}`];
    case "user_speech_started":
      return ["caller starts speaking"];
    case "assistant_speak": {
      const what = data.text || message.words || (data.ssml ? "(SSML)" : "audio");
      return [`plays “${what}”`, tag(`${(data.duration_ms / 1000).toFixed(1)} s`)];
    }
    case "assistant_speech_ended":
      return ["playback ended"];
    case "user_input_timeout":
      return ["the caller stayed silent: input timeout"];
    case "sms_failed":
      return [`SMS to ${data.recipient} failed: ${data.reason}`];
    case "session_end":
      return ["call ends"];
    default:
      return [data.type];
  }
}

function describeAction(data, label) {
  const extra = label ? tag(label === "pushed" ? "sent on its own" : label, label) : null;
  switch (data.type) {
    case "speak":
      return [`speak “${data.text ?? data.ssml ?? ""}”`, extra];
    case "audio":
      return ["audio", extra];
    case "transfer":
      return [`transfer to ${data.target_phone_number}`, extra];
    case "send_sms":
      return [`SMS to ${data.phone_number}: “${data.message}”`, extra];
    case "hangup":
      return ["hang up", extra];
    case "barge_in":
      return ["barge_in: stop playback", extra];
    default:
      return [String(data.type ?? "action"), extra];
  }
}

function entry(call, message) {
  if (message.kind === "step") return; // the caller's steps show as the events they cause
  const data = message[message.kind];
  const caller = message.kind === "event" && ["user_speak", "dtmf_received"].includes(data.type);
  const arrow = { event: "→", action: "←", violation: "!" }[message.kind];
  const row = el("tr", { className: `row ${message.kind}${caller ? " caller" : ""}` },
    el("td", { className: "time", textContent: clock(message.at_ms) }),
    el("td", { className: "dir", textContent: arrow, title: message.kind }),
    el("td", { className: "what" }, ...describe(message)),
    el("td", { className: "latency" }));
  row.dataset.kind = message.kind;
  row.dataset.type = message.kind === "violation" ? data.kind : data.type;
  row.dataset.index = message.index;
  row.addEventListener("click", () => toggleJson(row, message));
  $(".timeline tbody", call.view).append(row);
  call.rows.set(message.index, row);
  const box = $(".timeline-box", call.view);
  box.scrollTop = box.scrollHeight;
  if (message.kind === "event" && data.type === "assistant_speak") play(call, message);
}

function toggleJson(row, message) {
  const next = row.nextElementSibling;
  if (next && next.classList.contains("json")) return next.remove();
  const shown = { ...message[message.kind] };
  if (shown.audio) shown.audio = `${shown.audio.slice(0, 40)}… (${shown.audio.length} chars)`;
  const detail = el("tr", { className: "json" },
    el("td", { colSpan: 4 }, el("pre", { textContent: JSON.stringify(shown, null, 2) })));
  row.after(detail);
}

function reply(call, message) {
  const row = call.rows.get(message.event);
  if (!row) return;
  const cell = $(".latency", row);
  const deadline = page.info ? page.info.deadline_ms : Infinity;
  if (message.error) {
    cell.textContent = "no answer";
    cell.title = message.error;
    cell.classList.add("slow");
  } else if (message.answered) {
    cell.textContent = `${message.latency_ms.toFixed(1)} ms`;
    row.dataset.latency = message.latency_ms;
    cell.classList.toggle("slow", message.latency_ms > deadline);
    call.turns.push({ type: row.dataset.type, latency: message.latency_ms });
    plot(call);
  } else {
    cell.textContent = "–";
    cell.title = `no actions (answered in ${message.latency_ms.toFixed(1)} ms)`;
  }
}

function plot(call) {
  // One bar per turn (an event the assistant answered with actions), the deadline dashed.
  const svg = $(".plot", call.view);
  const ns = "http://www.w3.org/2000/svg";
  const width = 260, height = 90, top = 8, bottom = 14;
  const latencies = call.turns.map((t) => t.latency);
  const deadline = page.info ? page.info.deadline_ms : 1000;
  const max = Math.max(...latencies, 1) * 1.15;
  const scale = (ms) => (height - bottom) - ((height - bottom - top) * Math.min(ms, max)) / max;
  const step = Math.min(24, (width - 30) / Math.max(latencies.length, 1));
  const shapes = [];
  call.turns.forEach((turn, index) => {
    const rect = document.createElementNS(ns, "rect");
    const y = scale(turn.latency);
    rect.setAttribute("x", 28 + index * step);
    rect.setAttribute("y", y);
    rect.setAttribute("width", Math.max(step - 3, 2));
    rect.setAttribute("height", Math.max(height - bottom - y, 1));
    rect.setAttribute("class", `bar${turn.latency > deadline ? " slow" : ""}`);
    const title = document.createElementNS(ns, "title");
    title.textContent = `${turn.type}: ${turn.latency.toFixed(1)} ms`;
    rect.append(title);
    shapes.push(rect);
  });
  const label = (x, y, text) => {
    const node = document.createElementNS(ns, "text");
    node.setAttribute("x", x);
    node.setAttribute("y", y);
    node.textContent = text;
    return node;
  };
  shapes.push(label(2, top + 6, `${(max / 1.15).toFixed(max < 10 ? 1 : 0)} ms`), label(2, height - bottom, "0"));
  if (deadline <= max) {
    const line = document.createElementNS(ns, "line");
    line.setAttribute("x1", 26);
    line.setAttribute("x2", width);
    line.setAttribute("y1", scale(deadline));
    line.setAttribute("y2", scale(deadline));
    line.setAttribute("class", "deadline");
    shapes.push(line);
  }
  svg.replaceChildren(...shapes);
  const sorted = [...latencies].sort((a, b) => a - b);
  const median = sorted[Math.floor((sorted.length - 1) / 2)];
  $(".latency-summary", call.view).textContent =
    `${latencies.length} turn${latencies.length === 1 ? "" : "s"} · median ${median.toFixed(1)} ms · ` +
    `max ${sorted[sorted.length - 1].toFixed(1)} ms · deadline ${deadline} ms`;
}

function showState(call, state) {
  const box = $(".state-box", call.view);
  box.hidden = false;
  $(".state", box).textContent = JSON.stringify(state, null, 2);
}

// -- status, outcome and sound ---------------------------------------------------------------

const ENDINGS = {
  caller_hangup: "you hung up",
  assistant_hangup: "the assistant hung up",
  transferred: "transferred",
  transfer_failed: "the transfer failed",
  connection_lost: "connection lost",
  strict_failure: "failed by strict mode",
};

function status(call, message) {
  const chips = [];
  for (const sms of message.sms) chips.push(el("span", { className: "chip ok", textContent: `SMS to ${sms.to}` }));
  if (message.transferred_to) {
    chips.push(el("span", { className: "chip ok", textContent: `transfer to ${message.transferred_to}` }));
  }
  if (message.hung_up) chips.push(el("span", { className: "chip", textContent: "assistant hangs up" }));
  if (message.end_reason) {
    chips.push(el("span", {
      className: `chip ${message.end_reason === "connection_lost" ? "bad" : ""}`,
      textContent: `ended: ${ENDINGS[message.end_reason] || message.end_reason}`,
    }));
  }
  if (message.violations) {
    chips.push(el("span", {
      className: "chip bad",
      textContent: `${message.violations} violation${message.violations === 1 ? "" : "s"}`,
    }));
  }
  $(".outcome", call.view).replaceChildren(...chips);
  if (message.error) failed(call, message.error);
  call.ended = message.ended;
  for (const control of call.view.querySelectorAll(".say button, .say input, .keypad button, .hangup")) {
    control.disabled = message.ended;
  }
  const badge = call.item.querySelector(".chip");
  badge.textContent = message.error ? "failed" : message.ended ? "ended" : "live";
  badge.className = `chip ${message.error ? "bad" : message.ended ? "" : "ok"}`;
  playing(call, message.playing);
}

function failed(call, text) {
  call.failed = true;
  showError(call, `The call cannot go on: ${text}`);
}

function playing(call, now) {
  const label = $(".playing-label", call.view);
  const bar = $(".playing .bar div", call.view);
  if (!now) {
    label.textContent = "nothing playing";
    bar.style.transition = "none";
    bar.style.width = "0";
    stopSound(call);
    return;
  }
  label.textContent = now.kind === "audio" ? "playing audio" : `speaking: “${now.text}”`;
  if (call.playingKey !== `${now.text}|${now.duration_ms}` || bar.style.width === "0px") {
    // Animate the rest of the playback from where the emulator says it is.
    call.playingKey = `${now.text}|${now.duration_ms}`;
    const done = 1 - now.left_ms / Math.max(now.duration_ms, 1);
    bar.style.transition = "none";
    bar.style.width = `${(done * 100).toFixed(1)}%`;
    bar.getBoundingClientRect();
    bar.style.transition = `width ${now.left_ms}ms linear`;
    bar.style.width = "100%";
  }
}

function play(call, message) {
  // The emulator decides how long playback lasts; the browser's voice only lends it sound, and
  // stops when the emulator says playback stopped (ended, barged into, the call over).
  if (!page.live || call.id !== page.selected || !$("#sound").checked) return;
  stopSound(call);
  if (message.audio) {
    call.audio = new Audio(`data:audio/wav;base64,${message.audio}`);
    call.audio.play().catch(() => {});
  } else if (synth && message.words) {
    const utterance = new SpeechSynthesisUtterance(message.words);
    const wpm = page.info ? page.info.words_per_minute : 160;
    utterance.rate = Math.min(Math.max(wpm / 170, 0.5), 3);
    call.speaking = utterance;
    synth.speak(utterance);
  }
}

function stopSound(call) {
  if (call.audio) {
    call.audio.pause();
    call.audio = null;
  }
  if (call.speaking && synth) synth.cancel();
  call.speaking = null;
  call.playingKey = null;
}

// -- placing calls ----------------------------------------------------------------------------

function setup() {
  const support = [];
  support.push(synth ? "speech synthesis: yes" : "speech synthesis: not in this browser (silent)");
  support.push(Recognition ? "microphone: yes" : "microphone: not in this browser (type instead)");
  $("#speech-support").textContent = support.join(" · ");
  $("#sound").addEventListener("change", () => {
    if (!$("#sound").checked) for (const call of page.calls.values()) stopSound(call);
  });
  $("#new-call").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const button = $("#new-call-button");
    button.disabled = true;
    banner("");
    try {
      await post("/api/calls", {
        direction: form.direction.value,
        caller_number: form.caller_number.value,
        flow_number: form.flow_number.value,
      });
    } catch (error) {
      banner(`The call could not be placed: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  });
  connect();
}

setup();
