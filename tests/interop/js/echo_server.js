#!/usr/bin/env node
'use strict';
// A grpc-js echo.Echo server that behaves like the Python echo backend
// (grpc_proxy_demo/echo.py) for what the interop tests use:
//   Unary         returns the request (x-status N / x-message T: fail with N, T);
//   ServerStream  echoes the request x-count times (default 1);
//   ClientStream  replies "count=N bytes=M sha256=HEX" over the requests' bytes
//                 (as received);
//   Bidi          echoes each request as it arrives.
// x-echo-* request metadata (-bin too) is echoed in the initial and trailing
// metadata, with x-backend: NAME; x-sleep-ms: N sleeps before each reply or
// message sent (cut short by a cancel).
//
//   node echo_server.js [--port 0] [--host 127.0.0.1] [--name js] [--proto FILE]
//
// Prints "listening on HOST:PORT" then "ready", then one JSON line per finished
// call: {"event":"end","method":..,"id":<x-test-id>,"completed":bool,
// "cancelled":bool,"messages_in":N,"bytes_in":N,"peer":..}. Exits 0 on SIGTERM
// or SIGINT, or when its stdin closes (so it never outlives the test that
// started it).

const crypto = require('crypto');
const { DEFAULT_PROTO, MAX_MESSAGE, parseArgs, loadEcho } = require('./common');

const args = parseArgs(process.argv.slice(2), {
  port: '0', host: '127.0.0.1', name: 'js', proto: DEFAULT_PROTO,
});
const grpc = require('@grpc/grpc-js');
const { service } = loadEcho(grpc, args.proto);

function emitLine(text) {
  process.stdout.write(text + '\n');
}

function emit(obj) {
  emitLine(JSON.stringify(obj));
}

function first(md, key) {
  const v = md.get(key);
  return v.length ? String(v[0]) : undefined;
}

function int(text, dflt) {
  const n = Number.parseInt(text ?? '', 10);
  return Number.isNaN(n) ? dflt : n;
}

/** Per-call state: controls from the metadata, echo metadata, the end event. */
class CallState {
  constructor(method, call) {
    this.method = method;
    this.call = call;
    const md = call.metadata;
    this.id = first(md, 'x-test-id') ?? null;
    this.peer = call.getPeer();
    this.sleepMs = Math.max(0, int(first(md, 'x-sleep-ms'), 0));
    this.count = Math.max(0, int(first(md, 'x-count'), 1));
    this.status = int(first(md, 'x-status'), 0);
    this.message = first(md, 'x-message') ?? '';
    this.echo = [['x-backend', args.name]];
    for (const [key, values] of Object.entries(md.toJSON())) {
      if (key.startsWith('x-echo-')) {
        for (const v of values) this.echo.push([key, v]);
      }
    }
    this.messagesIn = 0;
    this.bytesIn = 0;
    this.completed = false;
    this.cancelled = false;
    this.reported = false;
    this.wakers = new Set();
    call.on('cancelled', () => {
      this.cancelled = true;
      for (const wake of this.wakers) wake();
      this.report();
    });
  }

  metadata() {
    const md = new grpc.Metadata();
    for (const [k, v] of this.echo) md.add(k, v);
    return md;
  }

  got(bytes) {
    this.messagesIn += 1;
    this.bytesIn += bytes;
  }

  /** Sleep x-sleep-ms; false if the call was cancelled meanwhile. */
  sleep() {
    if (this.cancelled) return Promise.resolve(false);
    if (this.sleepMs <= 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.wakers.delete(wake);
        resolve(!this.cancelled);
      };
      const timer = setTimeout(wake, this.sleepMs);
      this.wakers.add(wake);
    });
  }

  complete() {
    this.completed = true;
    this.report();
  }

  report() {
    if (this.reported) return;
    this.reported = true;
    emit({
      event: 'end', method: this.method, id: this.id, completed: this.completed,
      cancelled: this.cancelled, messages_in: this.messagesIn, bytes_in: this.bytesIn,
      peer: this.peer,
    });
  }
}

function write(call, msg) {
  return new Promise((resolve) => {
    if (call.write(msg)) resolve();
    else call.once('drain', resolve);
  });
}

const handlers = {
  async Unary(call, callback) {
    const st = new CallState('Unary', call);
    st.got(call.request.payload.length);
    if (st.status > 0 && st.status <= 16) {
      st.complete();
      callback({ code: st.status, details: st.message, metadata: st.metadata() });
      return;
    }
    call.sendMetadata(st.metadata());
    if (!(await st.sleep())) return;
    st.complete();
    callback(null, call.request, st.metadata());
  },

  async ServerStream(call) {
    const st = new CallState('ServerStream', call);
    st.got(call.request.payload.length);
    call.sendMetadata(st.metadata());
    for (let i = 0; i < st.count; i++) {
      if (!(await st.sleep())) return;
      await write(call, call.request);
    }
    if (st.cancelled) return;
    st.complete();
    call.end(st.metadata());
  },

  ClientStream(call, callback) {
    const st = new CallState('ClientStream', call);
    const hash = crypto.createHash('sha256');
    let total = 0;
    let invalid = null;
    call.sendMetadata(st.metadata());
    call.on('data', (bytes) => {
      try {
        decodeRequest(bytes);
      } catch (err) {
        invalid ??= `request ${st.messagesIn} is not an EchoMessage: ${err}`;
      }
      st.got(bytes.length);
      total += bytes.length;
      hash.update(bytes);
    });
    call.on('end', async () => {
      if (!(await st.sleep())) return;
      st.complete();
      if (invalid) {
        callback({ code: grpc.status.INVALID_ARGUMENT, details: invalid, metadata: st.metadata() });
        return;
      }
      const reply = `count=${st.messagesIn} bytes=${total} sha256=${hash.digest('hex')}`;
      callback(null, Buffer.from(reply, 'ascii'), st.metadata());
    });
  },

  Bidi(call) {
    const st = new CallState('Bidi', call);
    call.sendMetadata(st.metadata());
    let chain = Promise.resolve(true);
    call.on('data', (msg) => {
      st.got(msg.payload.length);
      chain = chain.then(async (alive) => {
        if (!alive || !(await st.sleep())) return false;
        await write(call, msg);
        return true;
      });
    });
    call.on('end', () => {
      chain.then((alive) => {
        if (!alive || st.cancelled) return;
        st.complete();
        call.end(st.metadata());
      });
    });
  },
};

const server = new grpc.Server({
  'grpc.max_receive_message_length': MAX_MESSAGE,
  'grpc.max_send_message_length': MAX_MESSAGE,
});
// ClientStream hashes the request bytes as they came (as the Python backend
// does; a re-encoding can differ: protobuf.js writes an empty payload as 0a 00),
// after checking that they decode as EchoMessage.
const decodeRequest = service.ClientStream.requestDeserialize;
server.addService({
  ...service,
  ClientStream: { ...service.ClientStream, requestDeserialize: (b) => b },
}, handlers);

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  server.tryShutdown(() => process.exit(0));
  setTimeout(() => {
    server.forceShutdown();
    process.exit(0);
  }, 1000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();

server.bindAsync(`${args.host}:${args.port}`, grpc.ServerCredentials.createInsecure(),
  (err, port) => {
    if (err) {
      process.stderr.write(`cannot listen on ${args.host}:${args.port}: ${err.message}\n`);
      process.exit(2);
    }
    emitLine(`listening on ${args.host}:${port}`);
    emitLine('ready');
  });

