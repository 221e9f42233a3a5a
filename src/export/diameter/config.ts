// The [diameter] section of /etc/ubia/ubia.toml. Absent = Diameter accounting disabled.
// Timers follow RFC 6733 (Tc, §2.1) and RFC 3539 (Tw, §3.4.1); times are seconds, and
// keys are snake_case like the rest of ubia.toml.
import { z } from 'zod';

const diameterIdentity = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[A-Za-z0-9.-]+$/, 'a DiameterIdentity is an FQDN (RFC 6733 §4.3.1): letters, digits, dots, hyphens');

export const diameterServerSchema = z
  .strictObject({
    host: z.string().min(1).describe('address or name of the AAA server (Diameter peer) to connect to').meta({ examples: ['aaa.example.net'] }),
    port: z
      .number()
      .int()
      .min(1)
      .max(65535)
      .optional()
      .describe('TCP port; default 3868 for tcp, 5658 for tls (RFC 6733 §2.1)')
      .meta({ examples: [3868] }),
    transport: z.enum(['tcp', 'tls']).default('tcp').describe('"tcp" or "tls" (TLS from the first byte, RFC 6733 §13)'),
    identity: diameterIdentity
      .optional()
      .describe('the peer\'s expected Origin-Host; when set, a CEA with another Origin-Host is refused; default: any')
      .meta({ examples: ['aaa.example.net'] }),
  })
  .describe('one AAA server');

export const diameterTlsSchema = z
  .strictObject({
    ca: z.string().min(1).describe('PEM file with the CA certificate(s) that signed the servers\' certificates').meta({ examples: ['/etc/ubia/diameter-ca.pem'] }),
    cert: z.string().min(1).describe('PEM file with this host\'s client certificate').meta({ examples: ['/etc/ubia/diameter-client.pem'] }),
    key: z.string().min(1).describe('PEM file with the private key of the client certificate').meta({ examples: ['/etc/ubia/diameter-client.key'] }),
    server_name: z
      .string()
      .min(1)
      .optional()
      .describe('name to verify in the server certificate; default: the server\'s host')
      .meta({ examples: ['aaa.example.net'] }),
  })
  .describe('TLS files, needed when any server uses transport "tls"');

export const diameterConfigSchema = z
  .strictObject({
    servers: z
      .array(diameterServerSchema)
      .min(1)
      .max(2)
      .describe('the primary server, then optionally a secondary used while the primary is unreachable'),
    origin_host: diameterIdentity
      .optional()
      .describe('this agent\'s Origin-Host (DiameterIdentity); default: the host\'s name, with origin_realm appended when it has no dot')
      .meta({ examples: ['ubia-host.example.net'] }),
    origin_realm: diameterIdentity.describe('this agent\'s Origin-Realm').meta({ examples: ['example.net'] }),
    destination_realm: diameterIdentity.describe('Destination-Realm put in every ACR').meta({ examples: ['example.net'] }),
    destination_host: diameterIdentity.optional().describe('Destination-Host put in every ACR; default: none').meta({ examples: ['aaa.example.net'] }),
    vendor_id: z.number().int().min(0).max(0xffffffff).default(0).describe('Vendor-Id sent in the CER (0 = none/IETF)'),
    product_name: z.string().min(1).max(255).default('ubia').describe('Product-Name sent in the CER'),
    tls: diameterTlsSchema.optional(),
    watchdog_interval: z
      .number()
      .int()
      .min(1)
      .max(3600)
      .default(30)
      .describe('Tw, seconds: send a DWR after this long without traffic from the peer (RFC 3539 §3.4.1; RFC 3539 advises >= 6)'),
    reconnect_interval: z
      .number()
      .int()
      .min(1)
      .max(3600)
      .default(30)
      .describe('Tc, seconds: the longest wait between connection attempts (RFC 6733 §2.1); attempts back off from 1 s up to it'),
    request_timeout: z
      .number()
      .int()
      .min(1)
      .max(600)
      .default(10)
      .describe('seconds: an ACR not answered within this time is re-sent (with the T flag)'),
    interim_interval: z
      .number()
      .int()
      .min(1)
      .max(86400)
      .default(300)
      .describe('Acct-Interim-Interval, seconds between INTERIM records; a value returned by the server in an ACA wins (RFC 6733 §9.8.2)'),
    idle_timeout: z
      .number()
      .int()
      .min(1)
      .max(7 * 86400)
      .default(900)
      .describe('seconds: a user\'s session gets its STOP after this long without traffic (a job\'s session lasts as long as its cgroup)'),
    session_per: z
      .enum(['user', 'job'])
      .default('user')
      .describe('"user": one accounting session per user; "job": one per batch job of a user (Slurm), STARTed at its first traffic and STOPped when its cgroup goes away, with the job id in a Ubia-Job-Id AVP, and per-user sessions for the traffic outside jobs; default user'),
    enterprise_number: z
      .number()
      .int()
      .min(1)
      .max(0xffffffff)
      .default(32473)
      .describe('Vendor-Id (an IANA Private Enterprise Number, RFC 6733 §5.3.3) of ubia\'s own AVPs (Ubia-Job-Id, code 1); default 32473, the number RFC 5612 reserves for documentation: set your organisation\'s PEN in production, as for [ipfix]'),
    max_in_flight: z
      .number()
      .int()
      .min(1)
      .max(10000)
      .default(1000)
      .describe('ACRs sent and not yet answered, at most (the pipelining window)'),
  })
  .superRefine((c, ctx) => {
    c.servers.forEach((s, i) => {
      if (s.transport === 'tls' && !c.tls) {
        ctx.addIssue({
          code: 'custom',
          path: ['servers', i, 'transport'],
          message: 'transport "tls" needs a [diameter.tls] section with ca, cert and key files',
        });
      }
    });
  })
  .describe('Diameter base accounting (RFC 6733, Acct-Application-Id 3) to one or two AAA servers');

export type DiameterConfigInput = z.input<typeof diameterConfigSchema>;
export type DiameterConfig = z.output<typeof diameterConfigSchema>;
export type DiameterServerConfig = z.output<typeof diameterServerSchema>;
