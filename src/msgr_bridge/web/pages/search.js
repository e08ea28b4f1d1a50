// Search across every account: GET /v1/search with filters; snippets with highlights rendered as <mark>.
import { api, errorBox, h, replace, uid, when } from "../lib.js";
import { conversationHref } from "./inbox.js";

export function highlighted(snippet, ranges) {
  // the API counts offsets in Unicode code points, not JavaScript's UTF-16 units: index the code points
  const chars = Array.from(snippet);
  const text = (from, to) => chars.slice(from, to).join("");
  const out = [];
  let at = 0;
  const sorted = [...(ranges || [])].sort((a, b) => a[0] - b[0]);
  for (const [start, end] of sorted) {
    if (start < at || end <= start || end > chars.length) continue;
    out.push(text(at, start), h("mark", {}, text(start, end)));
    at = end;
  }
  out.push(text(at));
  return out;
}

function input(label, attrs) {
  const id = uid("s");
  return h("p", { class: "field" }, h("label", { for: id }, label), h("input", { id, ...attrs }));
}

export async function searchPage(main) {
  const { accounts } = await api("GET", "/v1/accounts");
  const accId = uid("s");
  const networks = [...new Set(accounts.map((a) => a.network))];
  const netId = uid("s");
  const form = h("form", { role: "search", class: "search-form", "aria-label": "Search messages" },
    input("Search for", { name: "q", type: "search", required: true }),
    h("p", { class: "field" }, h("label", { for: accId }, "Account"),
      h("select", { id: accId, name: "account" }, h("option", { value: "" }, "All accounts"),
        accounts.map((a) => h("option", { value: a.id }, `${a.display_name || a.remote_user_id} (${a.network})`)))),
    h("p", { class: "field" }, h("label", { for: netId }, "Network"),
      h("select", { id: netId, name: "network" }, h("option", { value: "" }, "All networks"),
        networks.map((n) => h("option", { value: n }, n)))),
    input("Conversation", { name: "conversation" }),
    input("Sender", { name: "sender" }),
    input("Since", { name: "since", type: "date" }),
    input("Until", { name: "until", type: "date" }),
    h("p", {}, h("button", { type: "submit" }, "Search")));
  const results = h("ol", { class: "results", "aria-label": "Results" });
  const note = h("div", { "aria-live": "polite" });
  const more = h("button", { type: "button", class: "link", hidden: true }, "More results");
  main.append(h("h1", {}, "Search"), form, note, results, more);
  let query = "";
  let cursor = null;

  async function run(append) {
    const params = new URLSearchParams(query);
    if (append && cursor) params.set("cursor", cursor);
    params.set("limit", "25");
    try {
      const data = await api("GET", `/v1/search?${params}`);
      if (!append) replace(results);
      for (const r of data.results) {
        const m = r.message;
        results.append(h("li", { class: "result" },
          h("a", { href: conversationHref(r.account_id || params.get("account") || accounts[0]?.id || "", m.conversation_id) },
            h("strong", {}, m.sender.display_name || m.sender.id), " in ", m.conversation_id, " · ",
            h("time", { datetime: m.sent_at }, when(m.sent_at))),
          h("p", { class: "snippet" }, highlighted(r.snippet, r.highlights))));
      }
      replace(note, h("p", { class: "muted" }, results.children.length ? `${results.children.length} shown` : "Nothing found."));
      cursor = data.next_cursor;
      more.hidden = !cursor;
    } catch (err) {
      replace(note, err.status === 404 && err.code !== "account_not_found"
        ? h("p", { class: "error", role: "alert" }, "Search is not available on this bridge yet (GET /v1/search answered 404).")
        : errorBox(err));
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const params = new URLSearchParams();
    for (const [k, v] of data) {
      if (!v) continue;
      if (k === "since") params.set(k, new Date(`${v}T00:00:00`).toISOString());
      else if (k === "until") params.set(k, new Date(`${v}T23:59:59`).toISOString());
      else params.set(k, v);
    }
    query = params.toString();
    cursor = null;
    run(false);
  });
  more.addEventListener("click", () => run(true));
  form.querySelector("input").focus();
  return null;
}
