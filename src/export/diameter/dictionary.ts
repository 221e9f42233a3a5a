// The slice of the Diameter dictionary ubia speaks: RFC 6733 base protocol and base
// accounting, plus the RFC 7155 (NASREQ) AVPs an accounting record carries.

/** Command codes (RFC 6733 §3.1). */
export const Command = {
  CapabilitiesExchange: 257,
  DeviceWatchdog: 280,
  DisconnectPeer: 282,
  Accounting: 271,
} as const;

/** Application ids (RFC 6733 §2.4). */
export const BASE_APPLICATION_ID = 0;
export const ACCOUNTING_APPLICATION_ID = 3;

/** AVP codes. */
export const Avp = {
  // RFC 6733 §4.5
  AcctInterimInterval: 85,
  AccountingRealtimeRequired: 483,
  AcctMultiSessionId: 50,
  AccountingRecordNumber: 485,
  AccountingRecordType: 480,
  AcctSessionId: 44,
  AccountingSubSessionId: 287,
  AcctApplicationId: 259,
  AuthApplicationId: 258,
  AuthRequestType: 274,
  AuthorizationLifetime: 291,
  AuthGracePeriod: 276,
  AuthSessionState: 277,
  ReAuthRequestType: 285,
  Class: 25,
  DestinationHost: 293,
  DestinationRealm: 283,
  DisconnectCause: 273,
  ErrorMessage: 281,
  ErrorReportingHost: 294,
  EventTimestamp: 55,
  ExperimentalResult: 297,
  ExperimentalResultCode: 298,
  FailedAvp: 279,
  FirmwareRevision: 267,
  HostIpAddress: 257,
  InbandSecurityId: 299,
  MultiRoundTimeOut: 272,
  OriginHost: 264,
  OriginRealm: 296,
  OriginStateId: 278,
  ProductName: 269,
  ProxyHost: 280,
  ProxyInfo: 284,
  ProxyState: 33,
  RedirectHost: 292,
  RedirectHostUsage: 261,
  RedirectMaxCacheTime: 262,
  ResultCode: 268,
  RouteRecord: 282,
  SessionId: 263,
  SessionTimeout: 27,
  SessionBinding: 270,
  SessionServerFailover: 271,
  SupportedVendorId: 265,
  TerminationCause: 295,
  UserName: 1,
  VendorId: 266,
  VendorSpecificApplicationId: 260,
  // RFC 7155 (NASREQ) §4.4 / §4.6
  NasIdentifier: 32,
  AcctSessionTime: 46,
  AccountingInputOctets: 363,
  AccountingOutputOctets: 364,
  AccountingInputPackets: 365,
  AccountingOutputPackets: 366,
} as const;

/** ubia's vendor-specific AVPs, under the Vendor-Id of `[diameter] enterprise_number`
 *  (RFC 6733 §4.1: V bit and Vendor-ID field; §11.1.1: a vendor allocates the codes of
 *  its own AVPs). Sent with the M bit clear: a server without ubia's dictionary may
 *  ignore them (§4.1) instead of rejecting the record. */
export const UbiaAvp = {
  /** UTF8String: the batch job (Slurm job id) a session of `session_per = "job"` is for */
  JobId: 1,
} as const;

const KNOWN_AVP_CODES = new Set<number>(Object.values(Avp));

/** Whether ubia understands an IETF (non-vendor) AVP; an unknown one with the M bit set
 *  makes the whole message unacceptable (RFC 6733 §4.1). */
export function isKnownAvp(code: number, vendorId: number): boolean {
  return vendorId === 0 && KNOWN_AVP_CODES.has(code);
}

/** Accounting-Record-Type values (RFC 6733 §9.8.1). */
export const RecordType = {
  Event: 1,
  Start: 2,
  Interim: 3,
  Stop: 4,
} as const;
export type RecordTypeValue = (typeof RecordType)[keyof typeof RecordType];

/** Termination-Cause values (RFC 6733 §8.15). */
export const TerminationCause = {
  Logout: 1,
  Administrative: 4,
  SessionTimeout: 8,
} as const;

/** Disconnect-Cause values (RFC 6733 §5.4.3). */
export const DisconnectCause = {
  Rebooting: 0,
  Busy: 1,
  DoNotWantToTalkToYou: 2,
} as const;

/** Result-Code values ubia sends or acts on (RFC 6733 §7.1). */
export const ResultCode = {
  Success: 2001,
  UnableToDeliver: 3002,
  TooBusy: 3004,
  InvalidHdrBits: 3008,
  InvalidAvpBits: 3009,
  AvpUnsupported: 5001,
  UnableToComply: 5012,
  UnsupportedVersion: 5011,
  InvalidAvpLength: 5014,
  InvalidMessageLength: 5015,
  NoCommonApplication: 5010,
} as const;

/** RFC 6733 §7.1: 1xxx informational, 2xxx success, 3xxx protocol errors, 4xxx transient
 *  failures, 5xxx permanent failures. */
export function resultClass(code: number): 'informational' | 'success' | 'protocol' | 'transient' | 'permanent' | 'unknown' {
  if (code >= 1000 && code < 2000) return 'informational';
  if (code >= 2000 && code < 3000) return 'success';
  if (code >= 3000 && code < 4000) return 'protocol';
  if (code >= 4000 && code < 5000) return 'transient';
  if (code >= 5000 && code < 6000) return 'permanent';
  return 'unknown';
}

const AVP_NAMES = new Map<number, string>(Object.entries(Avp).map(([name, code]) => [code, name]));

/** A readable name for log lines, e.g. "AccountingRecordNumber(485)". */
export function avpName(code: number, vendorId = 0): string {
  const name = vendorId === 0 ? AVP_NAMES.get(code) : undefined;
  return `${name ?? (vendorId ? `vendor ${vendorId} AVP` : 'AVP')}(${code})`;
}
