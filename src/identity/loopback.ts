/** Loopback addresses: with no identity configured, only callers on this machine may use the gateway. */
export function isLoopbackAddress(address: string | undefined | null): boolean {
  if (!address) return false;
  if (address === '::1' || address === 'localhost') return true;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.');
}

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || host.startsWith('127.');
}
