// Builds an Accounting-Request (RFC 6733 §9.7.1) for one user's (or one job's) accounting session.
import { avpTime, avpU32, avpU64, avpUtf8, encodeAvp, encodeMessage, Flag } from './codec.js';
import { ACCOUNTING_APPLICATION_ID, Avp, Command, UbiaAvp, type RecordTypeValue } from './dictionary.js';

export interface AcrFields {
  sessionId: string;
  originHost: string;
  originRealm: string;
  destinationRealm: string;
  destinationHost?: string;
  recordType: RecordTypeValue;
  recordNumber: number;
  userName: string;
  nasIdentifier: string;
  eventMs: number;
  /** cumulative for the session, wire counts; input = from the user (the user's tx) */
  inputOctets: number;
  outputOctets: number;
  inputPackets: number;
  outputPackets: number;
  sessionTimeS: number;
  interimIntervalS: number;
  terminationCause?: number;
  endToEnd: number;
  /** a job's session: its job id, sent as Ubia-Job-Id under `vendorId` */
  job?: { id: string; vendorId: number };
}

export function buildAcr(f: AcrFields): Buffer {
  const avps = [
    avpUtf8(Avp.SessionId, f.sessionId), // §9.7.1: Session-Id comes first
    avpUtf8(Avp.OriginHost, f.originHost),
    avpUtf8(Avp.OriginRealm, f.originRealm),
    avpUtf8(Avp.DestinationRealm, f.destinationRealm),
    avpU32(Avp.AccountingRecordType, f.recordType),
    avpU32(Avp.AccountingRecordNumber, f.recordNumber),
    avpU32(Avp.AcctApplicationId, ACCOUNTING_APPLICATION_ID),
    avpUtf8(Avp.UserName, f.userName),
    ...(f.destinationHost ? [avpUtf8(Avp.DestinationHost, f.destinationHost)] : []),
    avpTime(Avp.EventTimestamp, f.eventMs),
    avpU32(Avp.AcctInterimInterval, f.interimIntervalS),
    // RFC 7155 §4.4 (NASREQ): Unsigned64 counters and session time
    avpU64(Avp.AccountingInputOctets, f.inputOctets),
    avpU64(Avp.AccountingOutputOctets, f.outputOctets),
    avpU64(Avp.AccountingInputPackets, f.inputPackets),
    avpU64(Avp.AccountingOutputPackets, f.outputPackets),
    avpU32(Avp.AcctSessionTime, f.sessionTimeS),
    avpUtf8(Avp.NasIdentifier, f.nasIdentifier),
    ...(f.terminationCause !== undefined ? [avpU32(Avp.TerminationCause, f.terminationCause)] : []),
    // RFC 6733 §9.7.1: an ACR may carry any other AVP (* [ AVP ]); a vendor one, not mandatory
    ...(f.job ? [encodeAvp(UbiaAvp.JobId, Buffer.from(f.job.id, 'utf8'), { vendorId: f.job.vendorId, mandatory: false })] : []),
  ];
  return encodeMessage(
    { flags: Flag.Request | Flag.Proxiable, commandCode: Command.Accounting, applicationId: ACCOUNTING_APPLICATION_ID, hopByHop: 0, endToEnd: f.endToEnd },
    avps,
  );
}
