// The running exporters as the agent drives them: hand every one the same call (a
// throwing exporter never stops the others), replace them all on a reload that changed
// their sections (the old ones closed before the new ones start), close them at the end.
import type { Logger } from 'pino';
import type { Exporter } from '../export/types.js';

export interface ExporterSet {
  /** the exporters running now (none until start) */
  list(): readonly Exporter[];
  /** runs one exporter call on each; a throwing exporter is logged once, never stops the others */
  each(what: string, call: (e: Exporter) => void): void;
  /** starts the exporters `create` makes; a failure propagates and leaves none running */
  start(create: () => Promise<Exporter[]>): Promise<void>;
  /** closes the running exporters, then starts new ones; a failure leaves none running, logged */
  replace(create: () => Promise<Exporter[]>): Promise<void>;
  close(): Promise<void>;
}

export function createExporterSet(logger: Logger): ExporterSet {
  let exporters: Exporter[] = [];
  const failing = new Set<string>();

  const each = (what: string, call: (e: Exporter) => void) => {
    for (const e of exporters) {
      try {
        call(e);
        if (failing.delete(e.name)) logger.info({ exporter: e.name }, 'exporter accepts data again');
      } catch (err) {
        if (!failing.has(e.name)) logger.error({ exporter: e.name, err, call: what }, 'exporter failed; its data for this poll is lost to it');
        failing.add(e.name);
      }
    }
  };

  const start = async (create: () => Promise<Exporter[]>) => {
    try {
      exporters = await create();
    } catch (err) {
      exporters = [];
      throw err;
    }
  };

  const close = () => closeExporters(exporters, logger);

  const replace = async (create: () => Promise<Exporter[]>) => {
    await close();
    try {
      await start(create);
    } catch (err) {
      logger.error({ err }, 'SIGHUP: could not start the exporters of the new configuration; exporting nothing until fixed');
    }
  };

  return { list: () => exporters, each, start, replace, close };
}

/** Gives every exporter up to 1.5 s to flush, together, so shutdown stays within ~2 s. */
async function closeExporters(exporters: Exporter[], logger: Logger): Promise<void> {
  await Promise.all(
    exporters.map((e) =>
      Promise.race([
        e.close().catch((err: unknown) => logger.error({ err, exporter: e.name }, 'exporter close failed')),
        new Promise<void>((resolve) => setTimeout(resolve, 1500).unref()),
      ]),
    ),
  );
}
