// The control socket's limits ([control] of the configuration): read by the agent from its
// configuration and enforced by the control server, which may not import each other.

export interface ControlLimits {
  maxRequestBytes: number;
  maxClients: number;
  maxClientsPerUser: number;
  /** of maxClients, kept for root and admins */
  adminReservedClients: number;
  requestTimeoutMs: number;
  maxReplyBufferBytes: number;
  /** ms of the agent's time per second that one non-admin uid's requests may take */
  userTimeBudgetMs: number;
}
