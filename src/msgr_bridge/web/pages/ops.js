// Operations: health of the database and connectors, the outbox (retry, cancel), audit verify, API tokens.
import { api, enc, errorBox, h, replace, toast, uid, when } from "../lib.js";

function section(id, title, ...body) {
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), ...body);
}

export async function opsPage(main) {
  const health = h("div");
  const outbox = h("div");
  const audit = h("div");
  const tokens = h("div");
  main.append(h("h1", {}, "Operations"),
    section("ops-health", "Health", health),
    section("ops-outbox", "Outbox", outbox),
    section("ops-audit", "Audit log", audit),
    section("ops-tokens", "API tokens", tokens));
  await Promise.all([renderHealth(health), renderOutbox(outbox, ""), renderAudit(audit), renderTokens(tokens)]);
  return null;
}

async function renderHealth(el) {
  const r = await fetch("/health", { credentials: "same-origin" }).then((x) => x.json());
  const accounts = Object.entries(r.accounts || {});
  replace(el,
    h("p", {}, "Bridge: ", h("strong", { class: `state state-${r.status}` }, r.status)),
    h("p", {}, "Database: ", r.database?.ok ? "ok" : h("span", { class: "error" }, `down — ${r.database?.error || ""}`)),
    h("p", {}, "Networks installed: ", (r.connectors || []).join(", ") || "none"),
    (r.plugin_errors || []).map((e) => h("p", { class: "error" }, `Plugin error: ${JSON.stringify(e)}`)),
    accounts.length
      ? h("ul", { "aria-label": "Accounts running" }, accounts.map(([id, s]) => h("li", {}, h("code", {}, id), ": ",
        h("span", { class: `state state-${s.state}` }, String(s.state || s).replaceAll("_", " ")),
        s.reason ? ` — ${s.reason}` : "", s.restarts ? ` (restarted ${s.restarts}×)` : "")))
      : h("p", { class: "muted" }, "No account is running."));
}

async function renderOutbox(el, state) {
  const data = await api("GET", `/v1/outbox?limit=200${state ? `&state=${enc(state)}` : ""}`);
  const id = uid("st");
  const select = h("select", { id }, h("option", { value: "" }, "all states"),
    data.states.map((s) => h("option", { value: s, selected: s === state ? true : undefined }, s)));
  select.addEventListener("change", () => renderOutbox(el, select.value).catch((err) => el.append(errorBox(err))));
  const rows = data.entries.map((e) => {
    const buttons = h("td", {});
    const change = (verb) => async () => {
      try {
        if (verb === "retry") await api("POST", `/v1/outbox/${enc(e.outbox_id)}/retry`);
        else await api("DELETE", `/v1/outbox/${enc(e.outbox_id)}`);
        toast(`${verb === "retry" ? "Queued again" : "Cancelled"}: ${e.outbox_id}`);
        renderOutbox(el, state);
      } catch (err) {
        toast(err.explain ? err.explain() : String(err));
      }
    };
    if (["failed", "dead", "cancelled"].includes(e.state)) {
      buttons.append(h("button", { type: "button", onclick: change("retry"), "aria-label": `Retry ${e.outbox_id}` }, "Retry"));
    }
    if (["scheduled", "queued", "failed", "dead"].includes(e.state)) {
      buttons.append(h("button", { type: "button", class: "danger", onclick: change("cancel"), "aria-label": `Cancel ${e.outbox_id}` }, "Cancel"));
    }
    return h("tr", {}, h("td", {}, h("code", {}, e.outbox_id)), h("td", {}, e.state), h("td", {}, e.action),
      h("td", {}, `${e.account_id} / ${e.conversation_id}`), h("td", {}, String(e.attempts)), h("td", {}, e.error || ""), buttons);
  });
  replace(el,
    h("p", { class: "row" }, h("label", { for: id }, "Show "), select),
    rows.length
      ? h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Entry", "State", "Action", "Account / conversation", "Tries", "Last error", ""].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows)))
      : h("p", { class: "muted" }, "Nothing here."));
}

async function renderAudit(el) {
  const button = h("button", { type: "button" }, "Verify the audit log");
  const out = h("div", { "aria-live": "polite" });
  button.addEventListener("click", async () => {
    replace(out, h("p", { class: "muted" }, "Checking…"));
    try {
      const r = await api("GET", "/v1/audit/verify");
      replace(out, h("p", { class: r.ok ? "ok" : "error", role: r.ok ? "status" : "alert" }, r.explanation),
        r.head ? h("p", { class: "small" }, "Head: ", h("code", {}, r.head), " (keep it elsewhere to check later)") : null);
    } catch (err) {
      replace(out, errorBox(err));
    }
  });
  replace(el, button, out);
}

async function renderTokens(el) {
  const { tokens } = await api("GET", "/v1/tokens");
  const nameId = uid("t");
  const scopeId = uid("t");
  const ttlId = uid("t");
  const shown = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "row wrap" },
    h("span", {}, h("label", { for: nameId }, "Name "), h("input", { id: nameId, name: "name", required: true })),
    h("span", {}, h("label", { for: scopeId }, "Scopes "), h("input", { id: scopeId, name: "scopes", value: "read:*", required: true,
      "aria-describedby": `${scopeId}-help` })),
    h("span", {}, h("label", { for: ttlId }, "Expires after (days, optional) "), h("input", { id: ttlId, name: "days", type: "number", min: 1 })),
    h("button", { type: "submit" }, "Create token"),
    h("small", { id: `${scopeId}-help` }, "Comma-separated: read, send, edit, delete, react, admin, each :* or :account-id"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const d = Object.fromEntries(new FormData(form));
    const body = { name: d.name, scopes: d.scopes.split(",").map((s) => s.trim()).filter(Boolean) };
    if (d.days) body.ttl_s = Math.round(Number(d.days) * 86400);
    try {
      const t = await api("POST", "/v1/tokens", body);
      await renderTokens(el);
      el.prepend(h("p", { class: "ok", role: "status" }, "New token (shown only now): ", h("code", { class: "secret" }, t.token)));
    } catch (err) {
      replace(shown, errorBox(err));
    }
  });
  const rows = tokens.map((t) => {
    const revoke = t.status === "active"
      ? h("button", { type: "button", class: "danger", "aria-label": `Revoke token ${t.name}` }, "Revoke") : "";
    if (revoke) {
      revoke.addEventListener("click", async () => {
        if (!confirm(`Revoke the token ${t.name}? Clients using it stop working.`)) return;
        await api("DELETE", `/v1/tokens/${enc(t.id)}`).catch((err) => toast(err.explain()));
        renderTokens(el);
      });
    }
    return h("tr", {}, h("td", {}, t.name), h("td", {}, t.scopes.join(", ")), h("td", {}, t.status),
      h("td", {}, when(t.last_used_at) || "never"), h("td", {}, t.expires_at ? when(t.expires_at) : "never"), h("td", {}, revoke));
  });
  replace(el, form, shown,
    rows.length
      ? h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Name", "Scopes", "Status", "Last used", "Expires", ""].map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", {}, rows)))
      : h("p", { class: "muted" }, "No API tokens."));
}
