// rendermesh dashboard: renders the node's snapshots (server-sent events, one a second).
// Everything from the mesh is set as text, never as markup.
"use strict";

(function () {
  if (document.body.classList.contains("login")) {
    if (new URLSearchParams(location.search).has("failed")) {
      document.getElementById("failed").hidden = false;
    }
    return;
  }

  let csrf = null;
  let canAct = false;
  let source = null;
  let events = 0;

  const $ = (id) => document.getElementById(id);

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function focus() {
    const q = new URLSearchParams(location.hash.slice(1));
    return { job: q.get("job") || "", peer: q.get("peer") || "" };
  }

  function bytes(n) {
    if (!n) return "0 B";
    const u = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }

  function secs(s) {
    if (s === null || s === undefined || !isFinite(s)) return "–";
    s = Math.round(s);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  function ago(ms, now) {
    if (!ms) return "–";
    return secs(Math.max(0, (now - ms) / 1000)) + " ago";
  }

  function when(ms) {
    if (!ms) return "–";
    return new Date(ms).toLocaleString();
  }

  function stateCell(state) {
    return el("td", state, "state s-" + state);
  }

  function progress(done, total, state) {
    const td = el("td", null, "progress");
    let pct = total > 0 ? Math.min(100, Math.floor((100 * done) / total)) : 0;
    if (state === "Done") pct = 100;
    const bar = el("div", null, "bar");
    const fill = el("span");
    fill.style.width = pct + "%";
    bar.append(fill, el("b", pct + "%"));
    td.append(bar);
    td.dataset.done = String(done);
    td.dataset.total = String(total);
    td.dataset.pct = String(pct);
    return td;
  }

  function say(text, bad) {
    const m = $("message");
    m.textContent = text;
    m.className = "message" + (bad ? " bad" : "");
    m.hidden = false;
  }

  // A button that asks once more before it acts: a second click within 4 s. The page is
  // drawn anew every second, so the armed button is remembered by what it would do.
  let armed = { key: null, until: 0 };

  function actionButton(label, action, key, run) {
    const b = el("button", label, "danger");
    b.dataset.action = action;
    b.disabled = !canAct;
    if (!canAct) b.title = "log in to act";
    const isArmed = () => armed.key === key && Date.now() < armed.until;
    if (isArmed()) {
      b.textContent = "Really " + label.toLowerCase() + "?";
      b.classList.add("armed");
    }
    b.addEventListener("click", () => {
      if (!isArmed()) {
        armed = { key: key, until: Date.now() + 4000 };
        b.textContent = "Really " + label.toLowerCase() + "?";
        b.classList.add("armed");
        return;
      }
      armed = { key: null, until: 0 };
      b.disabled = true;
      run();
    });
    return b;
  }

  async function post(url, body) {
    try {
      const r = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/json", "x-rendermesh-csrf": csrf || "" },
        body: JSON.stringify(body || {}),
      });
      const answer = await r.json().catch(() => ({}));
      if (r.ok) say(answer.ok || "done");
      else say(answer.error || ("refused: " + r.status), true);
      return answer;
    } catch (e) {
      say("the node did not answer: " + e, true);
      return {};
    }
  }

  function jobActions(job) {
    const box = [];
    const live = ["Planning", "Running", "Finishing"].includes(job.state);
    if (live) {
      const b = actionButton("Cancel", "cancel", "cancel " + job.id, () =>
        post("/v1/jobs/" + job.id + "/cancel", { peer: job.peer_id }));
      b.dataset.job = job.id;
      box.push(b);
    } else if (job.state === "Failed" || job.state === "Cancelled") {
      const b = el("button", "Run again");
      b.dataset.action = "rerun";
      b.dataset.job = job.id;
      b.disabled = !canAct;
      b.addEventListener("click", async () => {
        b.disabled = true;
        const a = await post("/v1/jobs/" + job.id + "/rerun", { peer: job.peer_id });
        if (a.ok) say("running again as job " + a.ok);
      });
      box.push(b);
    }
    return box;
  }

  function renderNodes(nodes, now) {
    const body = $("nodes").tBodies[0];
    const rows = nodes.map((n) => {
      const tr = el("tr");
      tr.dataset.peer = n.peer_id;
      tr.dataset.state = n.state;
      const name = el("td", n.name + (n.me ? " (this node)" : ""), "name");
      const speeds = Object.entries(n.speeds || {}).map(([k, v]) => k + " " + v.toFixed(0)).join(", ");
      tr.append(
        name,
        stateCell(n.state),
        el("td", n.state === "lost" ? "–" : n.running + " / " + n.slots + " slots", "num"),
        el("td", n.address, "wide"),
        el("td", n.arch, "wide"),
        el("td", n.cores, "num"),
        el("td", bytes(n.ram_bytes), "num wide"),
        el("td", (n.gpus || []).join(", ") || "–", "wide"),
        el("td", (n.encoders || []).join(", ") || "–", "wide"),
        el("td", speeds || "–", "wide"),
        el("td", n.me ? "now" : ago(n.last_seen_unix_ms, now), "wide"),
      );
      const act = el("td");
      if (n.state === "up") {
        act.append(actionButton("Drain", "drain", "drain " + n.peer_id, () =>
          post("/v1/nodes/" + encodeURIComponent(n.peer_id || n.name) + "/drain")));
      }
      tr.append(act);
      return tr;
    });
    body.replaceChildren(...rows);
  }

  function jobLink(job) {
    const a = el("a", job.id.slice(0, 8));
    a.href = "#job=" + encodeURIComponent(job.id) + "&peer=" + encodeURIComponent(job.peer_id);
    a.title = job.id;
    return a;
  }

  function renderJobs(jobs, now) {
    const body = $("jobs").tBodies[0];
    const rows = jobs.map((j) => {
      const tr = el("tr");
      tr.dataset.job = j.id;
      tr.dataset.state = j.state;
      const id = el("td");
      id.append(jobLink(j));
      const stage = j.stage_name && j.stage_name !== j.kind ? j.state + " · " + j.stage_name : j.state;
      const st = stateCell(j.state);
      st.textContent = stage;
      const prog = progress(j.frames_done, j.frames_total, j.state);
      if (j.files) prog.append(el("div", j.files_done + " / " + j.files + " files", "muted"));
      const act = el("td");
      act.append(...jobActions(j));
      const inputs = (j.inputs || []).join(", ");
      tr.append(
        id,
        el("td", j.kind),
        st,
        prog,
        el("td", j.rate_fps ? j.rate_fps.toFixed(1) + " fps" : "–", "num wide"),
        el("td", secs(j.eta_s), "num"),
        el("td", j.node, "wide"),
        el("td", when(j.started_unix_ms), "wide"),
        el("td", inputs.length > 120 ? inputs.slice(0, 117) + "…" : inputs, "wide"),
        el("td", j.error ? j.error : (j.outputs || []).join("; "), j.error ? "wide error" : "wide"),
        act,
      );
      return tr;
    });
    if (!rows.length) {
      const tr = el("tr");
      const td = el("td", "No jobs yet: rendermesh submit … on any node.", "muted");
      td.colSpan = 11;
      tr.append(td);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  function renderCache(c, now) {
    const facts = [
      ["entries", Object.entries(c.entries_by_kind || {}).map(([k, v]) => k + " " + v).join(", ") || "none"],
      ["entry bytes", bytes(c.entry_bytes)],
      ["blobs", c.blobs + " (" + bytes(c.blob_bytes) + ", " + bytes(c.pinned_bytes) + " in use)"],
      ["quota", c.blob_quota_bytes ? bytes(c.blob_bytes) + " of " + bytes(c.blob_quota_bytes) : "unbounded"],
      ["replicas", c.replicas ? c.replicas + " copies of each entry" : "every node holds every entry"],
      ["last sync", ago(c.last_sync_unix_ms, now)],
    ];
    fillFacts($("cache"), facts);
  }

  function fillFacts(dl, facts) {
    const parts = [];
    for (const [k, v] of facts) parts.push(el("dt", k), el("dd", v));
    dl.replaceChildren(...parts);
  }

  function renderJob(j, now) {
    if (!j) {
      $("job-title").textContent = "Job " + focus().job + " (not found on any live node)";
      fillFacts($("job-facts"), []);
      $("shards").tBodies[0].replaceChildren();
      $("items").tBodies[0].replaceChildren();
      $("job-actions").replaceChildren();
      return;
    }
    $("job-title").textContent = j.kind + " job " + j.id;
    const facts = [
      ["state", j.state + (j.stage_name && j.stage_name !== j.kind ? " · " + j.stage_name : "")],
      ["progress", j.frames_total ? j.frames_done + " / " + j.frames_total + " frames" : "–"],
      ["rate", j.rate_fps ? j.rate_fps.toFixed(1) + " fps" : "–"],
      ["ETA", secs(j.eta_s)],
      ["coordinated by", j.node],
      ["submitted", when(j.started_unix_ms)],
      ["elapsed", secs(j.elapsed_ms / 1000)],
      ["inputs", (j.inputs || []).join(", ") || "–"],
      ["outputs", (j.outputs || []).join("; ") || "–"],
    ];
    if (j.error) facts.push(["error", j.error]);
    for (const n of j.notes || []) facts.push(["note", n]);
    fillFacts($("job-facts"), facts);
    $("job-facts").dataset.state = j.state;
    $("job-actions").replaceChildren(...jobActions(j));
    const shards = (j.shards || []).map((s) => {
      const tr = el("tr");
      tr.dataset.index = String(s.index);
      tr.dataset.state = s.state;
      tr.append(
        el("td", s.index, "num"),
        el("td", s.stage, "num"),
        stateCell(s.state),
        el("td", s.peer || "–", "peer"),
        el("td", s.frames_done + " / " + s.frames, "num"),
        el("td", s.millis ? (s.millis / 1000).toFixed(1) + " s" : "–", "num"),
        el("td", s.retries, "num wide"),
        el("td", s.copies, "num wide"),
        el("td", s.note || ""),
      );
      return tr;
    });
    $("shards").tBodies[0].replaceChildren(...shards);
    const items = (j.items || []).map((i) => {
      const tr = el("tr");
      tr.append(
        el("td", i.name),
        stateCell(i.state),
        el("td", i.shards_done + " / " + i.shards, "num"),
        el("td", i.frames, "num wide"),
        el("td", bytes(i.bytes), "num wide"),
        el("td", i.note || ""),
      );
      return tr;
    });
    $("items").tBodies[0].replaceChildren(...items);
    $("items").closest(".scroll").previousElementSibling.hidden = !items.length;
    $("items").closest(".scroll").hidden = !items.length;
  }

  function render(snap) {
    canAct = !!snap.can_act;
    const now = snap.now_unix_ms;
    $("node").textContent = "served by " + snap.node + " · " + snap.version;
    const f = focus();
    $("job-view").hidden = !f.job;
    $("mesh-view").hidden = !!f.job;
    if (f.job) renderJob(snap.job, now);
    else {
      renderNodes(snap.nodes || [], now);
      renderJobs(snap.jobs || [], now);
      renderCache(snap.cache || {}, now);
    }
  }

  function connect() {
    if (source) source.close();
    const f = focus();
    const q = f.job ? "?job=" + encodeURIComponent(f.job) + "&peer=" + encodeURIComponent(f.peer) : "";
    source = new EventSource("/v1/events" + q);
    const live = $("live");
    source.onmessage = (e) => {
      let snap;
      try { snap = JSON.parse(e.data); } catch (_) { return; }
      events += 1;
      live.dataset.events = String(events);
      live.textContent = "live";
      live.classList.add("on");
      render(snap);
    };
    source.onerror = () => {
      live.textContent = "reconnecting…";
      live.classList.remove("on");
    };
  }

  async function start() {
    try {
      const r = await fetch("/v1/session", { credentials: "same-origin" });
      if (r.ok) csrf = (await r.json()).csrf;
    } catch (_) { /* the stream says whether the node answers */ }
    window.addEventListener("hashchange", connect);
    connect();
  }

  start();
})();
