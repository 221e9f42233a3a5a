// The running exporters as the agent drives them: hand every one the same call (a
// throwing exporter never stops the others), replace them all on a reload that changed
// their sections (the old ones closed before the new ones start), close them at the end.
// While a replacement is under way the calls are held and handed to the new exporters
// once they run: what the meter counted then is no exporter's loss.
import type { Logger } from 'pino';
import type { Exporter } from '../export/types.js';

export interface ExporterSet {
  /** the exporters running now (none until start; while replacing, the ones closing) */
  list(): readonly Exporter[];
  /** runs one exporter call on each; a throwing exporter is logged once, never stops the
   *  others. While replacing, the call is held for the new exporters. */
  each(what: string, call: (e: Exporter) => void): void;
  /** a replacement is under way: calls are held, and a checkpoint must wait (it would
   *  confirm what only the held calls carry) */
  replacing(): boolean;
  /** starts the exporters `create` makes; a failure propagates and leaves none running */
  start(create: () => Promise<Exporter[]>): Promise<void>;
  /** closes the running exporters, then starts new ones and hands them the calls held
   *  meanwhile; a failure leaves none running, logged */
  replace(create: () => Promise<Exporter[]>): Promise<void>;
  close(): Promise<void>;
}

/** Calls held during one replacement (polls, and flows ending) — about 1.5 s of them (the
 *  close's bound) — past this they are dropped, counted in the log. */
const MAX_HELD_CALLS = 100_000;

export function createExporterSet(logger: Logger): ExporterSet {
  let exporters: Exporter[] = [];
  const failing = new Set<string>();
  /** while replacing: the calls the new exporters get; undefined otherwise */
  let held: { what: string; call: (e: Exporter) => void }[] | undefined;
  let droppedWhileReplacing = 0;

  const deliver = (what: string, call: (e: Exporter) => void) => {
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

  const each = (what: string, call: (e: Exporter) => void) => {
    if (!held) return deliver(what, call);
    if (held.length < MAX_HELD_CALLS) held.push({ what, call });
    else droppedWhileReplacing++;
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
    const calls: NonNullable<typeof held> = (held = []);
    droppedWhileReplacing = 0;
    try {
      await close();
      await start(create);
    } catch (err) {
      logger.error({ err }, 'SIGHUP: could not start the exporters of the new configuration; exporting nothing until fixed');
    } finally {
      held = undefined;
    }
    for (const { what, call } of calls) deliver(what, call);
    if (droppedWhileReplacing) logger.warn({ dropped: droppedWhileReplacing }, 'SIGHUP: the exporters took too long to replace; polls and flows of that time were not exported');
  };

  return { list: () => exporters, each, replacing: () => held !== undefined, start, replace, close };
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
