// The web app's entry: first-time setup, sign-in, and a hash router over the four pages.
import { api, connectEvents, disconnectEvents, errorBox, h, replace, session, uid } from "./lib.js";
import { accountsPage } from "./pages/accounts.js";
import { inboxPage, conversationPage } from "./pages/inbox.js";
import { searchPage } from "./pages/search.js";
import { opsPage } from "./pages/ops.js";

const main = document.getElementById("main");
let cleanup = null;

function field(label, attrs) {
  const id = uid("f");
  return h("p", { class: "field" }, h("label", { for: id }, label), h("input", { id, ...attrs }));
}

function authForm({ title, intro, submitLabel, fields, onSubmit }) {
  const problem = h("div");
  const form = h(
    "form",
    { class: "card auth", "aria-labelledby": "auth-title" },
    h("h1", { id: "auth-title" }, title),
    intro ? h("p", {}, intro) : null,
    fields,
    problem,
    h("button", { type: "submit" }, submitLabel),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    try {
      const answer = await onSubmit(data);
      session.csrf = answer.csrf_token;
      session.username = answer.username;
      history.replaceState(null, "", "#/inbox");
      start();
    } catch (err) {
      replace(problem, errorBox(err));
    }
  });
  replace(main, form);
  form.querySelector("input").focus();
}

function setupView(token) {
  authForm({
    title: "Create your login",
    intro: "This link works once. Choose the name and password you will sign in with.",
    submitLabel: "Create login",
    fields: [
      field("Name", { name: "username", autocomplete: "username", required: true }),
      field("Password (at least 10 characters)", {
        name: "password",
        type: "password",
        autocomplete: "new-password",
        minlength: 10,
        required: true,
      }),
    ],
    onSubmit: (data) => api("POST", "/v1/web/setup", { token, ...data }),
  });
}

function loginView(ownerExists) {
  authForm({
    title: "Sign in",
    intro: ownerExists
      ? null
      : "No login exists yet: open the one-time setup link the bridge printed when it started.",
    submitLabel: "Sign in",
    fields: [
      field("Name", { name: "username", autocomplete: "username", required: true }),
      field("Password", { name: "password", type: "password", autocomplete: "current-password", required: true }),
    ],
    onSubmit: (data) => api("POST", "/v1/web/login", data),
  });
}

const pages = { inbox: inboxPage, accounts: accountsPage, search: searchPage, ops: opsPage };

async function route() {
  if (cleanup) cleanup();
  cleanup = null;
  const [, name = "inbox", ...rest] = (location.hash || "#/inbox").slice(1).split("/");
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === name || (name === "c" && link.dataset.page === "inbox")) {
      link.setAttribute("aria-current", "page");
    } else link.removeAttribute("aria-current");
  }
  replace(main);
  try {
    if (name === "c" && rest.length >= 2) {
      cleanup = await conversationPage(main, decodeURIComponent(rest[0]), decodeURIComponent(rest[1]));
    } else {
      cleanup = await (pages[name] || inboxPage)(main);
    }
  } catch (err) {
    main.append(errorBox(err));
  }
  main.focus({ preventScroll: true });
}

async function start() {
  const hash = location.hash;
  if (hash.startsWith("#setup=")) {
    setupView(decodeURIComponent(hash.slice("#setup=".length)));
    return;
  }
  const state = await api("GET", "/v1/web/session");
  if (!state.signed_in) {
    document.getElementById("top").hidden = true;
    loginView(state.owner_exists);
    return;
  }
  session.csrf = state.csrf_token;
  session.username = state.username;
  document.getElementById("top").hidden = false;
  connectEvents();
  await route();
}

document.getElementById("logout").addEventListener("click", async () => {
  await api("POST", "/v1/web/logout");
  session.csrf = null;
  disconnectEvents();
  location.hash = "";
  start();
});
window.addEventListener("hashchange", () => {
  if (session.csrf) route();
  else start();
});
start().catch((err) => replace(main, errorBox(err)));
