// Accounts: every linked account with its state and what to do; installed networks and their capabilities;
// linking step by step (a form from the connector's settings, a QR code that refreshes, a device code, an
// OAuth link); unlink.
import { api, enc, errorBox, h, replace, toast, uid } from "../lib.js";

const ADVICE = {
  connected: "Working.",
  connecting: "Connecting; this takes a few seconds. If it stays here, check the network's address.",
  transient_disconnect: "The network dropped the connection; the bridge reconnects by itself.",
  bad_credentials: "The network refused the login: unlink this account and link it again with the right details.",
  credentials_expiring: "The login expires soon: link the account again before it does.",
  stopped: "Stopped: the bridge does not run this account (see the reason).",
};

export function capabilityList(caps) {
  const on = Object.entries(caps || {})
    .filter(([, v]) => v === true)
    .map(([k]) => k.replaceAll("_", " "));
  return on.length ? on.join(", ") : "none";
}

export async function accountsPage(main) {
  const list = h("div", { class: "stack" });
  const linker = h("section", { class: "card", "aria-labelledby": "link-title" });
  const nets = h("div");
  main.append(
    h("h1", {}, "Accounts"),
    h("section", { "aria-labelledby": "acc-title" }, h("h2", { id: "acc-title" }, "Linked accounts"), list),
    linker,
    h("section", { "aria-labelledby": "net-title" }, h("h2", { id: "net-title" }, "Networks"), nets),
  );
  const [{ networks }, { accounts }] = await Promise.all([api("GET", "/v1/networks"), api("GET", "/v1/accounts")]);
  renderAccounts(list, accounts, () => accountsPage(replace(main)));
  renderNetworks(nets, networks);
  let flow = { stop() {} };
  renderLinker(linker, networks, (f) => (flow = f), () => accountsPage(replace(main)));
  return () => flow.stop();
}

function renderAccounts(list, accounts, reload) {
  if (!accounts.length) {
    list.append(h("p", { class: "muted" }, "No account is linked yet: link one below."));
    return;
  }
  for (const a of accounts) {
    const unlink = h("button", { type: "button", class: "danger" }, "Unlink");
    unlink.addEventListener("click", async () => {
      if (!confirm(`Unlink ${a.display_name || a.remote_user_id} (${a.network})? Its secrets are deleted.`)) return;
      try {
        await api("DELETE", `/v1/accounts/${enc(a.id)}`);
        toast("Account unlinked");
        reload();
      } catch (err) {
        unlink.after(errorBox(err));
      }
    });
    list.append(
      h(
        "article",
        { class: "card account", "data-account": a.id, "aria-label": `${a.network} account ${a.remote_user_id}` },
        h("h3", {}, a.display_name || a.remote_user_id, " ", h("span", { class: "badge" }, a.network)),
        h("p", {}, h("span", { class: `state state-${a.state}` }, a.state.replaceAll("_", " ")),
          a.state_reason ? ` — ${a.state_reason}` : ""),
        h("p", { class: "muted" }, ADVICE[a.state] || ""),
        a.credentials_expire_at ? h("p", {}, "Login expires ", new Date(a.credentials_expire_at).toLocaleString()) : null,
        h("p", { class: "small" }, "Can: ", capabilityList(a.capabilities)),
        unlink,
      ),
    );
  }
}

function renderNetworks(el, networks) {
  const rows = networks.map((n) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, n.display_name, " ", h("span", { class: "muted" }, `(${n.network})`)),
      h("td", {}, n.supported ? "supported" : h("span", { class: "unsupported" }, "unsupported")),
      h("td", {}, n.supported ? capabilityList(n.capabilities) : n.unsupported_reason),
    ),
  );
  el.append(
    h("div", { class: "scroll" },
      h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Network"), h("th", { scope: "col" }, "Status"),
        h("th", { scope: "col" }, "Capabilities or reason"))), h("tbody", {}, rows))),
  );
}

function renderLinker(el, networks, setFlow, done) {
  const id = uid("net");
  const select = h("select", { id, name: "network" },
    networks.filter((n) => n.supported).map((n) => h("option", { value: n.network }, n.display_name)));
  const stepBox = h("div", { class: "step", "aria-live": "polite" });
  const startForm = h("form", { class: "row" }, h("label", { for: id }, "Network"), select,
    h("button", { type: "submit" }, "Start linking"));
  startForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const flow = await api("POST", "/v1/links", { network: select.value });
      setFlow(new FlowView(stepBox, flow, done));
    } catch (err) {
      replace(stepBox, errorBox(err));
    }
  });
  el.append(h("h2", { id: "link-title" }, "Link an account"), startForm, stepBox);
}

class FlowView {
  constructor(el, flow, done) {
    this.el = el;
    this.done = done;
    this.timer = null;
    this.values = {};
    this.show(flow);
  }

  stop() {
    clearTimeout(this.timer);
  }

  poll() {
    this.stop();
    this.timer = setTimeout(async () => {
      try {
        this.show(await api("GET", `/v1/links/${enc(this.flow.id)}`));
      } catch (err) {
        replace(this.el, errorBox(err));
      }
    }, 2000);
  }

  show(flow) {
    this.stop();
    const previous = this.flow;
    this.flow = flow;
    if (flow.status === "linked") {
      this.stop();
      toast("Account linked");
      replace(this.el, h("p", { class: "ok", role: "status" }, `Linked ${flow.account?.remote_user_id || ""}.`));
      setTimeout(this.done, 800);
      return;
    }
    if (flow.status !== "pending") {
      this.stop();
      replace(this.el, h("p", { class: "error", role: "alert" }, `Linking ${flow.status}: ${flow.error || ""}`,
        flow.hint ? ` (${flow.hint})` : ""), h("p", {}, "Start again above."));
      return;
    }
    const step = flow.step;
    const waits = ["qr_code", "device_code", "oauth_url"].includes(step.kind);
    const before = previous && previous.step;
    const sameForm = before && before.kind === step.kind && before.prompt === step.prompt &&
      JSON.stringify(before.fields) === JSON.stringify(step.fields);
    if (previous && sameForm && !flow.error && waits) {
      // only the code changed (a QR code rotates): update it in place, keep what the person typed
      const img = this.el.querySelector("img.qr");
      if (img && step.qr_png_data_uri && img.src !== step.qr_png_data_uri) img.src = step.qr_png_data_uri;
      const code = this.el.querySelector(".code");
      if (code && step.user_code) code.textContent = step.user_code;
      this.poll();
      return;
    }
    const cancel = h("button", { type: "button", class: "link" }, "Cancel");
    cancel.addEventListener("click", async () => {
      this.stop();
      await api("DELETE", `/v1/links/${enc(flow.id)}`).catch(() => null);
      replace(this.el, h("p", {}, "Linking cancelled."));
    });
    const parts = [h("h3", {}, step.prompt || "Next step")];
    if (flow.error) parts.push(h("p", { class: "error", role: "alert" }, flow.error, flow.hint ? ` (${flow.hint})` : ""));
    if (step.kind === "qr_code" && step.qr_png_data_uri) {
      parts.push(h("img", { class: "qr", src: step.qr_png_data_uri, alt: "QR code to scan with the network's app" }));
      parts.push(h("p", { class: "muted" }, "The code refreshes by itself until it is scanned."));
    }
    if (step.kind === "device_code") {
      parts.push(h("p", {}, "Open ", h("a", { href: step.url, target: "_blank", rel: "noopener noreferrer" }, step.url),
        " and enter the code ", h("strong", { class: "code" }, step.user_code || "")));
    }
    if (step.kind === "oauth_url" && step.url) {
      parts.push(h("p", {}, h("a", { class: "button", href: step.url, target: "_blank", rel: "noopener noreferrer" },
        "Sign in with the network"), " then come back here."));
    }
    if (step.fields && step.fields.length) parts.push(this.form(step));
    if (waits) this.poll();
    parts.push(cancel);
    replace(this.el, ...parts);
    const firstBad = this.el.querySelector("input");
    if (flow.error && firstBad) firstBad.focus();
  }

  form(step) {
    const form = h("form", { class: "stack" });
    for (const f of step.fields) {
      const id = uid("lf");
      const help = f.help ? h("small", { id: `${id}-help` }, f.help) : null;
      const kept = this.values[f.name] ?? f.default;
      let input;
      if (f.type === "boolean") {
        input = h("input", { id, name: f.name, type: "checkbox", checked: kept === true, "aria-describedby": help && `${id}-help` });
        form.append(h("p", { class: "field check" }, input, h("label", { for: id }, f.label), help));
        continue;
      }
      const type = f.secret ? "password" : f.type === "integer" || f.type === "number" ? "number" : "text";
      input = h("input", {
        id, name: f.name, type, required: f.required && kept === undefined,
        value: kept === null || kept === undefined ? "" : Array.isArray(kept) ? kept.join(", ") : String(kept),
        step: f.type === "number" ? "any" : undefined, autocomplete: f.secret ? "off" : undefined,
        "aria-describedby": help && `${id}-help`,
      });
      form.append(h("p", { class: "field" }, h("label", { for: id }, f.label, f.required ? " *" : ""), input, help));
    }
    form.append(h("button", { type: "submit" }, "Continue"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const answers = {};
      for (const f of step.fields) {
        const input = form.elements.namedItem(f.name);
        let v = f.type === "boolean" ? input.checked : input.value.trim();
        if (f.type !== "boolean") {
          if (v === "") { if (f.required) answers[f.name] = ""; continue; }
          if (f.type === "integer") v = Number.parseInt(v, 10);
          else if (f.type === "number") v = Number(v);
          else if (f.type === "list") v = v.split(",").map((s) => s.trim()).filter(Boolean);
        }
        answers[f.name] = v;
        if (!f.secret) this.values[f.name] = v;
      }
      form.querySelector("button[type=submit]").disabled = true;
      try {
        this.show(await api("POST", `/v1/links/${enc(this.flow.id)}/answers`, { answers }));
      } catch (err) {
        form.querySelector("button[type=submit]").disabled = false;
        form.append(errorBox(err));
      }
    });
    return form;
  }
}
