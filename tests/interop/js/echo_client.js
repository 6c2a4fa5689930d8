#!/usr/bin/env node
'use strict';
// A grpc-js echo.Echo client that runs named interop cases against TARGET and
// prints one JSON line per case:
//   {"case":NAME,"ok":bool,"problems":[...],"code":N,"details":..,"elapsed_ms":N,...}
// "ok" is "problems" being empty; the other keys are what the case observed.
//
//   node echo_client.js --target HOST:PORT --cases unary,bidi,... [--proto FILE]
//        [--idle-s 30] [--deadline-ms 5000] [--case-timeout-s 20] [--max-s 60]
//
// Cases: unary server_stream client_stream bidi metadata error_status deadline
// cancel big concurrent (one channel for all of them, in that order), and
// keepalive (its own channel: keepalive pings every 10 s with no call open, idle
// --idle-s seconds, then a call on the same channel) and first (a fresh
// channel, one unary call within --deadline-ms, grpc-js's transport trace kept
// for the report). Every call has a deadline; the whole run stops after --max-s.

const crypto = require('crypto');
const { DEFAULT_PROTO, MAX_MESSAGE, parseArgs, loadEcho, sleep } = require('./common');

const args = parseArgs(process.argv.slice(2), {
  target: '', cases: '', proto: DEFAULT_PROTO, idle_s: '30', deadline_ms: '5000',
  case_timeout_s: '20', max_s: '60',
});
const CASES = args.cases.split(',').filter((c) => c);
const TRACED = CASES.some((c) => c === 'keepalive' || c === 'first');
if (TRACED) {
  // Read by grpc-js when it loads: the lines go to traceLines below.
  process.env.GRPC_NODE_TRACE = 'keepalive,transport,subchannel';
  process.env.GRPC_NODE_VERBOSITY = 'DEBUG';
}
const grpc = require('@grpc/grpc-js');
const { Echo, service } = loadEcho(grpc, args.proto);

const traceLines = [];
if (TRACED) {
  const keep = (...parts) => {
    if (traceLines.length < 5000) traceLines.push(parts.join(' '));
  };
  grpc.setLogger({ error: keep, info: keep, debug: keep });
  grpc.setLogVerbosity(grpc.logVerbosity.DEBUG);
}

const MiB = 1024 * 1024;
const CALL_TIMEOUT_MS = 15000;
const BASE_OPTIONS = {
  'grpc.max_receive_message_length': MAX_MESSAGE,
  'grpc.max_send_message_length': MAX_MESSAGE,
  'grpc.use_local_subchannel_pool': 1,
};

function deadline(ms = CALL_TIMEOUT_MS) {
  return new Date(Date.now() + ms);
}

function newId() {
  return crypto.randomBytes(8).toString('hex');
}

function metadata(pairs) {
  const md = new grpc.Metadata();
  for (const [k, v] of pairs) md.add(k, v);
  return md;
}

/** Metadata as [[key, value]] with -bin values in base64 (for the JSON report). */
function mdList(md) {
  const out = [];
  if (!md) return out;
  for (const [k, values] of Object.entries(md.toJSON())) {
    for (const v of values) out.push([k, Buffer.isBuffer(v) ? v.toString('base64') : v]);
  }
  return out;
}

function mdFirst(md, key) {
  if (!md) return undefined;
  const v = md.get(key);
  return v.length ? String(v[0]) : undefined;
}

/** A call's outcome, from its 'metadata' and 'status' events. */
function watch(call, onData) {
  const out = { initial: null, trailing: null, code: null, details: '', messages: [] };
  call.on('metadata', (md) => { out.initial = md; });
  if (onData) {
    call.on('data', (msg) => {
      out.messages.push(msg);
      onData(msg);
    });
  }
  call.on('error', () => {}); // the status event carries it
  const done = new Promise((resolve) => {
    call.on('status', (st) => {
      out.code = st.code;
      out.details = st.details;
      out.trailing = st.metadata;
      resolve(out);
    });
  });
  return { out, done };
}

function unary(client, payload, md, ms = CALL_TIMEOUT_MS) {
  let reply = null;
  const call = client.Unary({ payload }, md, { deadline: deadline(ms) }, (err, r) => {
    if (!err) reply = r;
  });
  const { done } = watch(call);
  return done.then((out) => ({ ...out, reply }));
}

function equal(a, b) {
  return Buffer.isBuffer(a) && Buffer.isBuffer(b) && a.equals(b);
}

function base(out, started) {
  return {
    code: out.code, details: out.details, elapsed_ms: Date.now() - started,
    backend: mdFirst(out.initial, 'x-backend') ?? mdFirst(out.trailing, 'x-backend') ?? null,
  };
}

// --------------------------------------------------------------------- cases

const cases = {
  async unary(client, problems) {
    const id = newId();
    const payload = Buffer.from(`hello ${id}`);
    const started = Date.now();
    const out = await unary(client, payload, metadata([['x-test-id', id]]));
    if (out.code !== 0) problems.push(`status ${out.code}: ${out.details}`);
    else if (!out.reply || !equal(out.reply.payload, payload)) problems.push('reply differs');
    const r = base(out, started);
    if (!r.backend) problems.push('no x-backend metadata');
    return { ...r, id };
  },

  async server_stream(client, problems) {
    const id = newId();
    const payload = Buffer.from(`stream ${id}`);
    const started = Date.now();
    const call = client.ServerStream({ payload },
      metadata([['x-test-id', id], ['x-count', '5']]), { deadline: deadline() });
    const { done } = watch(call, () => {});
    const out = await done;
    if (out.code !== 0) problems.push(`status ${out.code}: ${out.details}`);
    if (out.messages.length !== 5) problems.push(`${out.messages.length} messages, not 5`);
    if (!out.messages.every((m) => equal(m.payload, payload))) problems.push('a message differs');
    return { ...base(out, started), id, messages: out.messages.length };
  },

  async client_stream(client, problems) {
    const id = newId();
    const started = Date.now();
    let reply = null;
    const call = client.ClientStream(metadata([['x-test-id', id]]), { deadline: deadline() },
      (err, r) => { if (!err) reply = r; });
    const { done } = watch(call);
    const sent = [Buffer.from('a'), Buffer.alloc(0), crypto.randomBytes(70000)];
    const hash = crypto.createHash('sha256');
    let total = 0;
    for (const payload of sent) {
      const bytes = service.ClientStream.requestSerialize({ payload });
      hash.update(bytes);
      total += bytes.length;
      call.write({ payload });
    }
    call.end();
    const out = await done;
    const want = `count=${sent.length} bytes=${total} sha256=${hash.digest('hex')}`;
    const got = reply ? reply.toString('ascii') : null;
    if (out.code !== 0) problems.push(`status ${out.code}: ${out.details}`);
    else if (got !== want) problems.push(`reply ${JSON.stringify(got)}, want ${want}`);
    return { ...base(out, started), id, reply: got };
  },

  async bidi(client, problems) {
    const id = newId();
    const started = Date.now();
    const call = client.Bidi(metadata([['x-test-id', id]]), { deadline: deadline() });
    let next = null;
    const { done } = watch(call, (msg) => { if (next) next(msg); });
    const rounds = 5;
    let echoed = 0;
    for (let i = 0; i < rounds; i++) {
      const payload = Buffer.from(`ping ${i} ${id}`);
      const got = new Promise((resolve) => { next = resolve; });
      call.write({ payload });
      const msg = await Promise.race([got, done.then(() => null)]);
      if (!msg) break;
      if (!equal(msg.payload, payload)) problems.push(`round ${i}: echo differs`);
      echoed += 1;
    }
    call.end();
    const out = await done;
    if (out.code !== 0) problems.push(`status ${out.code}: ${out.details}`);
    if (echoed !== rounds) problems.push(`${echoed} of ${rounds} pings echoed`);
    return { ...base(out, started), id, echoed };
  },

  async metadata(client, problems) {
    const id = newId();
    const all = Buffer.alloc(256);
    for (let i = 0; i < 256; i++) all[i] = i;
    const sent = [
      ['x-echo-text', 'v1 text'],
      ['x-echo-data-bin', all],
      ['x-echo-edge-bin', Buffer.from([0, 0, 255, 0])],
      ['x-echo-one-bin', Buffer.from([0x80])],
    ];
    const started = Date.now();
    const out = await unary(client, Buffer.from('md'), metadata([['x-test-id', id], ...sent]));
    if (out.code !== 0) problems.push(`status ${out.code}: ${out.details}`);
    const want = sent.map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString('base64') : v]);
    const initial = mdList(out.initial);
    const trailing = mdList(out.trailing);
    for (const [where, got] of [['initial', initial], ['trailing', trailing]]) {
      for (const [k, v] of want) {
        const vals = got.filter(([gk]) => gk === k).map(([, gv]) => gv);
        if (vals.length !== 1 || vals[0] !== v) {
          problems.push(`${where} ${k}: got ${JSON.stringify(vals)}, want ${JSON.stringify(v)}`);
        }
      }
    }
    return { ...base(out, started), id, sent: want, initial, trailing };
  },

  async error_status(client, problems) {
    const id = newId();
    const started = Date.now();
    const out = await unary(client, Buffer.from('x'), metadata([
      ['x-test-id', id], ['x-status', '7'], ['x-message', 'denied by test'],
    ]));
    if (out.code !== 7 || out.details !== 'denied by test') {
      problems.push(`status ${out.code} ${JSON.stringify(out.details)}, want 7 "denied by test"`);
    }
    return { ...base(out, started), id };
  },

  async deadline(client, problems) {
    const id = newId();
    const started = Date.now();
    const out = await unary(client, Buffer.from('slow'),
      metadata([['x-test-id', id], ['x-sleep-ms', '3000']]), 500);
    const r = base(out, started);
    if (out.code !== grpc.status.DEADLINE_EXCEEDED) {
      problems.push(`status ${out.code} (${out.details}), want 4 DEADLINE_EXCEEDED`);
    }
    if (r.elapsed_ms > 2500) problems.push(`took ${r.elapsed_ms} ms for a 500 ms deadline`);
    return { ...r, id };
  },

  async cancel(client, problems) {
    const id = newId();
    const started = Date.now();
    const call = client.ServerStream({ payload: Buffer.from('tick') },
      metadata([['x-test-id', id], ['x-count', '100'], ['x-sleep-ms', '100']]),
      { deadline: deadline() });
    let received = 0;
    const { done } = watch(call, () => {
      received += 1;
      if (received === 2) call.cancel();
    });
    const out = await done;
    if (out.code !== grpc.status.CANCELLED) {
      problems.push(`status ${out.code} (${out.details}), want 1 CANCELLED`);
    }
    if (received < 2 || received > 4) problems.push(`${received} messages before the cancel`);
    return { ...base(out, started), id, received };
  },

  async big(client, problems) {
    const id = newId();
    const payload = crypto.randomBytes(4 * MiB);
    const started = Date.now();
    const out = await unary(client, payload, metadata([['x-test-id', id]]));
    if (out.code !== 0) problems.push(`status ${out.code}: ${out.details}`);
    else if (!out.reply || !equal(out.reply.payload, payload)) {
      problems.push(`reply of ${out.reply ? out.reply.payload.length : 0} bytes differs`);
    }
    return { ...base(out, started), id, bytes: payload.length };
  },

  async concurrent(client, problems) {
    const id = newId();
    const n = 200;
    const started = Date.now();
    const outs = await Promise.all(Array.from({ length: n }, (_, i) => {
      const payload = Buffer.from(`call ${i} ${id}`);
      return unary(client, payload, metadata([['x-test-id', `${id}-${i}`]]))
        .then((out) => ({ out, payload }));
    }));
    const codes = {};
    let wrong = 0;
    for (const { out, payload } of outs) {
      codes[out.code] = (codes[out.code] ?? 0) + 1;
      if (out.code === 0 && !(out.reply && equal(out.reply.payload, payload))) wrong += 1;
    }
    if ((codes[0] ?? 0) !== n) problems.push(`statuses ${JSON.stringify(codes)}`);
    if (wrong) problems.push(`${wrong} replies differ`);
    const bad = outs.find(({ out }) => out.code !== 0);
    return {
      code: bad ? bad.out.code : 0, details: bad ? bad.out.details : '',
      elapsed_ms: Date.now() - started, id, calls: n, statuses: codes,
    };
  },
};

// Cases with a channel of their own.
const ownChannel = {
  async keepalive(problems) {
    const idleMs = Number(args.idle_s) * 1000;
    const client = new Echo(args.target, grpc.credentials.createInsecure(), {
      ...BASE_OPTIONS,
      'grpc.keepalive_time_ms': 10000,
      'grpc.keepalive_permit_without_calls': 1,
    });
    try {
      const channel = client.getChannel();
      const first = await unary(client, Buffer.from('before'), metadata([]));
      if (first.code !== 0) problems.push(`first call: status ${first.code}: ${first.details}`);
      const states = [grpc.connectivityState[channel.getConnectivityState(false)]];
      const idleStart = Date.now();
      const idleEnd = idleStart + idleMs;
      while (Date.now() < idleEnd) {
        const now = channel.getConnectivityState(false);
        const changed = await new Promise((resolve) => {
          channel.watchConnectivityState(now, new Date(idleEnd), (err) => resolve(!err));
        });
        if (changed) states.push(grpc.connectivityState[channel.getConnectivityState(false)]);
      }
      const second = await unary(client, Buffer.from('after'), metadata([]));
      if (second.code !== 0) problems.push(`call after idle: status ${second.code}: ${second.details}`);
      const count = (re) => traceLines.filter((l) => re.test(l)).length;
      const pings = count(/Sending ping/);
      const acks = count(/Received ping response/);
      const goaways = traceLines.filter((l) => /GOAWAY/.test(l));
      const connections = count(/Established TCP connection/);
      const wantPings = Math.floor(idleMs / 10000) - 1;
      if (acks < wantPings) problems.push(`${acks} ping acks (${pings} pings) in ${idleMs} ms idle`);
      if (goaways.length) problems.push(`GOAWAY: ${goaways.join(' | ')}`);
      if (connections !== 1) problems.push(`${connections} TCP connections, want 1`);
      if (states.length !== 1 || states[0] !== 'READY') {
        problems.push(`channel states while idle: ${states.join(' -> ')}`);
      }
      return {
        code: second.code, details: second.details, elapsed_ms: Date.now() - idleStart,
        pings, acks, goaways, connections, states,
      };
    } finally {
      client.close();
    }
  },

  async first(problems) {
    const client = new Echo(args.target, grpc.credentials.createInsecure(), BASE_OPTIONS);
    try {
      const id = newId();
      const started = Date.now();
      const out = await unary(client, Buffer.from(`first ${id}`),
        metadata([['x-test-id', id]]), Number(args.deadline_ms));
      if (out.code !== 0) problems.push(`status ${out.code}: ${out.details}`);
      const r = { ...base(out, started), id };
      if (out.code !== 0) r.trace = traceLines.slice(-40);
      return r;
    } finally {
      client.close();
    }
  },
};

function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve({ timedOut: true }), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function main() {
  if (!args.target) throw new Error('--target HOST:PORT is required');
  const unknown = CASES.filter((c) => !(c in cases) && !(c in ownChannel));
  if (unknown.length) throw new Error(`unknown cases: ${unknown.join(', ')}`);
  setTimeout(() => {
    process.stdout.write(JSON.stringify({ fatal: `still running after ${args.max_s} s` }) + '\n');
    process.exit(3);
  }, Number(args.max_s) * 1000).unref();

  let shared = null;
  for (const name of CASES) {
    const problems = [];
    let result;
    try {
      let run;
      if (name in ownChannel) {
        run = ownChannel[name](problems);
      } else {
        shared ??= new Echo(args.target, grpc.credentials.createInsecure(), BASE_OPTIONS);
        run = cases[name](shared, problems);
      }
      const limit = name === 'keepalive'
        ? (Number(args.idle_s) + 2 * Number(args.case_timeout_s)) * 1000
        : Number(args.case_timeout_s) * 1000;
      result = await withTimeout(run, limit);
      if (result.timedOut) {
        problems.push(`case still running after ${limit} ms`);
        result = {};
      }
    } catch (err) {
      problems.push(`exception: ${err && err.stack ? err.stack : err}`);
      result = {};
    }
    process.stdout.write(JSON.stringify({ case: name, ok: problems.length === 0, problems,
      ...result }) + '\n');
  }
  if (shared) shared.close();
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(2);
});
