import net from 'node:net';
import { inject } from 'vitest';
import { emulatorEnv } from '../../testbed/moto.js';

// Every SDK client in the tests reaches the emulator through the SDK's own AWS_ENDPOINT_URL, exactly as
// production code would reach AWS: there is no test-only code path.
Object.assign(process.env, emulatorEnv(inject('awsEndpoint')));

// Test traffic goes only to 127.0.0.0/8: any other destination fails the test that tried it.
const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|::1|::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3})$/;

/** The host a Socket#connect call targets, or undefined for a Unix socket path. */
function destination(args: unknown[]): string | undefined {
  const first: unknown = Array.isArray(args[0]) ? (args[0] as unknown[])[0] : args[0];
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    return typeof args[1] === 'string' ? args[1] : 'localhost';
  }
  if (typeof first === 'object' && first !== null) {
    const options = first as { host?: unknown; path?: unknown };
    if (typeof options.path === 'string') return undefined;
    return typeof options.host === 'string' ? options.host : 'localhost';
  }
  return undefined;
}

const originalConnect = Object.getOwnPropertyDescriptor(net.Socket.prototype, 'connect')?.value as (
  ...args: unknown[]
) => net.Socket;
Object.defineProperty(net.Socket.prototype, 'connect', {
  configurable: true,
  writable: true,
  value: function guardedConnect(this: net.Socket, ...args: unknown[]): net.Socket {
    const host = destination(args);
    if (host !== undefined && !LOOPBACK.test(host)) {
      throw new Error(`a test tried to connect to ${host}: tests may only reach 127.0.0.0/8`);
    }
    return Reflect.apply(originalConnect, this, args);
  },
});
