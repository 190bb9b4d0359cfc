/**
 * A consecutive-failure circuit breaker. Closed: every call goes through. Open: calls
 * are refused until `cooldownMs` has passed. Then one probe goes through (half-open):
 * its success closes the breaker, its failure opens it for another cooldown.
 */
export type BreakerState = 'closed' | 'open' | 'half-open';

export class CircuitBreaker {
  #state: BreakerState = 'closed';
  #failures = 0;
  #openUntil = 0;
  readonly #threshold: number;
  readonly #cooldownMs: number;
  readonly #onChange: (state: BreakerState) => void;

  constructor(
    options: { failureThreshold: number; cooldownMs: number },
    onChange: (state: BreakerState) => void,
  ) {
    this.#threshold = options.failureThreshold;
    this.#cooldownMs = options.cooldownMs;
    this.#onChange = onChange;
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** May a call go to Redis now? In half-open state only the one probe may. */
  allow(): boolean {
    if (this.#state === 'closed') return true;
    if (this.#state === 'open' && Date.now() >= this.#openUntil) {
      this.#set('half-open');
      return true;
    }
    return false;
  }

  success(): void {
    this.#failures = 0;
    if (this.#state !== 'closed') this.#set('closed');
  }

  failure(): void {
    this.#failures++;
    if (
      this.#state === 'half-open' ||
      (this.#state === 'closed' && this.#failures >= this.#threshold)
    ) {
      this.#openUntil = Date.now() + this.#cooldownMs;
      this.#set('open');
    }
  }

  /**
   * Opens now, for a cooldown, without waiting for failures: for evidence from elsewhere
   * that Redis stopped answering (the bus's liveness PING). The half-open probe after the
   * cooldown decides, as usual.
   */
  trip(): void {
    if (this.#state === 'open') return;
    this.#openUntil = Date.now() + this.#cooldownMs;
    this.#set('open');
  }

  #set(state: BreakerState): void {
    this.#state = state;
    this.#onChange(state);
  }
}
