import type { Log } from '../core/logger.js';

type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/**
 * JSON lines on stderr (journald keeps them; stdout stays free for command output such as `discover`).
 * Same field names as Powertools' Logger, so one log query covers the agent and the functions.
 */
export function stderrJsonLog(service: string, level: string | undefined): Log {
  const wanted = level?.toLowerCase() ?? 'info';
  const threshold = wanted in ORDER ? ORDER[wanted as Level] : ORDER.info;
  const write = (lvl: Level) => (message: string, ...fields: Array<Record<string, unknown>>) => {
    if (ORDER[lvl] < threshold) return;
    const line: Record<string, unknown> = { level: lvl.toUpperCase(), message, timestamp: new Date().toISOString(), service };
    for (const f of fields) Object.assign(line, f);
    process.stderr.write(`${JSON.stringify(line)}\n`);
  };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}
