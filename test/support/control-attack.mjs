// A local user attacking the agent's control socket, every way at once, for `seconds`:
//   flood N     open N connections that never send, read nor close (refused ones
//               included), 50 at a time, each as soon as the one before it connected
//   loris N     N connections sending one byte of a request line every 2 s
//   pipeline N  N connections writing requests as fast as the agent takes them, never
//               reading; reopened when the agent closes them
//   badrange N  N requests with a range past what a Date holds, on one connection, replies read
// A connection the agent's full accept queue turns away (EAGAIN) is tried again 5 ms later,
// as a determined attacker would (counted in queueFull).
// Prints one JSON line: what the agent did to these connections.
import net from 'node:net';

const [socketPath, seconds, ...plan] = process.argv.slice(2);
const want = {};
for (let i = 0; i < plan.length; i += 2) want[plan[i]] = Number(plan[i + 1]);
const until = Date.now() + Number(seconds) * 1000;
const stats = { opened: 0, closedByAgent: 0, queueFull: 0, lorisClosed: 0, lorisTimeoutReplies: 0, pipelinedBytes: 0, badRangeReplies: {} };
const open = new Set();
let over = false;

function connect(kind, onClose, again) {
  const s = net.createConnection(socketPath);
  stats.opened++;
  open.add(s);
  let queueFull = false;
  s.on('error', (e) => {
    if (e.code !== 'EAGAIN' || !again) return;
    queueFull = true;
    stats.queueFull++;
    setTimeout(() => over || again(), 5);
  });
  s.on('close', () => {
    open.delete(s);
    if (!over && !queueFull) {
      stats.closedByAgent++;
      onClose?.();
    }
  });
  s.kind = kind;
  return s;
}

function flood(left) {
  if (left <= 0 || over) return;
  const s = connect('flood', undefined, () => flood(left));
  s.pause(); // never read: the agent's close is never seen, the socket stays open here
  s.once('connect', () => flood(left - 1));
}

function loris() {
  const s = connect('loris', () => stats.lorisClosed++, loris);
  let got = '';
  s.on('data', (d) => {
    got += d;
    if (got.includes('"timeout"')) stats.lorisTimeoutReplies++;
  });
  const text = '{"op":"status"}';
  let i = 0;
  const drip = setInterval(() => {
    if (s.destroyed || over) return clearInterval(drip);
    s.write(text[i++ % (text.length - 1)]); // never the closing brace: the line never completes
  }, 2000);
  s.write('{');
}

function pipeline() {
  const s = connect('pipeline', () => setTimeout(pipeline, 5), pipeline);
  s.pause(); // never read the replies
  const burst = '{"op":"status"}\n{"op":"users","from":0,"to":8640000000000000}\n{"op":"flows"}\n{"op":"top"}\n'.repeat(256);
  const pump = () => {
    while (!s.destroyed && !over) {
      stats.pipelinedBytes += burst.length;
      if (!s.write(burst)) return s.once('drain', pump);
    }
  };
  s.on('connect', pump);
}

function badRange(n) {
  const s = connect('badrange');
  let buf = '';
  let answered = 0;
  s.on('data', (d) => {
    buf += d;
    const lines = buf.split('\n');
    buf = lines.pop();
    for (const l of lines) {
      const code = JSON.parse(l).error?.code ?? 'ok';
      stats.badRangeReplies[code] = (stats.badRangeReplies[code] ?? 0) + 1;
      if (++answered === n) s.end();
    }
  });
  for (let i = 0; i < n; i++) s.write(`{"op":"users","from":0,"to":9007199254740991,"id":${i}}\n`);
}

// the pipelines first: they take the connections the agent serves, the rest are refused
for (let i = 0; i < (want.pipeline ?? 0); i++) pipeline();
for (let i = 0; i < (want.loris ?? 0); i++) loris();
const FLOOD_CHAINS = 50;
for (let i = 0; i < FLOOD_CHAINS; i++) flood(Math.ceil((want.flood ?? 0) / FLOOD_CHAINS));
if (want.badrange) badRange(want.badrange);

setTimeout(() => {
  over = true;
  stats.stillOpen = open.size;
  process.stdout.write(`${JSON.stringify(stats)}\n`);
  process.exit(0);
}, until - Date.now());
