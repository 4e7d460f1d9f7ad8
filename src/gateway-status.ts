/**
 * The HTTP status a gateway answers when it could not get a request (or an
 * upgrade) to a backend: one table for `createHttpProxy` and the upgrade
 * handlers, so the same failure gets the same status from both.
 *
 * @module
 */
import { STATUS_CODES } from 'node:http';
import type { ErrorCode } from './errors.js';

/**
 * By error code: nothing to send the request to is 503 (try again later);
 * a backend that did not answer the dial in time is 504 Gateway Timeout; one
 * that refused, reset or went down under the request is 502 Bad Gateway.
 */
const statusByCode: Partial<Record<ErrorCode, number>> = {
  NO_HEALTHY_BACKEND: 503,
  MAX_CONNECTIONS: 503,
  POOL_CLOSED: 503,
  CONNECT_TIMEOUT: 504,
  CONNECT_FAILED: 502,
  BACKEND_DOWN: 502,
};

/** The status for a failure with `code` (any other failure on the way to a backend is 502). */
export function gatewayStatus(code: string): number {
  return statusByCode[code as ErrorCode] ?? 502;
}

/** `504 Gateway Timeout`: the status and its reason phrase, for a raw HTTP/1.1 status line. */
export function gatewayStatusLine(code: string): string {
  const status = gatewayStatus(code);
  return `${status} ${STATUS_CODES[status] ?? ''}`;
}
