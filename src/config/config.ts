// The whole configuration: the agent's own tables plus one optional table per exporter
// (absent = that exporter is disabled). Unknown top-level tables are errors.
import { z } from 'zod';
import { coreConfigShape } from './schema.js';
import { ipfixConfigSchema } from '../export/ipfix/config.js';
import { diameterConfigSchema } from '../export/diameter/config.js';
import { otlpConfigSchema } from '../export/otlp/config.js';
import { prometheusConfigSchema } from '../export/prometheus/config.js';

export const configSchema = z.strictObject({
  ...coreConfigShape,
  ipfix: ipfixConfigSchema.optional(),
  diameter: diameterConfigSchema.optional(),
  otlp: otlpConfigSchema.optional(),
  prometheus: prometheusConfigSchema.optional(),
});

export type UbiaConfig = z.infer<typeof configSchema>;
