// Inbox: every conversation of every account, newest first; a conversation with paged history, live
// updates, send (with attachments, or scheduled), reply, edit, delete, react, and our messages' delivery status.
import { api, enc, errorBox, h, onEvent, replace, toast, uid, when } from "../lib.js";

const MAX_PAGES = 10;
const names = new Map(); // "account conversation" -> the conversation's name, as the inbox last listed it

async function allConversations() {
  const { accounts } = await api("GET", "/v1/accounts");
  const lists = await Promise.all(
    accounts.map(async (a) => {
      const out = [];
      let cursor = null;
      for (let page = 0; page < MAX_PAGES; page += 1) {
        const q = cursor ? `&cursor=${enc(cursor)}` : "";
        const data = await api("GET", `/v1/accounts/${enc(a.id)}/conversations?limit=500${q}`);
        out.push(...data.conversations.map((c) => ({ ...c, account: a })));
        cursor = data.next_cursor;
        if (!cursor) break;
      }
      return out;
    }),
  );
  const all = lists.flat();
  for (const c of all) if (c.name) names.set(`${c.account.id} ${c.id}`, c.name);
  const at = (c) => (c.last_message ? Date.parse(c.last_message.sent_at) : 0);
  all.sort((x, y) => at(y) - at(x));
  return { accounts, all };
}

function size(bytes) {
  return bytes < 1024 ? `${bytes} B` : bytes < 1048576 ? `${Math.round(bytes / 1024)} KB` : `${(bytes / 1048576).toFixed(1)} MB`;
}

function who(m) {
  return m.sender.display_name || m.sender.id || (m.sender.is_self ? "You" : "someone");
}

function preview(m) {
  if (!m) return "No messages yet";
  if (m.deleted) return "(deleted)";
  const files = m.attachments.length ? ` [${m.attachments.length} file${m.attachments.length > 1 ? "s" : ""}]` : "";
  return `${who(m)}: ${m.text}${files}`;
}

export function conversationHref(accountId, conversationId) {
  return `#/c/${enc(accountId)}/${enc(conversationId)}`;
}

export async function inboxPage(main) {
  const list = h("ul", { class: "conversations", "aria-label": "Conversations, newest first" });
  main.append(h("h1", {}, "Inbox"), list);
  const render = async () => {
    const { accounts, all } = await allConversations();
    if (!accounts.length) {
      replace(list, h("li", { class: "muted" }, "No account is linked: ", h("a", { href: "#/accounts" }, "link one"), "."));
      return;
    }
    if (!all.length) {
      replace(list, h("li", { class: "muted" }, "No conversations yet."));
      return;
    }
    replace(list, all.map((c) =>
      h("li", {},
        h("a", { class: "conv", href: conversationHref(c.account.id, c.id), "data-conversation": c.id },
          h("span", { class: "conv-head" },
            h("strong", {}, c.name || c.id), " ",
            h("span", { class: "badge" }, c.account.network),
            c.unread ? h("span", { class: "unread", "aria-label": `${c.unread} unread` }, c.unread_capped ? "999+" : String(c.unread)) : null,
            h("time", { datetime: c.last_message?.sent_at || "" }, when(c.last_message?.sent_at))),
          h("span", { class: "conv-last" }, preview(c.last_message))))));
  };
  let pending = null;
  const off = onEvent((e) => { // listening before the first load: nothing falls between the two
    if (["message", "edit", "delete", "read_marker", "conversation"].includes(e.kind) && !pending) {
      pending = setTimeout(() => { pending = null; render().catch(() => null); }, 300);
    }
  });
  try {
    await render();
  } catch (err) {
    off();
    throw err;
  }
  return () => { off(); clearTimeout(pending); };
}

export async function conversationPage(main, accountId, conversationId) {
  const base = `/v1/accounts/${enc(accountId)}/conversations/${enc(conversationId)}`;
  const [account, caps] = await Promise.all([
    api("GET", `/v1/accounts/${enc(accountId)}`),
    api("GET", `${base}/capabilities`).then((d) => d.capabilities),
  ]);
  const status = new Map(); // txn_id or remote id -> delivery state
  const outboxTxn = new Map(); // outbox id -> txn_id
  const streamed = new Map(); // outbox id -> state seen on the stream (it may come before the POST's answer)
  const RANK = { queued: 0, sending: 1 }; // every other state is an outcome, newer than these

  function setState(key, state) {
    if (!key || !state) return;
    if ((RANK[state] ?? 2) >= (RANK[status.get(key)] ?? -1)) status.set(key, state);
  }

  function accepted(entry) {
    outboxTxn.set(entry.outbox_id, entry.txn_id);
    setState(entry.txn_id, streamed.get(entry.outbox_id) || entry.state);
  }
  const messages = new Map(); // cursor -> message
  const reactions = new Map(); // message id -> Map(sender -> emoji), from the live stream (history has none)
  let older = null;
  let replyTo = null;

  const log = h("ol", { class: "messages", "aria-label": "Messages", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "link" }, "Load older messages");
  const replyBar = h("p", { class: "reply-bar", hidden: true });
  const composer = makeComposer();
  main.append(
    h("p", {}, h("a", { href: "#/inbox" }, "← Inbox")),
    h("h1", {}, names.get(`${accountId} ${conversationId}`) || conversationId, " ",
      h("span", { class: "badge" }, account.network)),
    more, log, replyBar, composer.form,
  );

  function stateOf(m) {
    const known = [status.get(m.txn_id), status.get(m.id)].filter(Boolean);
    known.sort((a, b) => (RANK[b] ?? 2) - (RANK[a] ?? 2));
    return known[0] || "sent"; // stored and ours: it was sent
  }

  function render() {
    const sorted = [...messages.values()].sort((a, b) => a.cursor - b.cursor);
    replace(log, sorted.map(renderMessage));
    more.hidden = !older;
  }

  function renderMessage(m) {
    const mine = m.sender.is_self;
    const actions = h("span", { class: "actions" });
    const act = (label, fn, cls) => {
      const b = h("button", { type: "button", class: `link ${cls || ""}`, "aria-label": `${label} message from ${who(m)}` }, label);
      b.addEventListener("click", fn);
      actions.append(b);
    };
    if (!m.deleted) {
      if (caps.replies) act("Reply", () => { replyTo = m; showReply(); });
      if (caps.reactions) act("React", () => react(m));
      if (mine && caps.edits) act("Edit", () => edit(m));
      if (mine && caps.deletes) act("Delete", () => remove(m), "danger");
    }
    const quoted = m.reply_to ? [...messages.values()].find((x) => x.id === m.reply_to) : null;
    return h("li", { class: `msg ${mine ? "mine" : ""}`, "data-id": m.id },
      h("p", { class: "meta" }, h("strong", {}, who(m)), " ",
        h("time", { datetime: m.sent_at }, when(m.sent_at)),
        m.edited_at ? h("span", { class: "muted" }, " (edited)") : null,
        mine ? h("span", { class: `delivery delivery-${stateOf(m)}`, "data-delivery": stateOf(m) }, ` · ${stateOf(m)}`) : null),
      m.reply_to ? h("p", { class: "quote" }, "↪ ", quoted ? quoted.text : m.reply_to) : null,
      h("p", { class: "text" }, m.deleted ? h("em", {}, "deleted") : m.text),
      reactions.get(m.id)?.size
        ? h("p", { class: "reactions", "aria-label": "Reactions" }, [...reactions.get(m.id)].map(([who, emoji]) =>
          h("span", { class: "badge", title: who }, emoji)))
        : null,
      m.attachments.map((a) => h("p", { class: "file" },
        a.url ? h("a", { href: a.url, target: "_blank", rel: "noopener noreferrer" }, a.name || "file") : a.name,
        a.size !== null && a.size !== undefined ? ` (${size(a.size)})` : "")),
      actions);
  }

  function showReply() {
    replyBar.hidden = !replyTo;
    if (!replyTo) return;
    const clear = h("button", { type: "button", class: "link" }, "Cancel reply");
    clear.addEventListener("click", () => { replyTo = null; showReply(); });
    replace(replyBar, `Replying to ${who(replyTo)}: “${replyTo.text.slice(0, 80)}” `, clear);
    composer.text.focus();
  }

  async function load(before) {
    const q = before ? `&before=${before}` : "";
    const page = await api("GET", `${base}/messages?limit=50${q}`);
    for (const m of page.messages) messages.set(m.cursor, m);
    if (before || older === null) older = page.next_cursor;
    render();
  }

  async function act(method, path, body, done) {
    try {
      accepted(await api(method, path, body));
      toast(done);
    } catch (err) {
      toast(err.explain ? err.explain() : String(err));
    }
  }

  async function react(m) {
    const emoji = prompt("React with which emoji?", "👍");
    if (emoji) await act("POST", `${base}/messages/${enc(m.id)}/reactions`, { emoji }, "Reaction sent");
  }
  async function edit(m) {
    const text = prompt("Edit message", m.text);
    if (text && text !== m.text) await act("PATCH", `${base}/messages/${enc(m.id)}`, { text }, "Edit sent");
  }
  async function remove(m) {
    if (confirm("Delete this message for everyone?")) await act("DELETE", `${base}/messages/${enc(m.id)}`, undefined, "Delete sent");
  }

  function makeComposer() {
    const textId = uid("text");
    const fileId = uid("file");
    const atId = uid("at");
    const text = h("textarea", { id: textId, name: "text", rows: 2, placeholder: "Write a message" });
    const files = h("input", { id: fileId, type: "file", name: "files", multiple: true });
    const at = h("input", { id: atId, type: "datetime-local", name: "send_at" });
    const problem = h("div");
    const form = h("form", { class: "composer", "aria-label": "Send a message" },
      h("label", { for: textId, class: "visually-hidden" }, "Message"), text,
      h("div", { class: "row" },
        caps.attachments?.length ? h("span", {}, h("label", { for: fileId }, "Attach "), files) : null,
        h("span", {}, h("label", { for: atId }, "Send at (optional) "), at),
        h("button", { type: "submit" }, "Send")),
      problem);
    text.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      replace(problem);
      if (!text.value.trim() && !files.files.length) return;
      const fields = { text: text.value };
      if (replyTo) fields.reply_to = replyTo.id;
      if (at.value) fields.send_at = new Date(at.value).toISOString();
      let body = fields;
      if (files.files.length) {
        body = new FormData();
        body.append("message", new Blob([JSON.stringify(fields)], { type: "application/json" }));
        for (const f of files.files) body.append("file", f, f.name);
      }
      try {
        accepted(await api("POST", `${base}/messages`, body));
        text.value = "";
        files.value = "";
        at.value = "";
        replyTo = null;
        showReply();
        toast(fields.send_at ? "Scheduled" : "Sending…");
      } catch (err) {
        replace(problem, errorBox(err));
      }
    });
    return { form, text };
  }

  let marked = null; // the last message id marked read
  let pending = null;
  const off = onEvent((e) => { // listening before the first load: nothing falls between the two
    if (e.account_id !== accountId || e.conversation_id !== conversationId) return;
    if (e.kind === "reaction") {
      const r = e.event;
      const on = reactions.get(r.target_id) || new Map();
      if (r.action === "remove") on.delete(r.sender?.id);
      else on.set(r.sender?.id, r.emoji);
      reactions.set(r.target_id, on);
      render();
      return;
    }
    if (e.kind === "delivery_status") {
      streamed.set(e.event.outbox_id, e.event.state);
      setState(outboxTxn.get(e.event.outbox_id), e.event.state);
      setState(e.event.remote_id, e.event.state);
      if (e.event.state === "failed" && e.event.reason) toast(`Not delivered: ${e.event.reason}`);
      render();
      return;
    }
    if (!pending) {
      pending = setTimeout(() => {
        pending = null;
        api("GET", `${base}/messages?limit=50`).then((page) => {
          for (const m of page.messages) messages.set(m.cursor, m);
          render();
          markRead();
        }).catch(() => null);
      }, 150);
    }
  });
  more.addEventListener("click", () => load(older).catch((err) => more.after(errorBox(err))));
  try {
    await load(null);
  } catch (err) {
    off();
    throw err;
  }
  function markRead() { // tell the network (and the unread counts) what was seen here
    const body = lastOthers();
    if (!caps.read_receipts || !body || body.up_to_id === marked) return;
    marked = body.up_to_id;
    api("POST", `${base}/read`, body).catch(() => null);
  }
  markRead();

  function lastOthers() {
    const theirs = [...messages.values()].filter((m) => !m.sender.is_self).sort((a, b) => b.cursor - a.cursor);
    return theirs.length ? { up_to_id: theirs[0].id } : undefined;
  }

  return () => { off(); clearTimeout(pending); };
}
