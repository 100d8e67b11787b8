/** Imported last by index.ts: back to V8's lazy compilation (see compilation.ts). @internal */
import { endEagerCompilation } from './compilation';

endEagerCompilation();
