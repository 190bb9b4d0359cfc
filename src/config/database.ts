import { userInfo } from 'node:os';
import type { ClientConfig } from 'pg';

/**
 * pg connection settings from a URL. pg takes the user from the URL, then PGUSER, then
 * USER; services and CI often run without USER set, so the OS account name (what psql
 * would use) fills the gap. It goes into the URL itself: pg lets the parsed URL override
 * a separate `user` field.
 */
export function pgConfig(
  connectionString: string,
  extra: Omit<ClientConfig, 'connectionString'> = {},
): ClientConfig {
  return { ...extra, connectionString: withDefaultUser(connectionString) };
}

function withDefaultUser(connectionString: string): string {
  if (process.env.PGUSER || process.env.USER) return connectionString;
  let url: URL;
  try {
    url = new URL(connectionString);
  } catch {
    return connectionString; // a keyword/value string: left to pg
  }
  if (url.username !== '') return connectionString;
  try {
    url.username = encodeURIComponent(userInfo().username);
  } catch {
    return connectionString;
  }
  return url.toString();
}

/** A URL without its password. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}
