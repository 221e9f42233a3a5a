// A quota alert on the user's own terminals, as quota(1) warns at login and write(1)
// talks: the terminals utmp lists for the user's login sessions, each only if the user
// owns it and accepts messages (`mesg y`: group write), opened without becoming our
// controlling terminal and without blocking on a stalled one.
import { closeSync, constants, fstatSync, openSync, readFileSync, writeSync } from 'node:fs';

/** struct utmp of glibc on 64-bit Linux (utmp(5)): 384 bytes a record. */
const RECORD = 384;
const USER_PROCESS = 7;
const LINE = { at: 8, length: 32 };
const USER = { at: 44, length: 32 };

const field = (record: Buffer, f: { at: number; length: number }) => {
  const raw = record.subarray(f.at, f.at + f.length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end < 0 ? raw.length : end).toString('latin1');
};

/** The terminals (under /dev) of `user`'s login sessions in a utmp file. */
export function terminalsOf(user: string, utmpFile = '/run/utmp'): string[] {
  let data: Buffer;
  try {
    data = readFileSync(utmpFile);
  } catch {
    return []; // no utmp (a container, a minimal host): no terminals to tell
  }
  const lines = new Set<string>();
  for (let o = 0; o + RECORD <= data.length; o += RECORD) {
    const record = data.subarray(o, o + RECORD);
    if (record.readInt16LE(0) !== USER_PROCESS || field(record, USER) !== user) continue;
    const line = field(record, LINE);
    // a line is a name under /dev; anything that climbs out of it is no terminal
    if (line && !line.split('/').includes('..')) lines.add(`/dev/${line}`);
  }
  return [...lines];
}

/** Writes `text` to each of `uid`'s terminals that accept messages; returns those written to. */
export function tellTerminals(uid: number, terminals: readonly string[], text: string): string[] {
  const told: string[] = [];
  for (const tty of terminals) {
    let fd: number | undefined;
    try {
      fd = openSync(tty, constants.O_WRONLY | constants.O_NOCTTY | constants.O_NONBLOCK);
      const st = fstatSync(fd);
      if (!st.isCharacterDevice() || st.uid !== uid || (st.mode & constants.S_IWGRP) === 0) continue;
      writeSync(fd, `\r\n${text.replace(/\n/g, '\r\n')}\r\n`);
      told.push(tty);
    } catch {
      // gone, or full (EAGAIN): a warning is not worth waiting on a terminal
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
  return told;
}
