// Structured logging of the state service: one JSON line per event on stderr.
// Callers pass only non-secret fields; PSKs, host secrets and keys never reach a logger.

export type LogFields = Record<string, string | number | boolean | null | undefined | string[]>;

export interface Logger {
  event(name: string, fields?: LogFields): void;
}

/** Writes `{"time":…,"event":…,…fields}` lines to a sink (stderr by default). */
export function jsonLogger(write: (line: string) => void = (line) => process.stderr.write(line)): Logger {
  return {
    event(name, fields = {}) {
      write(`${JSON.stringify({ time: new Date().toISOString(), event: name, ...fields })}\n`);
    },
  };
}

/** Collects events in memory: for tests that assert on what was (and was not) logged. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, ...jsonLogger((line) => lines.push(line)) };
}
