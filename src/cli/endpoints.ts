// Flow endpoints as people write them: 198.18.0.2:5201 and [2001:db8::2]:443. An IPv4
// peer of an IPv6 socket (::ffff:a.b.c.d, RFC 4291 §2.5.5.2) is shown as the IPv4 it is.
const PROTOCOLS: Record<number, string> = { 6: 'tcp', 17: 'udp', 1: 'icmp', 58: 'icmp6', 132: 'sctp' };

export const protocolName = (protocol: number): string => PROTOCOLS[protocol] ?? String(protocol);

const MAPPED_V4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

export function endpoint(address: string, port: number, family: number): string {
  const v4 = MAPPED_V4.exec(address)?.[1];
  if (v4 !== undefined) return `${v4}:${port}`;
  return family === 6 && address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
