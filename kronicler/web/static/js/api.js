// Talking to the JSON API: the bearer token (from ?token=, kept in sessionStorage) on every
// request, one error type carrying the server's message, cancellation of stale requests, and the
// peers a cluster frontend's answers lacked (the X-Kronicler-Missing-Peers header).

const TOKEN_KEY = 'kronicler.token';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Move ?token=... from the address bar into sessionStorage (so it is not shared by copy). */
export function adoptTokenFromUrl() {
  const url = new URL(window.location.href);
  if (!url.searchParams.has('token')) return;
  const token = url.searchParams.get('token');
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  url.searchParams.delete('token');
  window.history.replaceState(null, '', url.pathname + url.search + url.hash);
}

/** Peers ("host:port: reason") missing from the answers since the last clear(). */
export const missingPeers = new Map();

function notePeers(response) {
  const header = response.headers.get('X-Kronicler-Missing-Peers');
  if (!header) return;
  let entries = [];
  try {
    entries = JSON.parse(header);
  } catch (err) {
    entries = [header];
  }
  for (const entry of entries) {
    const peer = String(entry).split(': ')[0];
    if (!missingPeers.has(peer)) missingPeers.set(peer, String(entry));
  }
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export async function getJson(path, params, signal) {
  const headers = { Accept: 'application/json' };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const query = params && params.toString() ? `?${params}` : '';
  let response;
  try {
    response = await fetch(`/api/v1/${path}${query}`, { headers, signal, cache: 'no-store' });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, `cannot reach the Kronicler server (${err.message})`);
  }
  notePeers(response);
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    if (response.ok) throw new ApiError(response.status, 'the server sent an unreadable answer');
  }
  if (!response.ok) {
    const message = body && body.message ? body.message : `HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return body;
}
