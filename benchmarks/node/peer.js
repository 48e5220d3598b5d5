'use strict';
// The Node.js peer: the echo assistant on express (the official TypeScript SDK's HTTP
// integration, with express.json()) and on a `ws` WebSocketServer, in one process.
//
// node peer.js PORT   (token in BENCH_TOKEN)

const crypto = require('node:crypto');
const http = require('node:http');
const express = require('express');
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 8000);
const token = Buffer.from(process.env.BENCH_TOKEN || 'bench-token');

function authorized(given) {
  if (typeof given !== 'string') return false;
  const bytes = Buffer.from(given);
  return bytes.length === token.length && crypto.timingSafeEqual(bytes, token);
}

// The echo behaviour every assistant in the benchmark has.
function answer(event) {
  const id = event && event.session && event.session.id;
  if (typeof event.type !== 'string' || typeof id !== 'string') throw new Error('not an event');
  switch (event.type) {
    case 'session_start':
      return { type: 'speak', session_id: id, text: 'Hello! Say something.' };
    case 'user_speak':
      return { type: 'speak', session_id: id, text: `You said: ${event.text}` };
    case 'dtmf_received':
      return { type: 'speak', session_id: id, text: `You pressed ${event.digit}` };
    default:
      return null;
  }
}

const app = express();
app.use(express.json());
app.post('/webhook', (req, res) => {
  if (!authorized(req.get('x-api-token'))) return res.status(401).json({ error: 'Unauthorized' });
  let action;
  try {
    action = answer(req.body);
  } catch {
    return res.status(400).json({ error: 'Invalid event' });
  }
  if (action === null) return res.status(204).end();
  return res.json(action);
});
app.get('/health', (req, res) => res.json({ status: 'ok' }));

const server = http.createServer(app);
const wss = new WebSocketServer({
  server,
  path: '/ws',
  perMessageDeflate: false,
  verifyClient: (info) => authorized(info.req.headers['x-api-token']),
});
wss.on('connection', (ws) => {
  ws.on('message', (data) => {
    let action;
    try {
      action = answer(JSON.parse(data));
    } catch {
      return; // a malformed frame is dropped
    }
    if (action !== null) ws.send(JSON.stringify(action));
  });
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1');
