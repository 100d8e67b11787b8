/**
 * Exports defined on first use: the module behind them is required the first
 * time one of them is read (see index.ts for why).
 * @internal
 */

/**
 * Defines each of `names` on `target` as an enumerable getter that loads the
 * module (once: `require` caches it) and returns its export of that name.
 */
export function defineLazyExports<M extends object>(target: object, load: () => M, names: ReadonlyArray<keyof M & string>): void {
  for (const name of names) {
    Object.defineProperty(target, name, { enumerable: true, configurable: true, get: () => load()[name] });
  }
}
