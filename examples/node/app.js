// A sysmgr worker in plain Node.js (18 or later, no dependencies): the PM2 app.js that uses
// wait_ready, SIGINT and kill_timeout, redone for systemd. See docs/workers.md.
//
//   GET /           instance {SYSMGR_INSTANCE} pid {PID}
//   GET /slow?ms=N  the same after N ms
//   GET /health     ok
//
// By hand: `node app.js` listens on SYSMGR_DEV_LISTEN or 127.0.0.1:3000.
'use strict';

const http = require('node:http');
const net = require('node:net');
const { spawn } = require('node:child_process');

const env = process.env;
const INSTANCE = env.SYSMGR_INSTANCE || env.NODE_APP_INSTANCE || '-';

// The drain budget, as sysmgr-worker computes it: the unit's kill timeout (PM2's kill_timeout)
// less a safety margin, and a grace of at most 500 ms for keep-alive connections that are idle.
const KILL_TIMEOUT_MS = Number(env.SYSMGR_KILL_TIMEOUT_MS || 1600);
const MARGIN_MS = Math.min(Math.max(KILL_TIMEOUT_MS / 10, 50), 500, KILL_TIMEOUT_MS / 2);
const BUDGET_MS = KILL_TIMEOUT_MS - MARGIN_MS;
const IDLE_GRACE_MS = Math.min(500, BUDGET_MS / 2);

// Duty 1: take the socket systemd passes (fd 3 onwards, named by LISTEN_FDNAMES); never bind the
// port under sysmgr. Node 20 has no reusePort, and does not need it: systemd owns the socket.
function listenTarget(name) {
  if (env.LISTEN_PID === String(process.pid) && Number(env.LISTEN_FDS) > 0) {
    const names = (env.LISTEN_FDNAMES || '').split(':');
    const index = names.indexOf(name);
    if (index < 0) {
      throw new Error(`no socket named \`${name}\` in LISTEN_FDNAMES \`${env.LISTEN_FDNAMES}\`; ` +
        'check the socket name in app.toml');
    }
    return { fd: 3 + index };
  }
  // Development fallback: SYSMGR_DEV_LISTEN is `HOST:PORT` or `/path.sock`, maybe `NAME=` first.
  const dev = (env.SYSMGR_DEV_LISTEN || '127.0.0.1:3000').split(',')[0].replace(/^[^=/@]+=/, '');
  if (dev.startsWith('/')) return { path: dev };
  const colon = dev.lastIndexOf(':');
  return { host: dev.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(dev.slice(colon + 1)) };
}

// Duty 2: sd_notify. Node has no unix datagram sockets, so a child `systemd-notify` sends it.
// The unit has NotifyAccess=all, so systemd accepts it from a child; systemd-notify waits until
// systemd has processed the message (no --no-block), so it is never attributed to a dead PID.
// --pid tells systemd that this Node process is the main one, in case it was started through a
// wrapper (npm, a shell without exec).
function notify(args) {
  if (!env.NOTIFY_SOCKET) return Promise.resolve();
  // Started by `sysmgr exec` (sysmgr's units for node): a datagram socket to systemd is open
  // already, so the message comes from this process itself (the units say NotifyAccess=main).
  if (env.SYSMGR_NOTIFY_FD && env.SYSMGR_PID === String(process.pid)) {
    const state = args.map((a) => a.replace(/^--ready$/, 'READY=1').replace(/^--status=/, 'STATUS=').replace(/^--pid=/, 'MAINPID='));
    try { require('node:fs').writeSync(Number(env.SYSMGR_NOTIFY_FD), state.join('\n')); } catch (err) { console.error(`sd_notify failed: ${err.message}`); }
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const child = spawn('systemd-notify', args, { stdio: 'ignore' });
    child.on('error', (err) => { console.error(`sd_notify failed: ${err.message}`); resolve(); });
    child.on('exit', resolve);
  });
}

function app(req, res) {
  const url = new URL(req.url, 'http://x');
  const reply = (status, body) => {
    // Not writeHead(): it fixes the headers before the body is known, and Node then sends the
    // body chunked; with statusCode/setHeader, end(body) sets Content-Length.
    res.statusCode = status;
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    res.end(body);
  };
  if (url.pathname === '/') return reply(200, `instance ${INSTANCE} pid ${process.pid}\n`);
  if (url.pathname === '/health') return reply(200, 'ok\n');
  if (url.pathname === '/slow') {
    const ms = Math.min(Number(url.searchParams.get('ms')), 60000);
    if (!Number.isInteger(ms) || ms < 0) return reply(400, '`/slow` needs `ms=N`\n');
    setTimeout(() => reply(200, `slow ${ms}ms instance ${INSTANCE} pid ${process.pid}\n`), ms);
    return;
  }
  reply(404, 'not found\n');
}

const server = http.createServer();
let draining = false;
// Per connection: the responses in flight, and what the drain last saw of it.
const connections = new Map();

server.on('connection', (socket) => {
  connections.set(socket, { inFlight: new Set(), bytesRead: 0, quietSince: 0 });
  socket.on('close', () => connections.delete(socket));
});
// Registered before the app's listener, so the header is set before the app answers.
server.on('request', (req, res) => {
  const conn = connections.get(req.socket);
  if (conn) {
    conn.inFlight.add(res);
    res.on('close', () => conn.inFlight.delete(res));
  }
  if (draining) res.setHeader('Connection', 'close');
});
server.on('request', app);

// Duty 3: drain on SIGINT (sysmgr's default KillSignal, PM2's too) and SIGTERM.
function drain(signal) {
  if (draining) return exit(`second ${signal}, stopping now`);
  draining = true;
  notify(['STOPPING=1']);
  // Stop accepting. Not server.close(): since Node 19 it also closes idle keep-alive connections
  // at once, and the request a client is sending on one of them fails (about 40 per reload
  // measured). net.Server's close() only stops accepting; its callback runs when the last
  // connection is gone.
  net.Server.prototype.close.call(server, () => exit('all connections closed'));
  const now = Date.now();
  for (const [socket, conn] of connections) {
    // Requests in flight: their response will carry Connection: close.
    for (const res of conn.inFlight) if (!res.headersSent) res.setHeader('Connection', 'close');
    conn.bytesRead = socket.bytesRead;
    conn.quietSince = now;
  }
  // Idle connections: keep them for the grace, so a request already on its way is answered (with
  // Connection: close); close those that stay quiet (no byte read, no request running).
  setInterval(() => {
    const t = Date.now();
    for (const [socket, conn] of connections) {
      if (conn.inFlight.size > 0 || socket.bytesRead !== conn.bytesRead) {
        conn.bytesRead = socket.bytesRead;
        conn.quietSince = t;
      } else if (t - conn.quietSince >= IDLE_GRACE_MS) {
        socket.destroy();
      }
    }
  }, Math.max(IDLE_GRACE_MS / 4, 5)).unref();
  // Whatever is left at the deadline is cut, so the process exits before SIGKILL.
  setTimeout(() => exit('deadline reached'), BUDGET_MS).unref();
}

function exit(why) {
  for (const socket of connections.keys()) socket.destroy();
  console.error(`app: instance ${INSTANCE} pid ${process.pid} drained: ${why}`);
  process.exit(0);
}

process.on('SIGINT', () => drain('SIGINT'));
process.on('SIGTERM', () => drain('SIGTERM'));

const target = listenTarget('http');
server.listen(target, async () => {
  const where = target.fd !== undefined ? `fd ${target.fd}` : target.path || `${target.host}:${target.port}`;
  // READY only now that the server accepts (PM2's process.send('ready') with wait_ready).
  await notify(['--ready', `--pid=${process.pid}`, `--status=serving on ${where}`]);
  if (process.send) process.send('ready'); // the same file still works under PM2
  console.error(`app: instance ${INSTANCE} pid ${process.pid} ready on ${where}`);
});
