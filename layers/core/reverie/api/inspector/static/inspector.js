// The memory inspector: what Reverie remembers of a project's users, why, and how to correct it.
//
// It calls the public API with the key pasted in, which is kept in this tab's sessionStorage only (closing the tab
// forgets it). The page is built with DOM calls and textContent only: the Content-Security-Policy requires Trusted
// Types, so no string ever reaches an HTML sink, and a memory's text is always shown as text.
"use strict";

(function () {
  const KEY_ITEM = "reverie.inspector.key";
  // The API is served beside the page: strip /ui from where the page is (a custom domain's base path stays).
  const BASE = window.location.pathname.replace(/\/ui\/?$/, "");
  const TIERS = ["episodic", "semantic", "procedural"];
  const MEMORY_PAGES = 5; // a user's memories are read 100 at a time, this many pages at most
  const main = document.getElementById("main");
  const dialog = document.getElementById("dialog");
  let project = null;

  // ----------------------------------------------------------------- DOM

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else if (name === "class") el.className = value;
      else if (name === "test") el.dataset.test = value;
      else if (name === "value") el.value = value;
      else if (name === "checked") el.checked = Boolean(value);
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function show(...children) {
    main.replaceChildren();
    append(main, children);
  }

  function toast(message) {
    const el = document.getElementById("toast");
    el.textContent = message;
    el.classList.add("show");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => el.classList.remove("show"), 3500);
  }

  function when(value) {
    if (!value) return "—";
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return String(value);
    return date.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  function ago(value) {
    if (!value) return "—";
    const seconds = Math.max(0, (Date.now() - new Date(value).getTime()) / 1000);
    if (seconds < 60) return `${Math.round(seconds)} s ago`;
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} d ago`;
  }

  function short(id) {
    return id ? String(id).slice(0, 8) : "—";
  }

  function badge(status) {
    return h("span", { class: `badge ${status}`, test: "badge" }, status);
  }

  function tierLabel(tier) {
    return h("span", { class: `tier ${tier}` }, tier);
  }

  function path(...parts) {
    return parts.map(encodeURIComponent).join("/");
  }

  function userLink(userId, tab) {
    return "#/users/" + encodeURIComponent(userId) + (tab ? "/" + tab : "");
  }

  // ----------------------------------------------------------------- the API

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function key() {
    return window.sessionStorage.getItem(KEY_ITEM);
  }

  async function api(method, route, { query, body } = {}) {
    const headers = { Authorization: "Bearer " + key(), Accept: "application/json" };
    let url = BASE + route;
    if (query) {
      const params = new URLSearchParams();
      for (const [name, value] of Object.entries(query)) {
        if (value !== null && value !== undefined && value !== "") params.set(name, String(value));
      }
      if ([...params].length) url += "?" + params.toString();
    }
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      let message = error.message || (data && data.message) || `HTTP ${response.status}`;
      if (response.status === 429) message += ` (retry after ${response.headers.get("Retry-After") || "a while"} s)`;
      throw new ApiError(response.status, error.code || `http_${response.status}`, message);
    }
    return data;
  }

  function failure(err) {
    if (err instanceof ApiError && err.status === 401) {
      window.sessionStorage.removeItem(KEY_ITEM);
      connectView("The API key was refused: paste a working key of the project.");
      return null;
    }
    return h("div", { class: "error", test: "error" }, err.message || String(err));
  }

  async function guarded(render) {
    try {
      await render();
    } catch (err) {
      const shown = failure(err);
      if (shown) show(shown);
    }
  }

  // ----------------------------------------------------------------- the key

  function connectView(problem) {
    setConnected(false);
    const input = h("input", { type: "password", id: "api-key", autocomplete: "off", spellcheck: "false",
      placeholder: "rv_…", test: "key-input" });
    const form = h("form", { class: "card connect", test: "connect",
      onsubmit: async (event) => {
        event.preventDefault();
        const value = input.value.trim();
        if (!value) return;
        window.sessionStorage.setItem(KEY_ITEM, value);
        await start();
      } },
      h("h1", {}, "Connect to a project"),
      h("p", { class: "muted" }, "Paste an API key of the project. It stays in this tab only (sessionStorage) and " +
        "is sent to this API alone; closing the tab forgets it."),
      problem ? h("div", { class: "error", test: "error" }, problem) : null,
      h("label", { class: "block", for: "api-key" }, "API key"),
      input,
      h("div", { class: "row" }, h("button", { class: "primary", type: "submit", test: "connect-button" }, "Connect")),
      h("p", { class: "small faint" }, "On make dev the key is in .reverie/dev-key."));
    show(form);
    input.focus();
  }

  function setConnected(connected) {
    document.getElementById("nav").hidden = !connected;
    document.getElementById("session").hidden = !connected;
    document.getElementById("project").textContent = connected && project ? `project ${project}` : "";
  }

  async function start() {
    if (!key()) {
      connectView();
      return;
    }
    try {
      const status = await api("GET", "/v1/status");
      project = status.project_id;
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        window.sessionStorage.removeItem(KEY_ITEM);
        connectView("The API key was refused: paste a working key of the project.");
      } else {
        connectView(err.message);
      }
      return;
    }
    setConnected(true);
    route();
  }

  // ----------------------------------------------------------------- routes

  function route() {
    if (!key()) {
      connectView();
      return;
    }
    const parts = window.location.hash.replace(/^#\/?/, "").split("?")[0].split("/").map((part) => {
      try {
        return decodeURIComponent(part);
      } catch (err) {
        return part;
      }
    });
    for (const link of document.querySelectorAll("nav a")) {
      link.classList.toggle("active", link.dataset.nav === (parts[0] === "status" ? "status" : "users"));
    }
    if (parts[0] === "status") guarded(statusView);
    else if (parts[0] === "users" && parts[1]) guarded(() => userView(parts[1], parts[2] || "memories"));
    else if (parts[0] === "memories" && parts[1]) guarded(() => memoryView(parts[1]));
    else if (parts[0] === "jobs" && parts[1]) guarded(() => jobView(parts[1]));
    else guarded(usersView);
  }

  // ----------------------------------------------------------------- users

  async function usersView() {
    const prefix = new URLSearchParams(window.location.hash.split("?")[1] || "").get("prefix") || "";
    const filter = h("input", { type: "search", placeholder: "user id starts with…", value: prefix,
      test: "user-filter" });
    const body = h("tbody", { test: "users" });
    const more = h("button", { type: "button", hidden: true, test: "more-users" }, "Load more");
    const table = h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "user"),
        ...TIERS.map((t) => h("th", { class: "num" }, t)),
        h("th", { class: "num" }, "superseded"), h("th", { class: "num" }, "jobs"),
        h("th", { class: "num" }, "failed"), h("th", { class: "num" }, "held"),
        h("th", {}, "narrative"), h("th", {}, "last activity"))),
      body);
    let cursor = null;

    async function load(reset) {
      if (reset) {
        body.replaceChildren();
        cursor = null;
      }
      const page = await api("GET", "/v1/users", { query: { limit: 50, cursor, prefix: filter.value.trim() } });
      for (const user of page.users) {
        body.append(h("tr", { test: "user-row" },
          h("td", {}, h("a", { href: userLink(user.user_id), test: "user-link" }, user.user_id)),
          ...TIERS.map((t) => h("td", { class: "num" }, user.memories[t])),
          h("td", { class: "num" }, user.memories.superseded),
          h("td", { class: "num" }, user.jobs),
          h("td", { class: "num" }, user.failed_jobs ? badge("failed") : null, user.failed_jobs ? " " : "",
            user.failed_jobs),
          h("td", { class: "num" }, user.held_jobs),
          h("td", {}, user.narrative_version ? `v${user.narrative_version}` : h("span", { class: "faint" }, "none")),
          h("td", { title: when(user.last_activity) }, ago(user.last_activity))));
      }
      if (!body.children.length) {
        body.append(h("tr", {}, h("td", { colspan: 10, class: "empty" },
          filter.value.trim() ? "No user's id starts with this." : "No users yet: nothing was learned in this project.")));
      }
      cursor = page.next_cursor;
      more.hidden = !cursor;
    }

    more.addEventListener("click", () => load(false).catch((err) => toast(err.message)));
    const form = h("form", { class: "row", onsubmit: (event) => {
      event.preventDefault();
      load(true).catch((err) => toast(err.message));
    } }, filter, h("button", { type: "submit", test: "find-user" }, "Find"));
    show(
      h("div", { class: "spread" },
        h("div", {}, h("h1", {}, "Users"),
          h("p", { class: "muted" }, "Everyone this project remembers something of: memories, jobs and windows.")),
        form),
      h("div", { class: "card" }, table, h("div", { class: "row" }, more)));
    await load(true);
  }

  // ----------------------------------------------------------------- one user

  async function userView(userId, tab) {
    const tabs = [["memories", "Memories"], ["jobs", "Jobs & pending"], ["search", "Search"],
      ["recall", "What chat would recall"]];
    // The user's counts; and whether a narrative exists, since asking for a missing one queues its writing.
    const found = await api("GET", "/v1/users", { query: { prefix: userId, limit: 1 } });
    const summary = found.users.find((u) => u.user_id === userId) || null;
    const header = h("div", { class: "spread" },
      h("div", {},
        h("div", { class: "crumbs" }, h("a", { href: "#/" }, "Users"), " / "),
        h("h1", { test: "user-title" }, userId),
        summary ? h("div", { class: "small muted" },
          `${TIERS.map((t) => `${summary.memories[t]} ${t}`).join(" · ")} · ${summary.memories.superseded} superseded`
          + ` · ${summary.jobs} jobs · last active ${ago(summary.last_activity)}`)
          : h("div", { class: "small muted" }, "Nothing is stored of this user.")),
      h("div", { class: "row" },
        h("button", { type: "button", test: "regenerate", onclick: () => regenerate(userId) }, "Regenerate narrative"),
        h("button", { type: "button", class: "danger", test: "forget", onclick: () => forgetDialog(userId) },
          "Forget user…")));
    const nav = h("div", { class: "tabs" }, tabs.map(([name, label]) =>
      h("a", { href: userLink(userId, name), class: name === tab ? "active" : "", test: `tab-${name}` }, label)));
    const body = h("div", {});
    show(header, nav, body);
    if (tab === "jobs") await jobsTab(userId, body);
    else if (tab === "search") searchTab(userId, body);
    else if (tab === "recall") recallTab(userId, body);
    else await memoriesTab(userId, body, summary);
  }

  async function allMemories(userId) {
    const found = [];
    let cursor = null;
    for (let page = 0; page < MEMORY_PAGES; page += 1) {
      const answer = await api("GET", "/v1/memories",
        { query: { user_id: userId, include_superseded: true, limit: 100, cursor } });
      found.push(...answer.memories);
      cursor = answer.next_cursor;
      if (!cursor) return { memories: found, more: false };
    }
    return { memories: found, more: true };
  }

  async function narrativeOf(userId) {
    try {
      return await api("GET", `/v1/users/${path(userId)}/narrative`);
    } catch (err) {
      return { error: err.message };
    }
  }

  async function memoriesTab(userId, body, summary) {
    const [{ memories, more }, narrative] = await Promise.all([allMemories(userId),
      summary && summary.narrative_version ? narrativeOf(userId) : { missing: true }]);
    const byId = new Map(memories.map((m) => [m.id, m]));
    const showSuperseded = h("input", { type: "checkbox", checked: true, test: "show-superseded" });
    const columns = h("div", { class: "memories" });

    function draw() {
      columns.replaceChildren();
      for (const tier of TIERS) {
        const mine = memories.filter((m) => m.tier === tier && (showSuperseded.checked || !m.superseded_at));
        columns.append(h("div", { class: "card", test: `tier-${tier}` },
          h("h3", {}, tierLabel(tier), ` · ${mine.filter((m) => !m.superseded_at).length} current`),
          mine.length ? mine.map((m) => memoryCard(m, byId)) : h("div", { class: "empty" }, "Nothing in this tier.")));
      }
    }
    showSuperseded.addEventListener("change", draw);
    draw();
    append(body, [
      narrativeCard(userId, narrative, byId),
      h("div", { class: "spread" }, h("h2", {}, "Memories by tier"),
        h("label", { class: "muted" }, showSuperseded, "show superseded (greyed)")),
      more ? h("p", { class: "note" }, `Showing the newest ${memories.length} memories.`) : null,
      columns,
    ]);
  }

  function narrativeCard(userId, narrative, byId) {
    const card = h("div", { class: "card", test: "narrative" }, h("h3", {}, "Narrative"));
    if (narrative.error) {
      append(card, [h("div", { class: "error" }, narrative.error)]);
    } else if (narrative.missing) {
      append(card, [h("p", { class: "muted" }, "None written yet: “Regenerate narrative” queues one.")]);
    } else if (narrative.status === "generating") {
      append(card, [h("p", { class: "muted" }, "No narrative yet: one is being written",
        narrative.job_id ? ` (job ${short(narrative.job_id)})` : "", ". Look again in a moment.")]);
    } else {
      const citations = (narrative.citations || []).map((id, i) => {
        const cited = byId.get(id);
        return h("a", { href: "#/memories/" + encodeURIComponent(id), test: "citation",
          title: cited ? cited.text : id }, `[${i + 1}] `, cited ? clip(cited.text, 48) : short(id));
      });
      append(card, [
        h("p", { class: "narrative", test: "narrative-text" }, narrative.narrative),
        h("p", { class: "small muted" }, `version ${narrative.version} · written ${when(narrative.generated_at)}`),
        citations.length ? h("div", { class: "citations" }, h("span", { class: "small muted" }, "cites"), citations)
          : null,
      ]);
    }
    return card;
  }

  function clip(text, length) {
    return text.length > length ? text.slice(0, length - 1) + "…" : text;
  }

  function memoryCard(memory, byId) {
    const superseded = Boolean(memory.superseded_at);
    const meta = [`recorded ${when(memory.created_at)}`];
    if (memory.updated_at && memory.updated_at !== memory.created_at) meta.push(`updated ${when(memory.updated_at)}`);
    if (memory.valid_from || memory.valid_to) meta.push(`valid ${when(memory.valid_from)} → ${memory.valid_to ? when(memory.valid_to) : "now"}`);
    const by = superseded && memory.superseded_by ? byId.get(memory.superseded_by) : null;
    return h("div", { class: "memory" + (superseded ? " superseded" : ""), test: "memory", "data-id": memory.id },
      h("div", { class: "text", test: "memory-text" }, memory.text),
      h("div", { class: "meta" }, meta.join(" · ")),
      superseded ? h("div", { class: "meta" }, `superseded ${when(memory.superseded_at)}`,
        memory.superseded_by ? [" by ", h("a", { href: "#/memories/" + encodeURIComponent(memory.superseded_by) },
          by ? `“${clip(by.text, 40)}”` : short(memory.superseded_by))] : "") : null,
      h("div", { class: "actions" },
        h("a", { class: "button small", href: "#/memories/" + encodeURIComponent(memory.id), test: "open-memory" },
          superseded ? "History" : "History & edit")));
  }

  async function regenerate(userId) {
    try {
      const answer = await api("POST", `/v1/users/${path(userId)}/narrative/regenerate`);
      toast(`A new narrative is being written (job ${short(answer.job_id)}).`);
    } catch (err) {
      toast(err.message);
    }
  }

  function forgetDialog(userId) {
    const typed = h("input", { type: "text", autocomplete: "off", spellcheck: "false", test: "forget-confirm-input" });
    const confirm = h("button", { type: "button", class: "danger solid", disabled: true, test: "forget-confirm" },
      `Forget ${userId}`);
    const problem = h("div", { class: "error", hidden: true });
    typed.addEventListener("input", () => { confirm.disabled = typed.value !== userId; });
    confirm.addEventListener("click", async () => {
      confirm.disabled = true;
      try {
        const answer = await api("DELETE", `/v1/users/${path(userId)}`);
        dialog.close();
        toast(`${userId} was forgotten everywhere (job ${short(answer.job_id)}).`);
        window.location.hash = "#/";
      } catch (err) {
        problem.hidden = false;
        problem.textContent = err.message;
        confirm.disabled = false;
      }
    });
    dialog.replaceChildren(
      h("h2", { test: "forget-title" }, `Forget ${userId}?`),
      h("p", {}, `Everything Reverie keeps of ${userId} goes, everywhere: working memory, every memory of every tier `
        + "and its history, narratives, job outcomes, the ledger, and jobs still on their way. It cannot be undone."),
      h("label", { class: "block" }, `Type ${userId} to confirm`),
      typed, problem,
      h("div", { class: "buttons" },
        h("button", { type: "button", onclick: () => dialog.close() }, "Cancel"), confirm));
    dialog.showModal();
    typed.focus();
  }

  // ----------------------------------------------------------------- a memory: history, edit, delete

  async function memoryView(memoryId) {
    const [memory, history] = await Promise.all([
      api("GET", `/v1/memories/${path(memoryId)}`).catch((err) => ({ error: err })),
      api("GET", `/v1/memories/${path(memoryId)}/history`).catch((err) => ({ error: err })),
    ]);
    if (history.error) throw history.error;
    const crumbs = h("div", { class: "crumbs" }, h("a", { href: "#/" }, "Users"), " / ",
      memory.error ? "deleted memory" : [h("a", { href: userLink(memory.user_id) }, memory.user_id), " / memory"]);
    const events = h("ul", { class: "events", test: "history" }, history.events.map(eventItem));
    const historyCard = h("div", { class: "card" }, h("h3", {}, "History"), events,
      history.events.length ? null : h("div", { class: "empty" }, "No events."));
    if (memory.error) {
      show(crumbs, h("h1", {}, "A deleted memory"),
        h("p", { class: "muted" }, "Its words are gone; its history says what happened and when."), historyCard);
      return;
    }
    const superseded = Boolean(memory.superseded_at);
    const text = h("div", { class: "memory-text narrative", test: "memory-detail-text" }, memory.text);
    const editor = h("textarea", { test: "edit-text", "aria-label": "New text" });
    const problem = h("div", { class: "error", hidden: true, test: "edit-error" });
    const editForm = h("form", { hidden: true, test: "edit-form", onsubmit: async (event) => {
      event.preventDefault();
      const value = editor.value.trim();
      if (!value) return;
      try {
        await api("PATCH", `/v1/memories/${path(memory.id)}`, { body: { text: value } });
        toast("Saved: the memory was re-embedded and its history has an UPDATE event.");
        await guarded(() => memoryView(memory.id));
      } catch (err) {
        problem.hidden = false;
        problem.textContent = err.message;
      }
    } },
    editor, problem,
    h("div", { class: "row" },
      h("button", { type: "submit", class: "primary", test: "save-edit" }, "Save"),
      h("button", { type: "button", onclick: () => { editForm.hidden = true; text.hidden = false; } }, "Cancel")));
    const actions = h("div", { class: "row" },
      superseded ? h("span", { class: "muted small" }, "Superseded: what was true then stays as it was.")
        : h("button", { type: "button", test: "edit", onclick: () => {
          editor.value = memory.text;
          editForm.hidden = false;
          text.hidden = true;
          editor.focus();
        } }, "Edit text"),
      h("button", { type: "button", class: "danger", test: "delete", onclick: () => deleteDialog(memory) }, "Delete…"));
    const facts = [
      ["tier", tierLabel(memory.tier)],
      ["recorded", when(memory.created_at)],
      ["updated", when(memory.updated_at)],
      ["valid from", when(memory.valid_from)],
      ["valid to", memory.valid_to ? when(memory.valid_to) : "—"],
      ["superseded", superseded ? when(memory.superseded_at) : "no (current)"],
      ["learned by job", memory.source_job_id ? h("a", { href: "#/jobs/" + encodeURIComponent(memory.source_job_id) },
        short(memory.source_job_id)) : "— (stored as given)"],
      ["session", memory.session_id || "—"],
      ["embedding", memory.embedding_model || "—"],
    ];
    if (superseded && memory.superseded_by) {
      facts.push(["superseded by", h("a", { href: "#/memories/" + encodeURIComponent(memory.superseded_by) },
        short(memory.superseded_by))]);
    }
    show(crumbs,
      h("div", { class: "card" + (superseded ? " memory superseded" : ""), test: "memory-detail" },
        h("h3", {}, "Memory ", h("span", { class: "mono faint" }, memory.id)), text, editForm,
        h("table", { class: "small facts" }, h("tbody", {}, facts.map(([name, value]) =>
          h("tr", {}, h("th", {}, name), h("td", {}, value))))),
        Object.keys(memory.metadata || {}).length
          ? h("p", { class: "small muted mono" }, "metadata " + JSON.stringify(memory.metadata)) : null,
        actions),
      historyCard);
  }

  function eventItem(event) {
    let change;
    if (event.event === "UPDATE") {
      change = [h("div", { class: "old" }, event.old_text ?? "(words deleted)"), h("div", {}, event.new_text ?? "")];
    } else if (event.event === "SUPERSEDE") {
      change = h("div", { class: "old" }, event.old_text ?? "(words deleted)");
    } else if (event.event === "DELETE") {
      change = h("div", { class: "muted" }, "deleted: its words are gone from every event");
    } else {
      change = h("div", {}, event.new_text ?? "(words deleted)");
    }
    const cause = event.job_id
      ? ["by job ", h("a", { href: "#/jobs/" + encodeURIComponent(event.job_id) }, short(event.job_id))]
      : (event.event === "DELETE" || event.event === "UPDATE" ? "through the API" : "stored as given");
    return h("li", { test: "event", "data-event": event.event },
      h("div", {}, badge(event.event)),
      h("div", { class: "change" }, change, h("div", { class: "small muted" }, when(event.created_at), " · ", cause)));
  }

  function deleteDialog(memory) {
    const confirm = h("button", { type: "button", class: "danger solid", test: "delete-confirm" }, "Delete");
    confirm.addEventListener("click", async () => {
      try {
        await api("DELETE", `/v1/memories/${path(memory.id)}`);
        dialog.close();
        toast("Deleted: the memory and its words are gone; its history remains.");
        window.location.hash = userLink(memory.user_id);
      } catch (err) {
        toast(err.message);
      }
    });
    dialog.replaceChildren(
      h("h2", {}, "Delete this memory?"),
      h("p", { class: "narrative" }, memory.text),
      h("p", { class: "muted" }, `Of ${memory.user_id}. Its words go from its history and the narratives that quoted `
        + "it go too (the next one is written without it)."),
      h("div", { class: "buttons" }, h("button", { type: "button", onclick: () => dialog.close() }, "Cancel"), confirm));
    dialog.showModal();
  }

  // ----------------------------------------------------------------- jobs and pending

  function outcomeCells(job) {
    if (job.narrative) {
      const cell = outcomeCell("narrative", job.narrative);
      cell.setAttribute("colspan", TIERS.length);
      cell.prepend(h("span", { class: "small muted" }, "narrative job "));
      return [cell];
    }
    return TIERS.map((t) => outcomeCell(t, job.tiers[t] || { status: "queued" }));
  }

  function outcomeCell(tier, outcome) {
    const counts = [];
    if (outcome.added) counts.push(`+${outcome.added}`);
    if (outcome.updated) counts.push(`~${outcome.updated}`);
    if (outcome.superseded) counts.push(`×${outcome.superseded}`);
    let hint = null;
    if (outcome.status === "dead") {
      hint = h("div", { class: "why" }, "In the dead-letter queue: an operator redrives it with ",
        h("code", {}, `reverie dlq redrive --tier ${tier}`), " (the API has no redrive: the queues are shared).");
    } else if (outcome.status === "failed" && !(outcome.reason || "").startsWith("refused")) {
      hint = h("div", { class: "why" }, "Retried by its queue on its own.");
    }
    return h("td", { class: "outcome", test: `outcome-${tier}` }, badge(outcome.status),
      counts.length ? h("span", { class: "small" }, " " + counts.join(" ")) : null,
      outcome.reason ? h("div", { class: "why" }, outcome.reason) : null,
      outcome.error && outcome.error !== outcome.reason ? h("div", { class: "why" }, "error: " + outcome.error) : null,
      hint);
  }

  function pendingItem(turn) {
    return h("div", { class: "turn", test: "pending-turn" },
      h("div", {}, turn.text),
      h("div", { class: "small muted" }, `said ${when(turn.said_at)}`, turn.session_id ? ` in session ${turn.session_id}` : "",
        turn.job_id ? [" · job ", h("a", { href: "#/jobs/" + encodeURIComponent(turn.job_id) }, short(turn.job_id))] : ""));
  }

  function jobsTable(jobs) {
    return h("table", { test: "jobs" },
      h("thead", {}, h("tr", {}, h("th", {}, "job"), h("th", {}, "status"), h("th", {}, "made"),
        h("th", {}, "last change"), ...TIERS.map((t) => h("th", {}, tierLabel(t))))),
      h("tbody", {}, jobs.length ? jobs.map((job) => h("tr", { test: "job-row" },
        h("td", {}, h("a", { href: "#/jobs/" + encodeURIComponent(job.job_id), class: "mono" }, short(job.job_id))),
        h("td", {}, badge(job.status)),
        h("td", { class: "small" }, when(job.created_at)),
        h("td", { class: "small" }, when(job.updated_at)),
        ...outcomeCells(job)))
        : h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No jobs in the last 14 days."))));
  }

  async function jobsTab(userId, body) {
    const [jobs, context] = await Promise.all([
      api("GET", `/v1/users/${path(userId)}/jobs`, { query: { limit: 50 } }),
      api("GET", "/v1/context", { query: { user_id: userId, max_tokens: 4000 } }).catch(() => null),
    ]);
    const queued = jobs.jobs.filter((j) => j.status === "queued");
    const pendingTurns = (context && Array.isArray(context.pending)) ? context.pending : [];
    append(body, [
      h("div", { class: "card", test: "pending" },
        h("h3", {}, "Pending: said, not yet learned"),
        pendingTurns.length ? pendingTurns.map(pendingItem) : null,
        queued.length
          ? h("p", {}, `${queued.length} job(s) not learned by every tier yet. `,
            "Each tier's reason below says why (held in a reflection window until it closes, or on its queue).")
          : (pendingTurns.length ? null : h("div", { class: "empty" }, "Nothing pending: every job was learned."))),
      jobs.degraded && jobs.degraded.length
        ? h("p", { class: "note" }, `Unreachable: ${jobs.degraded.join(", ")} (jobs known only there are missing).`)
        : null,
      h("div", { class: "card" }, h("h3", {}, "Recent jobs and each tier's outcome"), jobsTable(jobs.jobs)),
    ]);
  }

  async function jobView(jobId) {
    const job = await api("GET", `/v1/jobs/${path(jobId)}`);
    show(h("div", { class: "crumbs" }, h("a", { href: "#/" }, "Users"), " / job"),
      h("h1", { class: "mono" }, jobId),
      h("div", { class: "card" }, jobsTable([job])));
  }

  // ----------------------------------------------------------------- search and recall

  function searchTab(userId, body) {
    const query = h("input", { type: "search", placeholder: "what to look for", required: true, test: "search-query" });
    const asOf = h("input", { type: "datetime-local", step: "any", test: "search-as-of" });
    const tiers = TIERS.map((t) => h("input", { type: "checkbox", checked: true, value: t, test: `search-tier-${t}` }));
    const results = h("div", {});
    const form = h("form", { class: "card", onsubmit: async (event) => {
      event.preventDefault();
      const chosen = tiers.filter((box) => box.checked).map((box) => box.value);
      // The field's local date and time are read as UTC, to the millisecond.
      const moment = asOf.value ? new Date(asOf.value + "Z") : null;
      const asOfIso = moment && !Number.isNaN(moment.getTime()) ? moment.toISOString() : undefined;
      try {
        const answer = await api("POST", "/v1/memories/search", { body: {
          user_id: userId, query: query.value, limit: 20, tiers: chosen.length ? chosen : undefined, as_of: asOfIso,
        } });
        results.replaceChildren(h("div", { class: "card" },
          h("h3", { test: "search-count" }, `${answer.results.length} found`, asOfIso ? ` as of ${asOfIso}` : ""),
          answer.results.length ? h("table", { test: "search-results" },
            h("thead", {}, h("tr", {}, h("th", {}, "score"), h("th", {}, "tier"), h("th", {}, "memory"),
              h("th", {}, "valid"), h("th", {}, "recorded"))),
            h("tbody", {}, answer.results.map((r) => h("tr", { test: "search-hit" },
              h("td", { class: "score" }, r.score.toFixed(3)), h("td", {}, tierLabel(r.tier)),
              h("td", {}, h("a", { href: "#/memories/" + encodeURIComponent(r.id) }, r.text)),
              h("td", { class: "small" }, `${when(r.valid_from)} → ${r.valid_to ? when(r.valid_to) : "now"}`),
              h("td", { class: "small" }, when(r.created_at))))))
            : h("div", { class: "empty" }, "Nothing matches.")),
          (answer.pending || []).length ? h("div", { class: "card" },
            h("h3", {}, "Said lately, not learned yet"), answer.pending.map(pendingItem)) : "");
      } catch (err) {
        results.replaceChildren(failure(err) || "");
      }
    } },
    h("div", { class: "row" }, query, h("button", { type: "submit", class: "primary", test: "search" }, "Search")),
    h("div", { class: "row" }, h("label", {}, "as of (UTC)", asOf),
      tiers.map((box) => h("label", {}, box, box.value)),
      h("span", { class: "small muted" }, "as of: the memories as they were then, superseded ones included")));
    append(body, [form, results]);
  }

  function recallTab(userId, body) {
    const message = h("textarea", { placeholder: "a message the user might send", test: "recall-message" });
    const session = h("input", { type: "text", placeholder: "session id (optional)" });
    const budget = h("input", { type: "number", min: 50, max: 32000, value: 1500, test: "recall-budget" });
    const results = h("div", {});
    const form = h("form", { class: "card", onsubmit: async (event) => {
      event.preventDefault();
      try {
        const block = await api("GET", "/v1/context", { query: {
          user_id: userId, query: message.value.trim() || undefined, session_id: session.value.trim() || undefined,
          max_tokens: budget.value,
        } });
        results.replaceChildren(contextView(block, Number(budget.value)));
      } catch (err) {
        results.replaceChildren(failure(err) || "");
      }
    } },
    h("p", { class: "muted" }, "The context block the chat would build for this message: narrative, rules, the " +
      "memories picked by it, pending turns and the session's recent turns, cut to the token budget."),
    message,
    h("div", { class: "row" }, session, h("label", {}, "token budget", budget),
      h("button", { type: "submit", class: "primary", test: "recall" }, "Show the context")));
    append(body, [form, results]);
  }

  function contextView(block, maxTokens) {
    const used = Math.min(100, Math.round((100 * block.tokens) / maxTokens));
    const bar = h("div", {});
    bar.style.width = `${used}%`;
    const list = (items) => items.map((m) => h("div", { class: "turn" },
      h("span", { class: "score" }, m.score ? m.score.toFixed(3) + " " : ""), tierLabel(m.tier), " ",
      h("a", { href: "#/memories/" + encodeURIComponent(m.id) }, m.text)));
    const pending = Array.isArray(block.pending) ? block.pending : [];
    return h("div", { test: "context" },
      h("div", { class: "card" }, h("h3", {}, "Token budget"),
        h("div", { class: "budget" }, bar),
        h("p", { test: "context-tokens" }, `${block.tokens} of ${maxTokens} tokens used`),
        block.degraded && block.degraded.length ? h("p", { class: "note" }, `Missing (unreachable): ${block.degraded.join(", ")}`)
          : null),
      h("div", { class: "grid" },
        h("div", { class: "card" }, h("h3", {}, "Narrative"),
          block.narrative ? h("p", { class: "narrative" }, block.narrative) : h("div", { class: "empty" }, "none")),
        h("div", { class: "card" }, h("h3", {}, `Rules (${block.rules.length})`),
          block.rules.length ? list(block.rules) : h("div", { class: "empty" }, "none"))),
      h("div", { class: "card" }, h("h3", {}, `Memories (${block.memories.length})`),
        block.memories.length ? list(block.memories) : h("div", { class: "empty" }, "none")),
      h("div", { class: "grid" },
        h("div", { class: "card" }, h("h3", {}, `Pending (${pending.length})`),
          pending.length ? pending.map(pendingItem) : h("div", { class: "empty" }, "none")),
        h("div", { class: "card" }, h("h3", {}, `Recent turns (${block.recent_turns.length})`),
          block.recent_turns.length ? block.recent_turns.map((t) => h("div", { class: "turn" },
            h("span", { class: "role" }, t.role), t.content)) : h("div", { class: "empty" }, "none (give a session id)"))));
  }

  // ----------------------------------------------------------------- the project's status

  async function statusView() {
    const status = await api("GET", "/v1/status");
    const part = (value, render) => (value && value.error
      ? h("div", { class: "error" }, `unavailable: ${value.error}`) : render(value));
    const perTier = (value, cells) => part(value, (v) => h("table", {},
      h("tbody", {}, TIERS.map((t) => h("tr", {}, h("th", {}, tierLabel(t)), ...cells(v[t], t))))));
    show(
      h("div", { class: "spread" },
        h("div", {}, h("h1", {}, "Project status"), h("p", { class: "muted" }, `project ${status.project_id}`)),
        h("span", { class: `badge ${status.status === "ok" ? "done" : "failed"}`, test: "status-overall" },
          status.status)),
      h("div", { class: "grid wide", test: "status" },
        h("div", { class: "card" }, h("h3", {}, "Outbox"),
          part(status.outbox, (o) => h("div", {},
            h("div", { class: "counts" }, h("div", {}, h("b", { test: "outbox-jobs" }, o.jobs), "jobs"),
              h("div", {}, h("b", {}, o.users), "users"), h("div", {}, h("b", {}, `${o.oldest_age_s} s`), "oldest")),
            h("p", { class: "small muted" }, "Said, not yet handed to the reflection queues.")))),
        h("div", { class: "card" }, h("h3", {}, "Held in reflection windows"),
          perTier(status.held, (v) => [h("td", { class: "num" }, `${v ? v.jobs : 0} jobs`),
            h("td", { class: "num small muted" }, v && v.jobs ? `oldest ${v.oldest_age_s} s` : "")])),
        h("div", { class: "card" }, h("h3", {}, "Failed and dead, last 24 h"),
          perTier(status.failed_24h, (v) => [h("td", { class: "num" }, `${v ? v.failed : 0} failed`),
            h("td", { class: "num" }, `${v ? v.dead : 0} in the DLQ`)])),
        h("div", { class: "card" }, h("h3", {}, "Last write per tier"),
          perTier(status.last_write, (v) => [h("td", {}, v ? badge(v.status) : h("span", { class: "faint" }, "never")),
            h("td", { class: "small" }, v ? ago(v.at) : "")]))),
      h("p", { class: "small muted" }, "The shared queues' depths hold every project's jobs, so they are for " +
        "operators: ", h("code", {}, "reverie status"), ". A dead job is redriven by an operator with ",
      h("code", {}, "reverie dlq redrive --tier NAME"), "."));
  }

  // ----------------------------------------------------------------- start

  document.getElementById("disconnect").addEventListener("click", () => {
    window.sessionStorage.removeItem(KEY_ITEM);
    project = null;
    window.location.hash = "#/";
    connectView();
  });
  window.addEventListener("hashchange", route);
  start();
}());
