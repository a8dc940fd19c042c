/**
 * Every error herdless raises itself, in one place. System errors (EADDRINUSE, EACCES, ...)
 * keep the errno name as their `code`, as Node's own do.
 */
export const ErrorCodes = {
  ERR_HERDLESS_INVALID_OPTION: 'An option is missing, of the wrong type or out of range.',
  ERR_HERDLESS_UNSUPPORTED_PLATFORM: 'herdless needs Linux (epoll, accept4, SCM_RIGHTS, memfd) and a Node.js that allows external ArrayBuffers (no V8 sandbox).',
  ERR_HERDLESS_APP_LOAD: 'The app module threw while loading, or exports nothing herdless can serve.',
  ERR_HERDLESS_WORKER_START: 'A worker process exited or failed before it was ready.',
  ERR_HERDLESS_CRASH_LOOP: 'Workers keep crashing soon after start; respawning stopped.',
  ERR_HERDLESS_CLOSED: 'The dispatcher is closed or closing.',
  ERR_HERDLESS_CONTROL: 'The control socket cannot be set up (its path is in use, or its directory is not safe), or a control request was malformed.',
  ERR_HERDLESS_CONTROL_REFUSED: 'The control socket refused a client of another user (SO_PEERCRED), or the socket file is not accessible to it.',
  ERR_HERDLESS_NO_INSTANCE: 'No running herdless was found for a control command (status, top, scale, reload, upgrade, stop).',
  ERR_HERDLESS_SEVERAL_INSTANCES: 'Several herdless instances run for this user; a control command needs --pid or --control to pick one.',
  ERR_HERDLESS_ACCEPT: 'A listener can no longer accept (shut down or closed by someone else), or the accept thread stopped.',
  ERR_HERDLESS_UPGRADE: 'The new primary of an upgrade (SIGUSR2, upgrade()) failed to start or timed out; the old one keeps serving.',
  ERR_HERDLESS_UPGRADE_IN_PROGRESS: 'An upgrade is already under way; wait for it to finish or fail.',
} as const;

export type HerdlessErrorCode = keyof typeof ErrorCodes;

export class HerdlessError extends Error {
  readonly code: HerdlessErrorCode;
  constructor(code: HerdlessErrorCode, message: string, extra?: Record<string, unknown>) {
    super(message);
    this.name = 'HerdlessError';
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

export function invalidOption(option: string, why: string): HerdlessError {
  return new HerdlessError('ERR_HERDLESS_INVALID_OPTION', `Invalid option "${option}": ${why}`, { option });
}
