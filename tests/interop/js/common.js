'use strict';
// Shared by echo_server.js and echo_client.js: arguments, the echo.Echo
// service loaded at run time from grpc_proxy_demo/echo.proto with proto-loader.

const path = require('path');

const DEFAULT_PROTO = path.resolve(__dirname, '..', '..', '..', 'grpc_proxy_demo', 'echo.proto');
const MAX_MESSAGE = 64 * 1024 * 1024;

/** `--key value` pairs into an object over `defaults` (every key must be known). */
function parseArgs(argv, defaults) {
  const out = { ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i];
    if (!key.startsWith('--') || i + 1 >= argv.length) {
      throw new Error(`bad argument ${JSON.stringify(key)}: expected --key value pairs`);
    }
    const name = key.slice(2).replace(/-/g, '_');
    if (!(name in defaults)) {
      throw new Error(`unknown argument ${key}`);
    }
    out[name] = argv[i + 1];
  }
  return out;
}

/**
 * The echo.Echo service definition, loaded with proto-loader. ClientStream's
 * reply is raw bytes on both sides (the echo backend's reply is an ASCII
 * summary, not a protobuf message; see grpc_proxy_demo/echo.proto).
 */
function loadEcho(grpc, protoPath) {
  const protoLoader = require('@grpc/proto-loader');
  const def = protoLoader.loadSync(protoPath, { keepCase: true, defaults: true });
  const svc = def['echo.Echo'];
  svc.ClientStream = {
    ...svc.ClientStream,
    responseSerialize: (b) => b,
    responseDeserialize: (b) => b,
  };
  const pkg = grpc.loadPackageDefinition(def);
  return { Echo: pkg.echo.Echo, service: svc };
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

module.exports = { DEFAULT_PROTO, MAX_MESSAGE, parseArgs, loadEcho, sleep };
