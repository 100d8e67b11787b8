/**
 * The seeds' shared-memory example, in TypeScript: a child process squares a
 * shared Array('i', 4) of [1, 2, 3, 4] and stores the sum of the squares in a
 * shared Value('i'); the parent prints both, as Python's
 *
 * ```python
 * def square_list(mylist, result, square_sum):
 *     for idx, num in enumerate(mylist):
 *         result[idx] = num * num
 *     square_sum.value = sum(result)
 *
 * result = multiprocessing.Array('i', 4)
 * square_sum = multiprocessing.Value('i')
 * p1 = multiprocessing.Process(target=square_list, args=(mylist, result, square_sum))
 * ```
 *
 * The child is made with mp.os.fork() (mp.Process was not there when this
 * was written); the Array is a real Int32Array over shared memory.
 */
import * as mp from '../..';

function squareList(mylist: number[], result: Int32Array, squareSum: mp.Synchronized<number>): void {
  mylist.forEach((num, idx) => (result[idx] = num * num));
  squareSum.value = result.reduce((a, b) => a + b, 0);
  console.log(`Result(in process p1): [${Array.from(result).join(', ')}]`);
  console.log(`Sum of squares(in process p1): ${squareSum.value}`);
}

function main(): void {
  const mylist = [1, 2, 3, 4];
  const result = mp.Array('i', 4);
  const squareSum = mp.Value('i');

  const pid = mp.os.fork();
  if (pid === 0) {
    squareList(mylist, result, squareSum);
    mp.os._exit(0);
  }
  const [, status] = mp.os.waitpid(pid);
  if (mp.os.waitstatusToExitcode(status) !== 0) throw new Error(`the child failed with status ${status}`);

  console.log(`Result(in main program): [${Array.from(result).join(', ')}]`);
  console.log(`Sum of squares(in main program): ${squareSum.value}`);
  console.log(`(result is a ${result.constructor.name} over shared memory; squareSum.getLock() is an ${squareSum.getLock().constructor.name})`);
}

main();
