// The whole configuration: the agent's own tables plus one optional table per exporter
// (absent = that exporter is disabled). Unknown top-level tables are errors.
import { z } from 'zod';
import { coreConfigShape } from './schema.js';
import { ipfixConfigSchema } from '../export/ipfix/config.js';
import { diameterConfigSchema } from '../export/diameter/config.js';
import { otlpConfigSchema } from '../export/otlp/config.js';
import { prometheusConfigSchema } from '../export/prometheus/config.js';

export const configSchema = z
  .strictObject({
    ...coreConfigShape,
    ipfix: ipfixConfigSchema.optional(),
    diameter: diameterConfigSchema.optional(),
    otlp: otlpConfigSchema.optional(),
    prometheus: prometheusConfigSchema.optional(),
  })
  .superRefine((c, ctx) => {
    // Users' figures move once per flow_interval: a session idle for less than that
    // ends between two moves, so an active user would get a START/STOP pair per
    // interval and never an INTERIM.
    if (c.diameter && c.diameter.idle_timeout <= c.agent.flow_interval) {
      ctx.addIssue({
        code: 'custom',
        path: ['diameter', 'idle_timeout'],
        message: `${c.diameter.idle_timeout} s is not longer than agent.flow_interval (${c.agent.flow_interval} s), the pace at which usage is seen: every active session would end idle; make it longer`,
      });
    }
  });

export type UbiaConfig = z.infer<typeof configSchema>;
