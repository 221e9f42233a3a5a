// The layer rule, checked by `npm run lint:layers` (part of `npm test`): imports point
// down only. Floors, bottom up (docs/architecture.md draws them):
//   core (shared vocabulary: counters, user keys, units, setting helpers)
//   → privacy (keyed pseudonyms and Crypto-PAn: IPFIX export and the auditor's control
//   view both anonymise with them)
//   → kernel (the typed meter over the native addon, itself over bpf/)
//   → ledger | export (side by side: neither imports the other)
//   → config → agent (and log.ts) → control (declares the narrow view it needs of the
//   agent, so it imports none of it) → cli (the commands; `ubia agent` wires the layers).
// And the product never imports the harness (bench/, test/).
const FLOORS = [
  { core: '^src/core/' },
  { privacy: '^src/privacy/' },
  { kernel: '^src/kernel/' },
  { ledger: '^src/ledger/', export: '^src/export/' },
  { config: '^src/config/' },
  { agent: '^src/(agent/|log\\.ts$)' },
  { control: '^src/control/' },
  { cli: '^src/cli/' },
];

const layerRules = FLOORS.flatMap((floor, i) =>
  Object.entries(floor).flatMap(([name, path]) => {
    const above = FLOORS.slice(i + 1).flatMap((f) => Object.values(f));
    const besides = Object.entries(floor).filter(([other]) => other !== name).map(([, p]) => p);
    // control stands on the agent's floor only through the interface it declares
    const skipped = name === 'control' ? [FLOORS.find((f) => 'agent' in f).agent] : [];
    const forbidden = [...above, ...besides, ...skipped];
    if (forbidden.length === 0) return []; // the top floor may import anything below
    return {
      name: `${name}-points-down`,
      comment: `${name} may import only the floors below it (.dependency-cruiser.cjs lists them)`,
      severity: 'error',
      from: { path },
      to: { path: forbidden.map((p) => `(${p})`).join('|') },
    };
  }),
);

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'product-not-harness',
      comment: 'src/ is what ships: it must not import bench/ or test/ code',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(bench|test)/' },
    },
    {
      name: 'no-unresolvable',
      comment: 'every import resolves',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // type-only imports count: a type from a floor above is a dependency on it all the same
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
