#!/usr/bin/env node
// Scripted client built on the Node.js `ws` package: a real, independent peer
// for the rfc6455 server interop tests.
//
// Usage: node ws_client.js URL [--script JSON] [--deflate] [--threshold BYTES]
//          [--server-no-context-takeover] [--client-no-context-takeover]
//          [--server-max-window-bits N] [--client-max-window-bits N]
//          [--timeout SECONDS] [--ca PEM_FILE]
//
// The script is a JSON array of steps run in order (default: DEFAULT_SCRIPT):
//   {"op": "text", "data": "..."}                       send a text message
//   {"op": "text", "size": N, "fill": "compressible"|"random"}
//   {"op": "text", "hex": "..."}                        raw bytes in a text frame (bad UTF-8)
//   {"op": "binary", "hex": "..."}                      send a binary message
//   {"op": "binary", "size": N, "fill": "zeros"|"compressible"|"random"}
//   {"op": "fragments", "type": "text"|"binary", "parts": ["..", ".."]}
//                                  one message sent as several frames (fin: false)
//   {"op": "ping", "data": "..."}  send a ping and wait for its pong
//   {"op": "recv"}                 wait for one message
//   {"op": "wait_ping"}            wait until the peer has sent us a ping (ws answers it)
//   {"op": "close", "code": N, "reason": "..."}   close and wait for the close
//   {"op": "expect_close"}         wait for the peer to close
// Data steps wait for "expect" messages afterwards (default 1: the echo).
//
// Stdout: one JSON object per line: open, sent (with sha256), message (type,
// length, sha256, and the data itself when short), ping, pong, close, error.
// Exit status: 0 when the script ran to the end and a close was seen (the
// close code is in the "close" line: exit statuses cannot carry 1000-4999),
// 1 on error, 2 on the overall timeout.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const WebSocket = require('ws');

const MIB = 1024 * 1024;

const DEFAULT_SCRIPT = [
  { op: 'text', data: 'hello' },
  { op: 'text', data: 'h\u00e9llo w\u00f6rld \u2603 \ud83d\ude00' },
  { op: 'text', data: '' },
  { op: 'binary', hex: '00ff10207f80' },
  { op: 'binary', hex: '' },
  { op: 'binary', size: MIB, fill: 'random' },
  { op: 'text', size: MIB, fill: 'compressible' },
  { op: 'fragments', type: 'text', parts: ['frag', 'mented ', 'text \u2603'] },
  { op: 'fragments', type: 'binary', parts: ['\u0001\u0002', '\u0003', '\u0004\u0005\u0006'] },
  { op: 'ping', data: 'are you there' },
  { op: 'close', code: 1000, reason: 'done' },
];

function parseArgs(argv) {
  const opts = {
    url: undefined,
    script: DEFAULT_SCRIPT,
    deflate: false,
    threshold: 0,
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    serverMaxWindowBits: undefined,
    clientMaxWindowBits: undefined,
    timeout: 30,
    ca: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    switch (arg) {
      case '--script': opts.script = JSON.parse(next()); break;
      case '--deflate': opts.deflate = true; break;
      case '--threshold': opts.threshold = Number(next()); break;
      case '--server-no-context-takeover': opts.serverNoContextTakeover = true; break;
      case '--client-no-context-takeover': opts.clientNoContextTakeover = true; break;
      case '--server-max-window-bits': opts.serverMaxWindowBits = Number(next()); break;
      case '--client-max-window-bits': opts.clientMaxWindowBits = Number(next()); break;
      case '--timeout': opts.timeout = Number(next()); break;
      case '--ca': opts.ca = next(); break;
      default:
        if (arg.startsWith('--') || opts.url !== undefined) {
          throw new Error(`unexpected argument ${arg}`);
        }
        opts.url = arg;
    }
  }
  if (opts.url === undefined) throw new Error('missing URL');
  return opts;
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function sha256(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

// Deterministic compressible filler; random filler comes from the CSPRNG.
function fill(size, kind, isText) {
  if (kind === 'zeros') return Buffer.alloc(size);
  if (kind === 'random') {
    const raw = crypto.randomBytes(size);
    if (!isText) return raw;
    // Printable ASCII keeps random text valid UTF-8 (and barely compressible).
    for (let i = 0; i < size; i++) raw[i] = 0x21 + (raw[i] % 94);
    return raw;
  }
  const unit = Buffer.from('The quick brown fox jumps over the lazy dog. ', 'utf8');
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i += unit.length) unit.copy(out, i, 0, Math.min(unit.length, size - i));
  return out;
}

function payloadOf(step) {
  const isText = step.op === 'text';
  if (step.data !== undefined) return Buffer.from(step.data, 'utf8');
  if (step.hex !== undefined) return Buffer.from(step.hex, 'hex');
  return fill(step.size || 0, step.fill || 'compressible', isText);
}

function describe(buf, isText) {
  const out = { type: isText ? 'text' : 'binary', length: buf.length, sha256: sha256(buf) };
  if (buf.length <= 256) out.data = isText ? buf.toString('utf8') : buf.toString('hex');
  return out;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  let perMessageDeflate = false;
  if (opts.deflate) {
    // Only set what was asked for: ws reads `false` as "refuse", unset as "either".
    perMessageDeflate = { threshold: opts.threshold };
    if (opts.serverNoContextTakeover) perMessageDeflate.serverNoContextTakeover = true;
    if (opts.clientNoContextTakeover) perMessageDeflate.clientNoContextTakeover = true;
    if (opts.serverMaxWindowBits !== undefined) {
      perMessageDeflate.serverMaxWindowBits = opts.serverMaxWindowBits;
    }
    if (opts.clientMaxWindowBits !== undefined) {
      perMessageDeflate.clientMaxWindowBits = opts.clientMaxWindowBits;
    }
  }

  const timer = setTimeout(() => {
    emit({ event: 'error', message: `timeout after ${opts.timeout}s` });
    process.exit(2);
  }, opts.timeout * 1000);

  const wsOptions = { perMessageDeflate, maxPayload: 64 * MIB };
  // wss:// with a test certificate: trust exactly that CA (verification stays on).
  if (opts.ca !== undefined) wsOptions.ca = fs.readFileSync(opts.ca);
  const ws = new WebSocket(opts.url, wsOptions);

  // One queue per kind of incoming thing; the script awaits them in order.
  const queues = { message: [], pong: [], ping: [], close: [] };
  const waiters = { message: [], pong: [], ping: [], close: [] };
  const push = (kind, value) => {
    const waiter = waiters[kind].shift();
    if (waiter) waiter(value);
    else queues[kind].push(value);
  };
  const next = (kind) => {
    if (queues[kind].length) return Promise.resolve(queues[kind].shift());
    return new Promise((resolve) => waiters[kind].push(resolve));
  };

  let closeInfo = null;
  let failed = false;

  ws.on('upgrade', (res) => {
    emit({
      event: 'upgrade',
      status: res.statusCode,
      extensions: res.headers['sec-websocket-extensions'] || '',
    });
  });
  ws.on('unexpected-response', (req, res) => {
    emit({ event: 'error', message: `unexpected response ${res.statusCode}` });
    process.exit(1);
  });
  ws.on('message', (data, isBinary) => {
    const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data);
    const msg = { event: 'message', ...describe(buf, !isBinary) };
    emit(msg);
    push('message', msg);
  });
  ws.on('ping', (data) => {
    const msg = { event: 'ping', data: data.toString('utf8') };
    emit(msg);
    push('ping', msg);
  });
  ws.on('pong', (data) => {
    const msg = { event: 'pong', data: data.toString('utf8') };
    emit(msg);
    push('pong', msg);
  });
  ws.on('error', (err) => {
    failed = true;
    emit({ event: 'error', message: String(err.message) });
  });
  ws.on('close', (code, reason) => {
    closeInfo = { event: 'close', code, reason: reason.toString('utf8') };
    emit(closeInfo);
    push('close', closeInfo);
    // Wake anything still waiting for data that will never come.
    for (const kind of ['message', 'pong', 'ping']) {
      for (const waiter of waiters[kind].splice(0)) waiter(null);
    }
  });

  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('close', () => reject(new Error('closed before open')));
  });
  emit({ event: 'open', extensions: ws.extensions, protocol: ws.protocol });

  for (const [index, step] of opts.script.entries()) {
    if (closeInfo && step.op !== 'expect_close' && step.op !== 'close') break;
    switch (step.op) {
      case 'text':
      case 'binary': {
        const buf = payloadOf(step);
        const isText = step.op === 'text';
        // A text step given as hex goes out as raw bytes, valid UTF-8 or not.
        const raw = isText && step.hex !== undefined;
        ws.send(isText && !raw ? buf.toString('utf8') : buf, { binary: !isText });
        emit({ event: 'sent', step: index, ...describe(buf, isText) });
        for (let i = 0; i < (step.expect ?? 1); i++) await next('message');
        break;
      }
      case 'fragments': {
        const parts = step.parts.map((p) => Buffer.from(p, step.type === 'text' ? 'utf8' : 'latin1'));
        parts.forEach((part, i) => {
          ws.send(part, { binary: step.type !== 'text', fin: i === parts.length - 1 });
        });
        emit({ event: 'sent', step: index, fragments: parts.length, ...describe(Buffer.concat(parts), step.type === 'text') });
        for (let i = 0; i < (step.expect ?? 1); i++) await next('message');
        break;
      }
      case 'ping':
        ws.ping(Buffer.from(step.data || '', 'utf8'));
        await next('pong');
        break;
      case 'recv':
        await next('message');
        break;
      case 'wait_ping':
        await next('ping');
        break;
      case 'close':
        if (!closeInfo) ws.close(step.code, step.reason || '');
        await next('close');
        break;
      case 'expect_close':
        await next('close');
        break;
      default:
        throw new Error(`unknown step ${JSON.stringify(step)}`);
    }
  }

  if (!closeInfo) {
    ws.close(1000, 'script end');
    await next('close');
  }
  clearTimeout(timer);
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  emit({ event: 'error', message: String(err && err.message) });
  process.exit(1);
});
