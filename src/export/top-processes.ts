// The `top_processes` key the metric exporters share (OTLP, Prometheus): per-process
// series are what makes a metrics backend's cardinality grow, so they are cut to N.
import { z } from 'zod';

/** `which` says how the N processes are chosen. */
export const topProcessesSetting = (which: string) =>
  z
    .number()
    .int()
    .min(0)
    .max(1000)
    .default(10)
    .describe(`per-process metrics for the N processes ${which} (bounds cardinality); 0 = no per-process metrics; default 10`);
