// What the exporter needs from one collector's transport.
export interface CollectorStatus {
  collector: string;
  transport: 'udp' | 'tcp';
  state: 'ok' | 'degraded' | 'down';
  detail: string;
  /** records waiting in memory or in the spool */
  queued: number;
  /** records given up on (UDP send errors, spool full) */
  dropped: number;
  /** data records handed to the transport */
  sent: number;
  /** IPFIX messages handed to the transport */
  messages: number;
  /** sequence number of the next message in the current stream (RFC 7011 §3.1) */
  sequence: number;
}

export interface CollectorStream {
  /** one data record encoded for template `setId`; the bytes are copied */
  send(setId: number, record: Uint8Array): void;
  status(): CollectorStatus;
  /** sends what it can within `timeoutMs`, keeps the rest in the spool, releases the socket */
  close(timeoutMs: number): Promise<void>;
}
