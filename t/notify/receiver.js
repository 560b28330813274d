#!/usr/bin/env node
// The reference webhook receiver for Nexus notifications (Node 20, no npm
// packages). It implements the receiver contract of docs/notifications.md:
// it checks the signature with a constant-time compare, refuses a stale
// timestamp, and dedupes by X-Notification-Id. The tests, `make bench`
// and `make demo` run it; it is also the example to port to other
// languages.
//
//   node t/notify/receiver.js --port N [--host 127.0.0.1] [--secret S]
//        [--max-skew 300] [--quiet]
//
// Any POST outside /__ is a delivery. Per path (longest prefix wins, "/"
// is the default), behaviour can be set at start (--secret) or at run time:
//
//   POST /__config  {"path": "/a", "secret": "s" | null,
//                    "require_signature": true|false,
//                    "fail_first": N,        answer fail_status to the first
//                                            N deliveries of each id
//                    "fail_status": 500,
//                    "status": 200,          answer this to everything else
//                    "location": "http://…", with status 3xx: Location
//                    "delay_ms": 0,          wait before answering
//                    "body": "…"}            the answer's body
//   GET  /__received[?path=/a]  every accepted delivery, in order:
//        {id, attempt, event_type, tenant, path, timestamp, signed,
//         duplicate, received_at, body (parsed), raw (the exact bytes)}
//   GET  /__stats     {deliveries, accepted, unique, duplicates, rejected,
//                      failed_on_purpose, reasons: {...}}
//   POST /__reset     forget everything (configuration included)
//   GET  /__health
//
// A rejected delivery gets 401 {"error": "<reason>"}: missing_signature,
// bad_signature_format, stale_timestamp, bad_signature. It is not
// recorded as received, so the sender retries it.

'use strict';

const http = require('http');
const crypto = require('crypto');

const args = { port: 0, host: '127.0.0.1', secret: null, maxSkew: 300,
               quiet: false };

for (let i = 2; i < process.argv.length; i++) {
    const a = process.argv[i];
    const next = () => process.argv[++i];
    if (a === '--port') args.port = parseInt(next(), 10);
    else if (a === '--host') args.host = next();
    else if (a === '--secret') args.secret = next();
    else if (a === '--max-skew') args.maxSkew = parseInt(next(), 10);
    else if (a === '--quiet') args.quiet = true;
    else { console.error(`receiver: unknown argument ${a}`); process.exit(2); }
}

let configs;
let received;
let stats;
let attemptsById;
let ids;

function reset() {
    configs = { '/': { secret: args.secret, require_signature: !!args.secret,
                       fail_first: 0, fail_status: 500, status: 200,
                       location: null, delay_ms: 0, body: '{"ok":true}' } };
    received = [];
    stats = { deliveries: 0, accepted: 0, unique: 0, duplicates: 0,
              rejected: 0, failed_on_purpose: 0, reasons: {} };
    attemptsById = new Map();
    ids = new Set();
}

reset();

function configFor(path) {
    let best = '/';
    for (const p of Object.keys(configs)) {
        if (path.startsWith(p) && p.length > best.length) best = p;
    }
    return configs[best];
}

function reply(res, status, obj, headers) {
    const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
    res.writeHead(status, Object.assign({ 'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(body) }, headers || {}));
    res.end(body);
}

// The check every receiver must make: timestamp fresh, then the HMAC of
// id "." timestamp "." raw body, compared in constant time.
function verify(cfg, req, raw) {
    const sig = req.headers['x-notification-signature'];
    const ts = req.headers['x-notification-timestamp'];
    const id = req.headers['x-notification-id'] || '';

    if (!cfg.secret) return null;
    if (sig === undefined || ts === undefined) {
        return cfg.require_signature ? 'missing_signature' : null;
    }
    if (!/^sha256=[0-9a-f]{64}$/.test(sig) || !/^[0-9]{1,12}$/.test(ts)) {
        return 'bad_signature_format';
    }
    const now = Math.floor(Date.now() / 1000);
    if (Math.abs(now - parseInt(ts, 10)) > args.maxSkew) {
        return 'stale_timestamp';
    }
    const mac = crypto.createHmac('sha256', cfg.secret);
    mac.update(`${id}.${ts}.`);
    mac.update(raw);
    const want = Buffer.from('sha256=' + mac.digest('hex'));
    const got = Buffer.from(sig);
    if (want.length !== got.length || !crypto.timingSafeEqual(want, got)) {
        return 'bad_signature';
    }
    return null;
}

function delivery(req, res, raw) {
    const path = req.url.split('?')[0];
    const cfg = configFor(path);
    const id = req.headers['x-notification-id'] || '';

    stats.deliveries++;

    const why = verify(cfg, req, raw);
    if (why) {
        stats.rejected++;
        stats.reasons[why] = (stats.reasons[why] || 0) + 1;
        return reply(res, 401, { error: why });
    }

    const seen = (attemptsById.get(id) || 0) + 1;
    attemptsById.set(id, seen);

    if (seen <= cfg.fail_first) {
        stats.failed_on_purpose++;
        return reply(res, cfg.fail_status, { error: 'failing on purpose' });
    }

    let body = null;
    try { body = JSON.parse(raw.toString('utf8')); } catch (e) { body = null; }

    const duplicate = ids.has(id);
    if (duplicate) {
        stats.duplicates++;
    } else {
        ids.add(id);
        stats.unique++;
    }
    stats.accepted++;

    received.push({
        id, path, duplicate,
        attempt: parseInt(req.headers['x-notification-attempt'] || '0', 10),
        event_type: req.headers['x-notification-event-type'] || null,
        tenant: req.headers['x-notification-tenant-id'] || null,
        timestamp: req.headers['x-notification-timestamp'] || null,
        signed: !!req.headers['x-notification-signature'],
        content_type: req.headers['content-type'] || null,
        headers: req.headers,
        received_at: Date.now(),
        body,
        raw: raw.toString('utf8'),
    });

    const headers = {};
    if (cfg.location) headers.Location = cfg.location;
    return reply(res, cfg.status, cfg.body, headers);
}

const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
        const raw = Buffer.concat(chunks);
        const url = new URL(req.url, 'http://x');

        if (url.pathname === '/__health') {
            return reply(res, 200, { status: 'ok' });
        }
        if (url.pathname === '/__stats') {
            return reply(res, 200, stats);
        }
        if (url.pathname === '/__received') {
            const p = url.searchParams.get('path');
            return reply(res, 200,
                p ? received.filter((r) => r.path.startsWith(p)) : received);
        }
        if (url.pathname === '/__reset' && req.method === 'POST') {
            reset();
            return reply(res, 200, { ok: true });
        }
        if (url.pathname === '/__config' && req.method === 'POST') {
            let c;
            try { c = JSON.parse(raw.toString('utf8')); } catch (e) {
                return reply(res, 400, { error: 'not JSON' });
            }
            const path = c.path || '/';
            const base = Object.assign({}, configs[path] || configs['/']);
            for (const k of ['secret', 'require_signature', 'fail_first',
                             'fail_status', 'status', 'location', 'delay_ms',
                             'body']) {
                if (k in c) base[k] = c[k];
            }
            if ('secret' in c && !('require_signature' in c)) {
                base.require_signature = !!c.secret;
            }
            configs[path] = base;
            return reply(res, 200, { ok: true, path, config: base });
        }
        if (url.pathname.startsWith('/__')) {
            return reply(res, 404, { error: 'no such control endpoint' });
        }
        if (req.method !== 'POST') {
            return reply(res, 405, { error: 'deliveries are POSTs' });
        }

        const delay = configFor(url.pathname).delay_ms;
        if (delay > 0) {
            setTimeout(() => delivery(req, res, raw), delay);
        } else {
            delivery(req, res, raw);
        }
    });
});

server.keepAliveTimeout = 60000;

server.listen(args.port, args.host, () => {
    if (!args.quiet) {
        console.log(`receiver: listening on ${args.host}:${server.address().port}`);
    }
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
process.on('SIGINT', () => server.close(() => process.exit(0)));
