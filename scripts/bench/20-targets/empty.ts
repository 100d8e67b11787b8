/**
 * The target of the spawn benchmark (20-process.ts): a module that exports an
 * empty function and loads nothing, so that the child's start-up is measured,
 * not the loading of a target's dependencies.
 */
export function empty(): void {}

/** The target of the large-argument rows: takes its argument and does nothing with it. */
export function discard(_argument: Uint8Array): void {}
