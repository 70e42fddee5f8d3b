// Talking to the JSON API: the bearer token (from ?token=, kept in sessionStorage) on every
// request, one error type carrying the server's message, and cancellation of stale requests.

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
