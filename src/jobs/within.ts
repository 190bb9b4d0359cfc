/** Waits for `promise` at most `ms` (its rejection included): whether it settled, and its value. */
export async function within<T>(
  promise: Promise<T>,
  ms: number,
): Promise<
  { readonly settled: true; readonly value: T | undefined } | { readonly settled: false }
> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<{ readonly settled: false }>((resolve) => {
    timer = setTimeout(() => resolve({ settled: false }), ms);
    timer.unref();
  });
  try {
    return await Promise.race([
      promise.then(
        (value) => ({ settled: true as const, value }),
        () => ({ settled: true as const, value: undefined }),
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
