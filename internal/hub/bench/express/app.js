// The comparison for `make bench` (scripts/bench-hub): the stack the old Node.js hub used,
// Express + http-proxy-middleware, serving the same two routes as central-hub: GET /health,
// and an authenticated GET /session-manager/:id/status proxied to the session manager's unix
// socket. Bearer tokens are checked against an in-memory set, as central-hub's cache does.
'use strict';
const express = require('express');
const { createProxyMiddleware } = require('http-proxy-middleware');

const port = Number(process.env.PORT || 39013);
const socketDir = process.env.SOCKET_DIR || '/run/leadmaster/session-manager';
const tokens = new Set((process.env.TOKENS || '').split(',').filter(Boolean));

const app = express();
app.disable('x-powered-by');

app.get('/health', (req, res) => res.json({ status: 'ok' }));

function auth(req, res, next) {
  const h = req.get('authorization') || '';
  const tok = h.startsWith('Bearer ') ? h.slice(7) : '';
  if (!tokens.has(tok)) {
    return res.status(401).json({ error: { code: 'unauthorized', message: 'missing, expired or revoked credentials' } });
  }
  next();
}

const proxies = new Map();
function proxyFor(id) {
  let p = proxies.get(id);
  if (!p) {
    p = createProxyMiddleware({
      target: { socketPath: `${socketDir}/${id}.sock` },
      pathRewrite: { [`^/session-manager/${id}`]: '' },
      agent: new (require('http').Agent)({ keepAlive: true, maxSockets: 256 }),
      proxyTimeout: 15000,
      on: {
        error: (err, req, res) => {
          res.status(503).json({ error: { code: 'unavailable', message: `session manager for cliente ${id}: ${err.code}` } });
        },
      },
    });
    proxies.set(id, p);
  }
  return p;
}

app.get('/session-manager/:id/status', auth, (req, res, next) => proxyFor(req.params.id)(req, res, next));

app.listen(port, '127.0.0.1', () => console.log(`express bench app on 127.0.0.1:${port}`));
