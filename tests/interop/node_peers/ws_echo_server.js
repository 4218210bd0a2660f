#!/usr/bin/env node
// Echo server built on the Node.js `ws` package: a real, independent peer for
// the rfc6455 client interop tests.
//
// Usage: node ws_echo_server.js [--port N] [--deflate] [--threshold BYTES]
//          [--server-no-context-takeover] [--client-no-context-takeover]
//          [--server-max-window-bits N] [--client-max-window-bits N]
//          [--cert PEM_FILE --key PEM_FILE]          (wss:// instead of ws://)
//
// Stdout protocol (line based, flushed as it happens):
//   listening <port>                        once the socket accepts
//   {"event": "open", ...}                   one JSON object per line after that,
//   {"event": "close", "code": N, ...}      for connection events
//
// Echo rules: text is echoed as text, binary as binary, with the same bytes.
// Text messages of these forms are commands instead of data:
//   close:<code>:<reason>           close the connection with that code/reason
//   frag:<text|binary>:<n>:<data>  send <data> (UTF-8) as one message in n fragments
//   ping:<data>                     send a ping; when the pong arrives, send the
//                                   text "pong:<pong payload>"
//   info                            reply with a JSON text describing the
//                                   handshake (offered/accepted extensions, path)
'use strict';

const fs = require('fs');
const https = require('https');
const { WebSocketServer } = require('ws');

function parseArgs(argv) {
  const opts = {
    port: 0,
    deflate: false,
    threshold: 0,
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    serverMaxWindowBits: undefined,
    clientMaxWindowBits: undefined,
    cert: undefined,
    key: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    switch (arg) {
      case '--port': opts.port = Number(next()); break;
      case '--deflate': opts.deflate = true; break;
      case '--threshold': opts.threshold = Number(next()); break;
      case '--server-no-context-takeover': opts.serverNoContextTakeover = true; break;
      case '--client-no-context-takeover': opts.clientNoContextTakeover = true; break;
      case '--server-max-window-bits': opts.serverMaxWindowBits = Number(next()); break;
      case '--client-max-window-bits': opts.clientMaxWindowBits = Number(next()); break;
      case '--cert': opts.cert = next(); break;
      case '--key': opts.key = next(); break;
      default: throw new Error(`unknown argument ${arg}`);
    }
  }
  return opts;
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function main() {
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

  const serverOptions = { perMessageDeflate, maxPayload: 64 * 1024 * 1024 };
  let httpsServer = null;
  if (opts.cert !== undefined) {
    httpsServer = https.createServer({
      cert: fs.readFileSync(opts.cert),
      key: fs.readFileSync(opts.key),
    });
    serverOptions.server = httpsServer;
  } else {
    serverOptions.host = '127.0.0.1';
    serverOptions.port = opts.port;
  }
  const wss = new WebSocketServer(serverOptions);

  // The 'headers' event shows the response headers before they are written:
  // the one place the accepted Sec-WebSocket-Extensions line is visible.
  const accepted = new WeakMap();
  wss.on('headers', (headers, req) => {
    const line = headers.find((h) => h.toLowerCase().startsWith('sec-websocket-extensions:'));
    accepted.set(req, line ? line.slice(line.indexOf(':') + 1).trim() : '');
  });

  if (httpsServer) {
    httpsServer.listen(opts.port, '127.0.0.1', () => {
      process.stdout.write(`listening ${httpsServer.address().port}\n`);
    });
  } else {
    wss.on('listening', () => {
      process.stdout.write(`listening ${wss.address().port}\n`);
    });
  }

  let nextId = 0;
  wss.on('connection', (ws, req) => {
    const id = ++nextId;
    const info = {
      event: 'open',
      id,
      path: req.url,
      offered_extensions: req.headers['sec-websocket-extensions'] || '',
      accepted_extensions: accepted.get(req) || '',
      protocol: ws.protocol,
    };
    emit(info);

    ws.on('message', (data, isBinary) => {
      if (!isBinary) {
        const text = data.toString('utf8');
        if (text.startsWith('close:')) {
          const rest = text.slice('close:'.length);
          const sep = rest.indexOf(':');
          const code = Number(sep < 0 ? rest : rest.slice(0, sep));
          const reason = sep < 0 ? '' : rest.slice(sep + 1);
          ws.close(code, reason);
          return;
        }
        if (text.startsWith('frag:')) {
          const [, kind, n, ...payloadParts] = text.split(':');
          const payload = Buffer.from(payloadParts.join(':'), 'utf8');
          const count = Math.max(1, Number(n));
          const step = Math.ceil(payload.length / count) || 1;
          for (let i = 0; i < count; i++) {
            const part = payload.subarray(i * step, (i + 1) * step);
            ws.send(part, { binary: kind === 'binary', fin: i === count - 1 });
          }
          return;
        }
        if (text.startsWith('ping:')) {
          ws.once('pong', (pongData) => ws.send(`pong:${pongData.toString('utf8')}`));
          ws.ping(Buffer.from(text.slice('ping:'.length), 'utf8'));
          return;
        }
        if (text === 'info') {
          ws.send(JSON.stringify(info));
          return;
        }
      }
      ws.send(data, { binary: isBinary });
    });

    ws.on('ping', (data) => emit({ event: 'ping', id, data: data.toString('utf8') }));
    ws.on('error', (err) => emit({ event: 'error', id, message: String(err.message) }));
    ws.on('close', (code, reason) => {
      emit({ event: 'close', id, code, reason: reason.toString('utf8') });
    });
  });

  const stop = () => {
    wss.close();
    for (const client of wss.clients) client.terminate();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
