/** Imported first by index.ts: the modules loaded next are compiled eagerly (see compilation.ts). @internal */
import { beginEagerCompilation } from './compilation';

beginEagerCompilation();
