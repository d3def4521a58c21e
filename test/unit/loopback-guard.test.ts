import net from 'node:net';
import { describe, expect, it } from 'vitest';

// The guard installed by test/support/setup.ts: it is what keeps the whole suite on 127.0.0.0/8.
describe('test network guard', () => {
  it.each([
    [{ host: '10.0.1.5', port: 2379 }],
    [{ host: '169.254.169.254', port: 80 }],
    [{ host: 'sts.amazonaws.com', port: 443 }],
  ])('refuses to connect to %j', (options) => {
    expect(() => net.connect(options)).toThrow('tests may only reach 127.0.0.0/8');
  });

  it('lets loopback connections through', async () => {
    const server = net.createServer((s) => s.end());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    const socket = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});
