/**
 * The logging surface core code needs. Powertools' Logger satisfies it; so does a test's recorder.
 * Messages are short and lowercase; facts go in `fields`.
 */
export interface Log {
  debug(message: string, ...fields: Array<Record<string, unknown>>): void;
  info(message: string, ...fields: Array<Record<string, unknown>>): void;
  warn(message: string, ...fields: Array<Record<string, unknown>>): void;
  error(message: string, ...fields: Array<Record<string, unknown>>): void;
}

export const silentLog: Log = { debug() {}, info() {}, warn() {}, error() {} };
