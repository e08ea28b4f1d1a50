// Small helpers shared by the pages: DOM building (text only, never HTML strings), the API client, toasts.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "for") el.htmlFor = value;
    else if (key === "value") el.value = value;
    else if (key === "checked") el.checked = Boolean(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let idCounter = 0;
export function uid(prefix = "id") {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code;
    this.hint = problem.hint;
    this.problem = problem;
  }
  explain() {
    return this.hint ? `${this.message} (${this.hint})` : this.message;
  }
}

export const session = { csrf: null, username: null };

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json() : null;
  if (!response.ok) throw new ApiError(response.status, data || {});
  return data;
}

export function toast(text) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.classList.add("shown");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.remove("shown"), 4000);
}

export function errorBox(err) {
  return h("p", { class: "error", role: "alert" }, err instanceof ApiError ? err.explain() : String(err));
}

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : d.toLocaleString();
}

export function enc(s) {
  return encodeURIComponent(s);
}

// One event stream (WebSocket) for the whole app; pages subscribe with onEvent and get every event.
const listeners = new Set();
let socket = null;
let cursor = null;
let retryMs = 1000;

export function onEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function connectEvents() {
  if (socket) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = cursor !== null ? `?cursor=${cursor}` : "";
  socket = new WebSocket(`${scheme}://${location.host}/v1/events${query}`);
  socket.addEventListener("open", () => {
    retryMs = 1000;
    document.body.dataset.stream = "live";
  });
  socket.addEventListener("message", (msg) => {
    const frame = JSON.parse(msg.data);
    if (frame.type === "events") {
      for (const event of frame.events) {
        if (event.seq !== null && event.seq !== undefined) cursor = event.seq;
        for (const fn of listeners) fn(event);
      }
    } else if (frame.cursor !== undefined && frame.cursor !== null) {
      cursor = frame.cursor;
    }
  });
  socket.addEventListener("close", () => {
    socket = null;
    document.body.dataset.stream = "down";
    if (session.csrf) setTimeout(connectEvents, retryMs);
    retryMs = Math.min(retryMs * 2, 30000);
  });
}

export function disconnectEvents() {
  if (socket) socket.close();
}
