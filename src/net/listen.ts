/** Start an HTTP(S) server on `host:port` (port 0: any free port) and return the URL it is reachable at. */
import type { Server } from 'node:net';
import type { AddressInfo } from 'node:net';

export async function listenOn(
  server: Server,
  host: string,
  port: number,
  scheme: 'http' | 'https' = 'http',
): Promise<{ url: string; address: AddressInfo }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return { url: `${scheme}://${shown}:${address.port}`, address };
}
