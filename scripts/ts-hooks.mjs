// The benchmarks and npm run gen:config run from their TypeScript sources (node
// --experimental-transform-types --import ./scripts/ts-hooks.mjs bench/X.ts): nothing of
// them is compiled into dist/. The sources import each other as './x.js', as tsc wants;
// this resolves those to './x.ts'.
import { registerHooks } from 'node:module';

registerHooks({
  resolve(specifier, context, next) {
    try {
      return next(specifier, context);
    } catch (e) {
      if (e?.code !== 'ERR_MODULE_NOT_FOUND' || !specifier.startsWith('.') || !specifier.endsWith('.js')) throw e;
      return next(`${specifier.slice(0, -3)}.ts`, context);
    }
  },
});
