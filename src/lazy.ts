/**
 * Exports defined on first use: the module behind them is loaded the first
 * time one of them is read (see index.ts for why).
 * @internal
 */

/**
 * `load()`'s result, computed on the first call only: `require()` of a module
 * already loaded still resolves its path and looks up the cache, on the way
 * to every fork (where each page written after the last fork faults).
 */
export function onFirstUse<T>(load: () => T): () => T {
  let loaded: { value: T } | undefined;
  return () => (loaded ??= { value: load() }).value;
}

/**
 * Defines each of `names` on `target` as an enumerable getter. The first read
 * of any of them loads the module and turns them all into plain values, so
 * that later reads cost what reading any other export costs.
 */
export function defineLazyExports<M extends object>(target: object, load: () => M, names: ReadonlyArray<keyof M & string>): void {
  const resolve = (): M => {
    const module = load();
    for (const name of names) {
      Object.defineProperty(target, name, { enumerable: true, configurable: true, writable: false, value: module[name] });
    }
    return module;
  };
  for (const name of names) {
    Object.defineProperty(target, name, { enumerable: true, configurable: true, get: () => resolve()[name] });
  }
}
