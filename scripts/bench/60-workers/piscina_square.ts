/** piscina's worker (a thread): the tiny task, or a chunk of them. */
import { square, squares } from './tasks';

export default function task(input: number | number[]): number | number[] {
  return typeof input === 'number' ? square(input) : squares(input);
}
