// The base-protocol messages a peer connection sends (RFC 6733 §5): CER, DWR, DPR and the
// answers to the peer's own requests. Hop-by-Hop Identifiers of requests are set when sent.
import { avpAddress, avpU32, avpUtf8, encodeMessage, Flag, type DiameterMessage } from './codec.js';
import { ACCOUNTING_APPLICATION_ID, Avp, BASE_APPLICATION_ID, Command } from './dictionary.js';

export interface LocalIdentity {
  originHost: string;
  originRealm: string;
  vendorId: number;
  productName: string;
  originStateId: number;
}

const request = (commandCode: number, endToEnd: number, avps: Buffer[]) =>
  encodeMessage({ flags: Flag.Request, commandCode, applicationId: BASE_APPLICATION_ID, hopByHop: 0, endToEnd }, avps);

/** Capabilities-Exchange-Request, RFC 6733 §5.3.1. */
export function capabilitiesExchangeRequest(me: LocalIdentity, localAddress: string, endToEnd: number): Buffer {
  return request(Command.CapabilitiesExchange, endToEnd, [
    avpUtf8(Avp.OriginHost, me.originHost),
    avpUtf8(Avp.OriginRealm, me.originRealm),
    avpAddress(Avp.HostIpAddress, localAddress.replace(/^::ffff:(?=\d+\.)/, '')),
    avpU32(Avp.VendorId, me.vendorId),
    avpUtf8(Avp.ProductName, me.productName, false), // §5.3.7: M bit MUST NOT be set
    avpU32(Avp.OriginStateId, me.originStateId),
    avpU32(Avp.AcctApplicationId, ACCOUNTING_APPLICATION_ID),
  ]);
}

/** Device-Watchdog-Request, RFC 6733 §5.5.1. */
export function deviceWatchdogRequest(me: LocalIdentity, endToEnd: number): Buffer {
  return request(Command.DeviceWatchdog, endToEnd, [
    avpUtf8(Avp.OriginHost, me.originHost),
    avpUtf8(Avp.OriginRealm, me.originRealm),
    avpU32(Avp.OriginStateId, me.originStateId),
  ]);
}

/** Disconnect-Peer-Request, RFC 6733 §5.4.1. */
export function disconnectPeerRequest(me: LocalIdentity, cause: number, endToEnd: number): Buffer {
  return request(Command.DisconnectPeer, endToEnd, [
    avpUtf8(Avp.OriginHost, me.originHost),
    avpUtf8(Avp.OriginRealm, me.originRealm),
    avpU32(Avp.DisconnectCause, cause),
  ]);
}

/** The answer to a request of the peer's: its header echoed (RFC 6733 §6.2), the E bit
 *  for protocol errors (3xxx, §7.1.3). */
export function answerTo(request: DiameterMessage, me: LocalIdentity, resultCode: number, extra: Buffer[] = []): Buffer {
  const flags = (request.flags & Flag.Proxiable) | (resultCode >= 3000 && resultCode < 4000 ? Flag.Error : 0);
  return encodeMessage(
    { flags, commandCode: request.commandCode, applicationId: request.applicationId, hopByHop: request.hopByHop, endToEnd: request.endToEnd },
    [avpU32(Avp.ResultCode, resultCode), avpUtf8(Avp.OriginHost, me.originHost), avpUtf8(Avp.OriginRealm, me.originRealm), ...extra],
  );
}
