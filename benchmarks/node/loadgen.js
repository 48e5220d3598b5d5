'use strict';
// Plays the AI Flow service against an echo assistant and checks every answer.
//
// node loadgen.js '{"url": "http://127.0.0.1:8000", "transport": "http", "calls": 200, ...}'
//
// mode "load": `calls` concurrent calls, each session_start, `rounds` x (user_speak +
// assistant_speech_ended), dtmf_received, session_end; a finished call is followed by a new one
// until the time is up. Prints one JSON line: events/s, latency percentiles, errors, own CPU.
// mode "idle": opens `calls` WebSocket calls that only send session_start, prints a JSON line
// when all are greeted, holds them until stdin closes.

const { Pool } = require('undici');
// Every answer is awaited at most reply_timeout seconds (HTTP: undici's own timeouts).
const WebSocket = require('ws');
const { performance } = require('node:perf_hooks');

const opts = Object.assign(
  {
    transport: 'http', calls: 10, rounds: 5, seconds: 5, warmup: 1, token: 'bench-token',
    mode: 'load', webhook: '/webhook', ws: '/ws', connect_concurrency: 200, reply_timeout: 10,
  },
  JSON.parse(process.argv[2] || '{}'),
);

const GREETING = 'Hello! Say something.';
const run = `${process.pid}-${Date.now()}`;
let callCounter = 0;

function session(id) {
  return {
    id, account_id: 'bench-account', phone_number: '4921100000', direction: 'inbound',
    from_phone_number: '4915700000000', to_phone_number: '4921100000',
  };
}

// One call: [event JSON, expected speak text or null for "no action"].
function script() {
  const id = `bench-${run}-${++callCounter}`;
  const s = session(id);
  const steps = [[{ type: 'session_start', session: s }, GREETING]];
  for (let i = 0; i < opts.rounds; i++) {
    const text = `This is round ${i} of call ${callCounter}, please say it back.`;
    steps.push([{ type: 'user_speak', text, session: s }, `You said: ${text}`]);
    steps.push([{ type: 'assistant_speech_ended', session: s }, null]);
  }
  steps.push([{ type: 'dtmf_received', digit: '7', session: s }, 'You pressed 7']);
  steps.push([{ type: 'session_end', session: s }, null]);
  return { id, steps: steps.map(([event, want]) => [JSON.stringify(event), want]) };
}

const stats = { events: 0, errors: 0, samples: [], latencies: [] };
let windowStart = Infinity;
let windowEnd = Infinity;

function problem(message) {
  stats.errors += 1;
  if (stats.samples.length < 5) stats.samples.push(message);
}

function done(t0, t1) {
  if (t0 >= windowStart && t1 <= windowEnd) {
    stats.events += 1;
    stats.latencies.push(t1 - t0);
  }
}

// The answer must be exactly one speak for this call with the expected text.
function checkReply(text, want, id) {
  let reply;
  try {
    reply = JSON.parse(text);
  } catch {
    return `not JSON: ${text.slice(0, 80)}`;
  }
  if (Array.isArray(reply)) {
    if (reply.length !== 1) return `expected one action, got ${reply.length}`;
    reply = reply[0];
  }
  if (reply.type !== 'speak' || reply.session_id !== id || reply.text !== want) {
    return `expected speak ${JSON.stringify(want)} for ${id}, got ${text.slice(0, 120)}`;
  }
  return null;
}

const headers = { 'content-type': 'application/json', 'x-api-token': opts.token };

async function httpCall(pool) {
  const { id, steps } = script();
  for (const [body, want] of steps) {
    const t0 = performance.now();
    let status;
    let text;
    try {
      const res = await pool.request({ path: opts.webhook, method: 'POST', headers, body });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      problem(`request failed: ${err.message}`);
      return;
    }
    const t1 = performance.now();
    if (want === null) {
      if (status !== 204 || text !== '') problem(`expected 204, got ${status} ${text.slice(0, 80)}`);
    } else if (status !== 200) {
      problem(`expected 200, got ${status} ${text.slice(0, 80)}`);
    } else {
      const bad = checkReply(text, want, id);
      if (bad) problem(bad);
    }
    done(t0, t1);
  }
}

function wsUrl() {
  return opts.url.replace(/^http/, 'ws') + opts.ws;
}

// A WebSocket whose messages can be awaited one at a time.
function openSocket() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(), { headers: { 'x-api-token': opts.token }, perMessageDeflate: false });
    const queue = [];
    const waiters = [];
    ws.on('message', (data) => {
      const text = data.toString();
      if (waiters.length) waiters.shift()(text);
      else queue.push(text);
    });
    ws.on('close', () => { while (waiters.length) waiters.shift()(null); });
    ws.on('error', reject);
    // The next message, or undefined when none comes within reply_timeout seconds.
    ws.next = () => {
      if (queue.length) return Promise.resolve(queue.shift());
      return new Promise((resolve) => {
        const waiter = (text) => { clearTimeout(timer); resolve(text); };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          resolve(undefined);
        }, opts.reply_timeout * 1000);
        waiters.push(waiter);
      });
    };
    ws.pending = () => queue.length;
    ws.once('open', () => resolve(ws));
  });
}

async function wsCall() {
  const { id, steps } = script();
  let ws;
  try {
    ws = await openSocket();
  } catch (err) {
    problem(`connect failed: ${err.message}`);
    return;
  }
  for (const [body, want] of steps) {
    const t0 = performance.now();
    ws.send(body);
    if (want === null) {
      // No answer is due: nothing to wait for. A stray answer would show up at the next check.
      done(t0, performance.now());
      continue;
    }
    const text = await ws.next();
    const t1 = performance.now();
    if (text === null || text === undefined) {
      problem(text === null ? `connection closed while waiting in ${id}` : `no answer within ${opts.reply_timeout} s in ${id}`);
      ws.terminate();
      return;
    }
    const bad = checkReply(text, want, id);
    if (bad) problem(bad);
    done(t0, t1);
  }
  if (ws.pending()) problem(`${ws.pending()} unexpected messages in ${id}`);
  ws.close();
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function load() {
  const pool = opts.transport === 'http'
    ? new Pool(opts.url, { connections: opts.calls, pipelining: 1, keepAliveTimeout: 60_000 })
    : null;
  const start = performance.now();
  windowStart = start + opts.warmup * 1000;
  windowEnd = windowStart + opts.seconds * 1000;
  let cpuAtStart = null;
  const cpuTimer = setTimeout(() => { cpuAtStart = process.cpuUsage(); }, opts.warmup * 1000);
  let cpu = null;
  const cpuEnd = setTimeout(() => { cpu = process.cpuUsage(cpuAtStart); }, (opts.warmup + opts.seconds) * 1000);
  const slot = async () => {
    while (performance.now() < windowEnd) {
      await (pool ? httpCall(pool) : wsCall());
    }
  };
  await Promise.all(Array.from({ length: opts.calls }, slot));
  clearTimeout(cpuTimer);
  clearTimeout(cpuEnd);
  if (pool) await pool.close();
  const sorted = Float64Array.from(stats.latencies).sort();
  const cpuUsed = cpu ? (cpu.user + cpu.system) / 1e6 : null;
  return {
    transport: opts.transport,
    calls: opts.calls,
    seconds: opts.seconds,
    events: stats.events,
    events_per_s: stats.events / opts.seconds,
    p50_ms: percentile(sorted, 50),
    p99_ms: percentile(sorted, 99),
    max_ms: sorted.length ? sorted[sorted.length - 1] : null,
    errors: stats.errors,
    error_samples: stats.samples,
    generator_cpu: cpuUsed === null ? null : cpuUsed / opts.seconds,
  };
}

async function idle() {
  const sockets = [];
  let next = 0;
  const opener = async () => {
    while (next < opts.calls) {
      next += 1;
      const { id, steps } = script();
      try {
        const ws = await openSocket();
        ws.send(steps[0][0]);
        const bad = checkReply((await ws.next()) || '', steps[0][1], id);
        if (bad) problem(bad);
        sockets.push(ws);
      } catch (err) {
        problem(`connect failed: ${err.message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.connect_concurrency, opts.calls) }, opener));
  process.stdout.write(`${JSON.stringify({ open: sockets.length, errors: stats.errors, error_samples: stats.samples })}\n`);
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on('end', resolve));
  for (const ws of sockets) ws.terminate();
}

(opts.mode === 'idle' ? idle() : load().then((r) => process.stdout.write(`${JSON.stringify(r)}\n`)))
  .then(() => process.exit(0))
  .catch((err) => { console.error(err); process.exit(1); });
