/**
 * The program of the fork server (`node forkserver_main.js`, see
 * forkserver.ts). It loads now what its children need, so that each child
 * forked from it starts with it loaded.
 * @internal
 */
import './context';
import './popen/fork';
import { serve } from './forkserver';

serve();
