/**
 * The program of the fork server (`node forkserver_main.js`, see
 * forkserver.ts). It loads now what its children need, so that each child
 * forked from it starts with it loaded, and compiled: code that runs only in
 * the children (the start path, leaving the server) would otherwise be
 * compiled in every child anew (see eager/compilation.ts).
 * @internal
 */
import { compileEagerly } from './eager/compilation';

const { serve } = compileEagerly(() => {
  require('./context');
  require('./popen/fork');
  return require('./forkserver') as typeof import('./forkserver');
});

serve();
