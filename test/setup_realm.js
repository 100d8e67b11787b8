'use strict';
// Node 20 gives Symbol.dispose and Symbol.asyncDispose to its main realm only:
// jest's sandbox realm lacks them, and TypeScript's `using` looks them up there.
// (Node 24 has them in every realm: then this does nothing.)
for (const name of ['dispose', 'asyncDispose']) {
  if (Symbol[name] === undefined) Object.defineProperty(Symbol, name, { value: Symbol(`Symbol.${name}`) });
}
