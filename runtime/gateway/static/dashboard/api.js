// The dashboard's HTTP API: JSON in and out, the header every state-changing request carries,
// and the answers turned into errors worth showing.

const API = "/dashboard/api";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body?.error?.message) message = body.error.message;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, message);
}

/** `method` on `/dashboard/api/{path}`; the parsed answer, null for 204, or an ApiError. */
export async function call(method, path, body = undefined) {
  const headers = { accept: "application/json" };
  if (method !== "GET") headers["x-uptax-dashboard"] = "1";
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(`${API}/${path}`, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return null;
  return response.json();
}

export const api = {
  state: () => call("GET", "state"),
  login: (key, operator) => call("POST", "session", operator ? { key, operator } : { key }),
  logout: () => call("DELETE", "session"),
  explain: (request) => call("POST", "explain", request),
  breaker: (provider, action) => call("POST", `breakers/${encodeURIComponent(provider)}`, { action }),
  inject: (provider, fault) => call("PUT", `faults/${encodeURIComponent(provider)}`, fault),
  heal: (provider) => call("DELETE", `faults/${encodeURIComponent(provider)}`),
  liveUrl: (after) => `${API}/live${after ? `?after=${after}` : ""}`,
};

/** Run an operator action by name (see providers.js ACTIONS). */
export function runAction(provider, action) {
  if (action === "inject") return api.inject(provider, { kind: "outage", status: 503 });
  if (action === "heal") return api.heal(provider);
  return api.breaker(provider, action);
}
