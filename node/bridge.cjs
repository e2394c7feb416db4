// sysmgr's Node bridge: runs PM2 apps unchanged under systemd.
//
// sysmgr preloads this file (`node --require .../bridge.cjs app.js`) into every instance of an
// app whose program is `node`. It turns what a PM2 app does into what systemd expects, without
// a change to the app:
//
// - `server.listen(3000)` (or `listen(port, host)`, `listen({port})`, a unix path): on a port
//   that one of the app's sockets has, the server takes the socket systemd passes
//   (`LISTEN_FDS`, found by its name in `LISTEN_FDNAMES`) instead of binding; every instance
//   shares it. A listen on a port no socket of the app has stops the instance with a message
//   that names both, rather than binding a port of its own.
// - `process.send('ready')` (PM2's `wait_ready`) sends `READY=1` to systemd, from the main
//   process itself: `sysmgr exec` connected a datagram socket to `NOTIFY_SOCKET` before it
//   exec'd Node, and passes it as `SYSMGR_NOTIFY_FD`. With `wait_ready = false` the instance
//   is ready once all its sockets are being served.
// - On the kill signal (`SYSMGR_KILL_SIGNAL`, PM2's SIGINT) and SIGTERM, every server drains:
//   it stops accepting, answers each request from then on with `Connection: close`, keeps an
//   idle keep-alive connection for a grace (a request already on its way is answered) and
//   closes it when it stays quiet, and cuts what is left just before `kill_timeout`. An app's
//   own `server.close(cb)` joins that drain instead of Node's (which since Node 19 closes idle
//   keep-alive connections at once, failing the requests racing them). An app without a
//   signal handler of its own exits once drained; with `shutdown_with_message` the app gets
//   PM2's `shutdown` message.
// - `NODE_APP_INSTANCE` (the app's `instance_var`) counts from 0, as under PM2; systemd's
//   instances count from 1 (`SYSMGR_INSTANCE`).
// - With `watchdog` in the app file, it pings systemd's watchdog while the event loop turns.
// - With `health_check`, systemd passes the instance a socket of its own (fd name
//   `sysmgr-health`); the app's first HTTP server also answers there, so `sysmgr reload` asks
//   the new process itself for its health path.
//
// It acts only in the process systemd started (`SYSMGR_PID`, set by `sysmgr exec`): child
// processes, `child_process.fork()` included, are left alone. Node 18 or later; CommonJS and
// ES module apps alike (a preload runs before either). No dependencies.
'use strict';

// The fd name of an instance's own health socket (app.toml's `health_check`).
const HEALTH_FD_NAME = 'sysmgr-health';

const env = process.env;
if (env.SYSMGR_PID === String(process.pid) && !process.__sysmgrBridge) {
  process.__sysmgrBridge = true;
  install();
}

function install() {
  const fs = require('node:fs');
  const net = require('node:net');
  // Only `fs` and `net` up front: `http` is required when a server is adopted (the app has
  // loaded it by then), `child_process` only for the fallback notifier; loading them at start
  // cost a bare `node` ~10 ms.

  const app = env.SYSMGR_APP || 'app';
  const instance = Number(env.SYSMGR_INSTANCE) || 1;
  // The bridge's own lines go to the instance's stderr. When that is the journal (`sysmgr
  // exec` gives stderr a stream of priority err that reads `<N>` line prefixes), each says
  // its own priority, so a drain notice is not an error in `sysmgr logs --err`.
  const journaled = (() => {
    try {
      const st = fs.fstatSync(2, { bigint: true });
      return env.JOURNAL_STREAM === `${st.dev}:${st.ino}`;
    } catch {
      return false;
    }
  })();
  const NOTICE = 5;
  const WARNING = 4;
  const ERR = 3;
  const say = (line, priority = NOTICE) =>
    process.stderr.write(`${journaled ? `<${priority}>` : ''}sysmgr: ${line}\n`);

  // PM2 numbers instances from 0; the app reads that number where PM2 put it.
  const instanceVar = env.SYSMGR_INSTANCE_VAR || 'NODE_APP_INSTANCE';
  env[instanceVar] = String(instance - 1);

  // The drain plan, the same as sysmgr-worker's: the unit's kill timeout less a margin, and a
  // grace of at most 500 ms for idle keep-alive connections.
  const killTimeout = Number(env.SYSMGR_KILL_TIMEOUT_MS) || 1600;
  const margin = Math.min(Math.max(killTimeout / 10, 50), 500, killTimeout / 2);
  const budget = killTimeout - margin;
  const idleGrace = Math.min(500, budget / 2);
  const killSignal = env.SYSMGR_KILL_SIGNAL || 'SIGINT';
  const waitReady = env.SYSMGR_WAIT_READY !== '0';

  // The sockets systemd passed, with the address each was declared with in app.toml
  // (`SYSMGR_LISTEN`: `NAME=ADDRESS` entries separated by spaces, in the order of the fds).
  // The k-th fd of a name gets the k-th address declared with that name: systemd does not
  // promise the order of fds from several socket units. The instance's own health socket
  // (`health_check`) is no socket of the app's: its connections go to the app's HTTP server.
  const sockets = [];
  let healthFd = -1;
  if (env.LISTEN_PID === String(process.pid)) {
    const names = (env.LISTEN_FDNAMES || '').split(':');
    const declared = (env.SYSMGR_LISTEN || '').split(' ').filter(Boolean).map((entry) => {
      const eq = entry.indexOf('=');
      return eq < 0 ? { name: '', address: entry } : { name: entry.slice(0, eq), address: entry.slice(eq + 1) };
    });
    const count = Number(env.LISTEN_FDS) || 0;
    for (let i = 0; i < count; i++) {
      const name = names[i] || '';
      if (name === HEALTH_FD_NAME) {
        healthFd = 3 + i;
        continue;
      }
      const at = declared.findIndex((d) => d.name === name);
      const entry = at < 0 ? declared.shift() || { address: '' } : declared.splice(at, 1)[0];
      const address = entry.address;
      sockets.push({ fd: 3 + i, name, address, ...parseAddress(address), taken: false });
    }
  }
  const described = sockets.map((s) => s.address).join(', ');

  // --- readiness ---------------------------------------------------------------------------

  const notifyFd = env.SYSMGR_NOTIFY_FD === undefined ? -1 : Number(env.SYSMGR_NOTIFY_FD);
  function notify(state) {
    if (!env.NOTIFY_SOCKET) return;
    if (notifyFd >= 0) {
      try {
        fs.writeSync(notifyFd, state);
        return;
      } catch (err) {
        say(`cannot write to the notify socket (${err.code || err.message}); using systemd-notify`, WARNING);
      }
    }
    // Without sysmgr exec (a unit written by hand): a helper sends it on this process's behalf;
    // it waits until systemd has read the message, so it is not lost when the helper exits.
    const { spawn } = require('node:child_process');
    const child = spawn('systemd-notify', [`--pid=${process.pid}`, ...state.split('\n')], { stdio: 'ignore' });
    child.on('error', (err) => say(`systemd-notify failed: ${err.message}`, ERR));
  }

  let ready = false;
  function sendReady(why) {
    if (ready) return;
    ready = true;
    notify(`READY=1\nSTATUS=${why}`);
  }

  // PM2's readiness message; under systemd there is no IPC channel, so the bridge is one.
  if (typeof process.send !== 'function') {
    process.send = function send(message, ...rest) {
      if (message === 'ready') sendReady('ready (process.send)');
      const callback = rest.find((a) => typeof a === 'function');
      if (callback) process.nextTick(callback, null);
      return true;
    };
  }
  // app.toml's `watchdog` (WatchdogSec=): a ping every half period proves the event loop
  // turns; a loop blocked for longer gets the instance restarted.
  const watchdogUsec = Number(env.WATCHDOG_USEC);
  if (watchdogUsec > 0 && (!env.WATCHDOG_PID || env.WATCHDOG_PID === String(process.pid))) {
    setInterval(() => notify('WATCHDOG=1'), Math.max(watchdogUsec / 2000, 10)).unref();
  }
  if (!waitReady && sockets.length === 0) {
    // Nothing to listen on: ready once the app's first tick has run.
    setImmediate(() => sendReady('running'));
  }

  // --- sockets -----------------------------------------------------------------------------

  // Node's listen() forms, reduced to what decides the socket: a port (and host) or a path.
  function requested(args) {
    let [first, second] = args;
    if (first !== null && typeof first === 'object' && !Array.isArray(first)) {
      if (first._handle || first.fd !== undefined && first.port === undefined && first.path === undefined) {
        return { handle: true };
      }
      return { port: first.port, host: first.host, path: first.path };
    }
    if (typeof first === 'string' && !/^\d+$/.test(first)) return { path: first };
    if (typeof first === 'function' || first === undefined) return { port: 0 };
    return { port: first, host: typeof second === 'string' ? second : undefined };
  }

  function pick(want) {
    const free = sockets.filter((s) => !s.taken);
    if (want.path !== undefined) return free.find((s) => s.path === want.path);
    const port = Number(want.port);
    const same = free.filter((s) => s.port === port);
    return same.find((s) => want.host !== undefined && s.host === want.host) || same[0];
  }

  const originalListen = net.Server.prototype.listen;

  // The health socket: served by the app's first plain HTTP server, whatever it listens on,
  // so `GET SYSMGR_HEALTH_PATH` reaches the app's own route. Its connections join that
  // server's (and its drain) as if they had come through the server's own socket.
  let health = null;
  function serveHealth(server) {
    if (healthFd < 0 || health || !(server instanceof require('node:http').Server)) return;
    health = new net.Server();
    health.on('connection', (conn) => server.emit('connection', conn));
    health.on('error', (err) => say(`cannot serve the health socket: ${err.message}`, ERR));
    originalListen.call(health, { fd: healthFd });
  }

  net.Server.prototype.listen = function listen(...args) {
    if (this !== health) serveHealth(this);
    const want = requested(args);
    const bindsSomething = want.path !== undefined || (want.port !== undefined && Number(want.port) !== 0);
    if (want.handle || sockets.length === 0 || !bindsSomething) return originalListen.apply(this, args);
    const socket = pick(want);
    if (!socket) {
      const what = want.path !== undefined ? `\`${want.path}\`` : `port ${Number(want.port)}`;
      const taken = sockets.filter((s) => s.taken).length;
      say(`${app} listens on ${what}, but its sockets are ${described}${taken ? ' (all taken by earlier listen calls)' : ''}; ` +
        `add ${what} to \`listen\` in the app file, or make the app listen on ${sockets[0].address}`, ERR);
      process.exit(78); // EX_CONFIG: systemd marks the start failed; a reload halts here
    }
    socket.taken = true;
    const callback = args.find((a) => typeof a === 'function');
    adopt(this, socket);
    return originalListen.call(this, { fd: socket.fd }, callback);
  };

  // --- drain -------------------------------------------------------------------------------

  const servers = new Set();
  let draining = false;
  let finished = false;

  function adopt(server, socket) {
    const state = { socket, connections: new Map(), closeCallbacks: [], closed: false };
    servers.add(server);
    server.__sysmgr = state;
    server.on('connection', (conn) => {
      state.connections.set(conn, { inFlight: new Set(), bytesRead: 0, quietSince: 0 });
      conn.on('close', () => state.connections.delete(conn));
    });
    // http.Server, and https.Server (which is not one, but has the same request options).
    if (server instanceof require('node:http').Server || 'headersTimeout' in server) {
      // Before the app's own listener, so the header is set before the app answers.
      server.prependListener('request', (req, res) => {
        const conn = state.connections.get(req.socket);
        if (conn) {
          conn.inFlight.add(res);
          res.on('close', () => conn.inFlight.delete(res));
        }
        if (draining) res.setHeader('Connection', 'close');
      });
      // Node 19+'s close() also closes idle keep-alive connections at once; a request a client
      // is sending on one of them then fails. During the drain close() joins the drain.
      server.close = function close(callback) {
        if (!draining) startDrain(`${app} called server.close()`);
        if (typeof callback === 'function') {
          if (state.closed) process.nextTick(callback);
          else state.closeCallbacks.push(callback);
        }
        return this;
      };
      server.closeIdleConnections = function closeIdleConnections() {};
    }
    server.once('listening', () => {
      if (!waitReady && sockets.every((s) => s.taken)) sendReady(`serving ${described}`);
    });
  }

  function startDrain(why) {
    draining = true;
    notify('STOPPING=1');
    if (health) health.close();
    say(`instance ${instance} pid ${process.pid} draining: ${why}`);
    const now = Date.now();
    for (const server of servers) {
      const state = server.__sysmgr;
      net.Server.prototype.close.call(server, () => {
        state.closed = true;
        for (const callback of state.closeCallbacks.splice(0)) callback();
        if ([...servers].every((s) => s.__sysmgr.closed)) drained('every connection closed');
      });
      for (const [conn, c] of state.connections) {
        for (const res of c.inFlight) if (!res.headersSent) res.setHeader('Connection', 'close');
        c.bytesRead = conn.bytesRead;
        c.quietSince = now;
      }
    }
    if (servers.size === 0) drained('no server to drain');
    // Idle connections: kept for the grace, closed when they stayed quiet (no byte read, no
    // request running).
    setInterval(() => {
      const t = Date.now();
      for (const server of servers) {
        for (const [conn, c] of server.__sysmgr.connections) {
          if (c.inFlight.size > 0 || conn.bytesRead !== c.bytesRead) {
            c.bytesRead = conn.bytesRead;
            c.quietSince = t;
          } else if (t - c.quietSince >= idleGrace) {
            conn.destroy();
          }
        }
      }
    }, Math.max(idleGrace / 4, 5)).unref();
    // What is left just before kill_timeout is cut, so the process ends before SIGKILL.
    setTimeout(() => {
      let cut = 0;
      for (const server of servers) {
        for (const conn of server.__sysmgr.connections.keys()) {
          conn.destroy();
          cut++;
        }
      }
      drained(`the drain budget (${budget} ms) ran out, ${cut} connections cut`);
      // SIGKILL would come next: end now, with the app's own cleanup as far as it got.
      process.exit(0);
    }, budget).unref();
  }

  // Every server is drained: an app with its own handler exits when it likes (its close
  // callbacks have run); one without a handler exits now, as Node would have on the signal.
  let ownHandler = false;
  function drained(why) {
    if (finished) return;
    finished = true;
    say(`instance ${instance} pid ${process.pid} drained: ${why}`);
    if (!ownHandler) process.exit(0);
  }

  function onSignal(signal) {
    if (draining && finished) return;
    ownHandler = process.listenerCount(signal) > 1;
    if (env.SYSMGR_SHUTDOWN_WITH_MESSAGE === '1') {
      ownHandler = ownHandler || process.listenerCount('message') > 0;
      process.emit('message', 'shutdown');
    }
    if (!draining) startDrain(signal);
    else if (finished && !ownHandler) process.exit(0);
  }
  for (const signal of new Set([killSignal, 'SIGTERM'])) {
    process.on(signal, () => onSignal(signal));
  }
}

// `HOST:PORT`, `[V6]:PORT`, `PORT` or a unix path, as app.toml's `listen` writes them.
function parseAddress(address) {
  if (address.startsWith('/') || address.startsWith('@')) return { path: address };
  const colon = address.lastIndexOf(':');
  if (colon < 0) return { port: Number(address) };
  return { host: address.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(address.slice(colon + 1)) };
}
