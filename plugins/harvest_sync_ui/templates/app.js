// The Harvest sync page's behaviour. Airflow shows the page in a sandboxed iframe without allow-modals, so
// there are no browser dialogs: every confirmation is in the page. Relative URLs only (the page may live under a
// sub-path); every write is JSON from this origin (the server refuses anything else).
(function () {
  "use strict";
  const BASE = document.body.dataset.base || "./";
  const $ = (selector, root) => (root || document).querySelector(selector);

  // -- times: the user's Airflow timezone (localStorage "timezone", as Airflow's UI keeps it), one format ----
  function timezone() {
    let tz = null;
    try {
      tz = localStorage.getItem("timezone");
      if (tz && tz.startsWith('"')) tz = JSON.parse(tz);
      if (tz) new Intl.DateTimeFormat("en-US", { timeZone: tz }); // throws for an unknown zone
    } catch (e) {
      tz = null;
    }
    return tz || Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  }
  function formatTime(iso) {
    const date = new Date(iso);
    if (isNaN(date)) return iso;
    const tz = timezone();
    const parts = {};
    new Intl.DateTimeFormat("en-CA", {
      timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
    }).formatToParts(date).forEach((p) => { parts[p.type] = p.value; });
    return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
  }
  function showTimes(root) {
    (root || document).querySelectorAll("time[datetime]").forEach((el) => {
      el.textContent = formatTime(el.getAttribute("datetime"));
      el.title = timezone();
    });
  }
  showTimes();
  window.addEventListener("storage", (e) => { if (e.key === "timezone") showTimes(); });

  // -- the JSON API -------------------------------------------------------------------------------------------
  async function api(method, path, body) {
    const answer = await fetch(BASE + path, {
      method,
      credentials: "same-origin",
      headers: body === undefined ? { Accept: "application/json" }
        : { "Content-Type": "application/json", Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = {};
    try { data = await answer.json(); } catch (e) { data = { detail: answer.statusText }; }
    return { ok: answer.ok, status: answer.status, body: data };
  }
  class Refused extends Error {
    constructor(answer) { super(answer.body.detail || `HTTP ${answer.status}`); this.answer = answer; }
  }

  // -- in-page confirmation (window.confirm is ignored inside Airflow's iframe) -----------------------------
  function confirmInPage(title, text, okLabel, typedName) {
    const dialog = $("#confirm");
    $("#confirm-title").textContent = title;
    $("#confirm-text").textContent = text;
    $("#confirm-ok").textContent = okLabel || "Confirm";
    $("#confirm-ok").className = typedName ? "danger" : "primary"; // typing the name: something goes for good
    const typedWrap = $("#confirm-typed-wrap");
    const typed = $("#confirm-typed");
    typedWrap.hidden = !typedName;
    typed.value = "";
    typed.removeAttribute("aria-invalid");
    typed.oninput = () => typed.removeAttribute("aria-invalid");
    dialog.hidden = false;
    (typedName ? typed : $("#confirm-ok")).focus();
    return new Promise((resolve) => {
      function close(result) {
        dialog.hidden = true;
        $("#confirm-ok").onclick = $("#confirm-cancel").onclick = null;
        document.removeEventListener("keydown", onKey);
        resolve(result);
      }
      function onKey(e) { if (e.key === "Escape") close(null); }
      document.addEventListener("keydown", onKey);
      $("#confirm-ok").onclick = () => {
        if (typedName && typed.value.trim() !== typedName.trim()) {
          typed.setAttribute("aria-invalid", "true");
          typed.focus();
          return;
        }
        close(typedName ? typed.value : true);
      };
      $("#confirm-cancel").onclick = () => close(null);
    });
  }

  // -- a run: make sure the DAG is there and that unpausing it starts no other run, then trigger it ---------
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function waitForDag(projectId, say, until, what) {
    const started = Date.now();
    for (;;) {
      const answer = await api("GET", `api/projects/${projectId}/dag`);
      if (!answer.ok) throw new Refused(answer);
      if (until(answer.body)) return answer.body;
      const seconds = Math.round((Date.now() - started) / 1000);
      if (seconds > 300) throw new Error(`Airflow's DAG processor did not ${what} within 5 minutes: see its log.`);
      say(`Waiting for Airflow to ${what}… ${seconds} s`, true);
      await sleep(1000);
    }
  }

  async function parseAndWait(projectId, say) {
    say("Asking Airflow to parse the DAG file now…");
    const parsed = await api("POST", `api/projects/${projectId}/dag/parse`, {});
    if (!parsed.ok) throw new Refused(parsed);
    const dag = await waitForDag(projectId, say, (d) => d.ready, "parse the DAG file");
    say(dag.exists ? `DAG ${dag.dag.dag_id} is in Airflow.` : "The DAG is gone from Airflow.");
    return dag;
  }

  async function startRun(projectId, conf, say) {
    for (let attempt = 0; attempt < 4; attempt++) {
      say(conf.since ? `Starting a reset and sync from ${conf.since}…` : conf.clear_data ? "Starting Clear data…" : "Starting a sync…");
      const answer = await api("POST", `api/projects/${projectId}/runs`, conf);
      if (answer.ok) {
        say(`Run ${answer.body.dag_run_id} ${answer.body.state}${answer.body.unpaused ? " (the DAG was unpaused for it)" : ""}.`);
        return answer.body;
      }
      if (answer.status === 409 && answer.body.code === "no_dag") {
        await parseAndWait(projectId, say);
      } else if (answer.status === 409 && answer.body.code === "run_due") {
        say("The DAG is paused and a missed daily run is due: re-arming the daily schedule from now, so that only this run starts…");
        const rearm = await api("POST", `api/projects/${projectId}/schedule/rearm`, {});
        if (!rearm.ok) throw new Refused(rearm);
        await waitForDag(projectId, say, (d) => d.ready && d.dag && !d.dag.run_due, "re-arm the daily schedule");
      } else {
        throw new Refused(answer);
      }
    }
    throw new Error("Could not start the run: try again.");
  }

  function stepLogger(list, panel) {
    let last = null;
    return function say(text, replace) {
      if (panel) panel.hidden = false;
      if (!list) return;
      if (replace && last && last.dataset.replaceable) {
        last.textContent = text;
        return;
      }
      if (last) last.dataset.state = "done";
      last = document.createElement("li");
      last.textContent = text;
      if (replace) last.dataset.replaceable = "1";
      list.appendChild(last);
    };
  }

  function projectPage(projectId, runId) {
    return `${BASE}projects/${projectId}${runId ? "?run=" + encodeURIComponent(runId) : ""}#run`;
  }

  // -- the list: "Sync now" opens the project page, which follows the run ------------------------------------
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action=sync]");
    if (!button) return;
    const projectId = button.dataset.project;
    const status = document.getElementById("status-" + projectId);
    const onProjectPage = !!$("#page-data");
    const say = onProjectPage ? stepLogger($("#flow-steps"), $("#flow")) : (text) => { if (status) status.textContent = text; };
    const page = onProjectPage ? JSON.parse($("#page-data").textContent) : null;
    const paused = page ? !!(page.dag && page.dag.is_paused) : button.dataset.paused === "true";
    const daily = page ? page.settings.daily_schedule : button.dataset.daily === "true";
    const name = page ? page.name : button.dataset.name;
    if (paused) {
      const ok = await confirmInPage(
        "Sync now",
        `The DAG of ${name} is paused in Airflow. Sync now unpauses it for this one run` +
          (daily ? "; as Daily sync is on, it then also syncs every night at 00:00 UTC (switch Daily sync off in the project's Integration settings to sync only on demand)."
            : "; Daily sync is off, so nothing else runs."),
        "Sync now");
      if (!ok) return;
    }
    button.disabled = true;
    try {
      const run = await startRun(projectId, {}, say);
      window.location.href = projectPage(projectId, run.dag_run_id);
    } catch (e) {
      say(e.message);
      if (status) status.className = "status small bad";
      button.disabled = false;
    }
  });

  // -- the project page ---------------------------------------------------------------------------------------
  const dataEl = $("#page-data");
  if (!dataEl) return;
  const page = JSON.parse(dataEl.textContent);
  const projectId = page.project_id;

  // Follow a run that goes: the run panel is re-rendered by the server every 2 s; at the end the page reloads.
  async function follow(runId) {
    for (;;) {
      await sleep(2000);
      const answer = await fetch(`${BASE}projects/${projectId}/run-panel?run=${encodeURIComponent(runId)}`,
        { credentials: "same-origin" });
      if (!answer.ok) continue;
      const slot = $("#run-slot");
      slot.innerHTML = await answer.text();
      showTimes(slot);
      const state = ($("#run", slot) || {}).dataset?.state;
      if (state === "success" || state === "failed") {
        // Reload the whole page: the tables below (missing teammates, hours, runs) change with the run.
        const target = new URL(projectPage(projectId, runId), window.location.href);
        if (target.pathname + target.search === window.location.pathname + window.location.search) {
          window.location.reload();
        } else {
          window.location.replace(target.href);
        }
        return;
      }
    }
  }
  if (page.run && (page.run.state === "queued" || page.run.state === "running")) follow(page.run.id);

  // "Select projects": a multi-select with type-ahead over Harvest's projects.
  const picked = new Map(page.harvest_projects.map((h) => [h.id, h.label]));
  let options = [];
  const search = $("#harvest-search");
  const listbox = $("#harvest-options");
  const listStatus = $("#harvest-list-status");
  const editable = !!search;

  function renderChips() {
    const ul = $("#picked");
    ul.innerHTML = "";
    for (const [id, label] of picked) {
      const li = document.createElement("li");
      li.className = "chip";
      li.dataset.id = id;
      li.append(label);
      if (editable) {
        const remove = document.createElement("button");
        remove.type = "button";
        remove.textContent = "×";
        remove.setAttribute("aria-label", "Remove " + label);
        remove.onclick = () => { picked.delete(id); renderChips(); renderOptions(); };
        li.append(remove);
      }
      ul.append(li);
    }
  }
  function renderOptions() {
    if (!editable) return;
    const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    listbox.innerHTML = "";
    if (!words.length || document.activeElement !== search) {
      listbox.hidden = true;
      search.setAttribute("aria-expanded", "false");
      return;
    }
    const matches = options.filter((o) => !picked.has(o.id) && words.every((w) => o.label.toLowerCase().includes(w) || String(o.id) === w));
    for (const o of matches.slice(0, 50)) {
      const li = document.createElement("li");
      li.setAttribute("role", "option");
      li.dataset.id = o.id;
      const elsewhere = o.linked_to && o.linked_to.project_id !== projectId;
      li.textContent = o.label + (o.is_active ? "" : " · archived") + (elsewhere ? ` · linked to ${o.linked_to.name} (#${o.linked_to.project_id})` : "");
      if (elsewhere) {
        li.setAttribute("aria-disabled", "true");
        li.title = `Already feeds the Primetric project ${o.linked_to.name}: one Primetric project per Harvest project.`;
      } else {
        li.onmousedown = (e) => e.preventDefault(); // keep the focus in the search field
        li.onclick = () => { picked.set(o.id, o.label); search.value = ""; renderChips(); renderOptions(); search.focus(); };
      }
      listbox.append(li);
    }
    if (!matches.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = options.length ? "No Harvest project matches." : "Harvest's project list is not available.";
      listbox.append(li);
    }
    listbox.hidden = false;
    search.setAttribute("aria-expanded", "true");
  }
  async function loadOptions(refresh) {
    if (!editable) return;
    listStatus.textContent = refresh ? "Fetching Harvest's projects…" : "Loading Harvest's projects…";
    const answer = await api("GET", `api/projects/${projectId}/harvest-projects${refresh ? "?refresh=true" : ""}`);
    if (!answer.ok) {
      listStatus.textContent = answer.body.detail;
      listStatus.className = "bad small";
      return;
    }
    options = answer.body.projects;
    for (const o of options) if (picked.has(o.id)) picked.set(o.id, o.label);
    renderChips();
    const when = answer.body.fetched_at ? ` (list from ${formatTime(answer.body.fetched_at)})` : "";
    if (answer.body.error) {
      listStatus.textContent = `Harvest could not be reached: ${answer.body.error}. The current links are kept` +
        (options.length ? `; the list shown is the last one fetched${when}.` : ".");
      listStatus.className = "warn small";
    } else {
      listStatus.textContent = `${options.length} Harvest projects, active and archived${when}.`;
      listStatus.className = "muted small";
    }
    renderOptions();
  }
  renderChips();
  if (editable) {
    search.addEventListener("input", renderOptions);
    search.addEventListener("focus", renderOptions);
    search.addEventListener("blur", () => setTimeout(renderOptions, 150));
    search.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        const first = listbox.querySelector("[role=option]:not([aria-disabled=true])");
        if (first) first.click();
      }
    });
    $("#harvest-refresh").onclick = () => loadOptions(true);
    loadOptions(false);
  }

  // Save / Save, reset and sync all work logs / Clear data.
  function form() {
    return {
      version: page.version,
      enabled: $("#enabled").checked,
      harvest_project_ids: [...picked.keys()],
      prevent_new_assignment_creation: $("#prevent_new_assignment_creation").checked,
      trim_assignments_to_worklogs: $("#trim_assignments_to_worklogs").checked,
      sync_since: $("#sync_since").value || null,
      daily_schedule: $("#daily_schedule").checked,
    };
  }
  function clearErrors() {
    document.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
    document.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  }
  function showError(message, field) {
    const where = field && document.getElementById("field-" + field);
    const slot = (where && where.querySelector(".field-error")) || $("#form-error");
    slot.textContent = message;
    const input = field && (document.getElementById(field) || (field === "harvest_project_ids" ? search : null));
    if (input) input.setAttribute("aria-invalid", "true");
  }
  function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }

  async function save(withReset) {
    clearErrors();
    const wanted = form();
    const since = wanted.sync_since || page.start_date;
    if (withReset) {
      if (!wanted.enabled) { showError("Switch “Sync work logs from Harvest” on to reset and sync.", "enabled"); return; }
      const n = page.synced.worklogs;
      const from = since ? ` from ${since} on` : "";
      const text = n
        ? `This replaces the ${plural(n, "synced work log")} of ${page.name} (${page.synced.first_work_date} to ${page.synced.last_work_date}) with Harvest's entries${from}. Work logs typed in Primetric are not touched.`
        : `${page.name} has no synced work logs yet: this syncs Harvest's entries${from}.`;
      if (!(await confirmInPage("Save, reset and sync all work logs", text, "Reset and sync"))) return;
    }
    const buttons = document.querySelectorAll("#settings button");
    buttons.forEach((b) => { b.disabled = true; });
    const say = stepLogger($("#flow-steps"), $("#flow"));
    const clicked = Date.now();
    try {
      say("Saving the settings…");
      const saved = await api("PUT", `api/projects/${projectId}/settings`, wanted);
      if (!saved.ok) {
        showError(saved.body.detail, saved.body.field);
        throw new Refused(saved);
      }
      page.version = saved.body.version;
      say(saved.body.changed ? "Saved (recorded in the history below)." : "Nothing changed.");
      if (saved.body.enabled) {
        await parseAndWait(projectId, say);
      } else if (saved.body.changed) {
        await api("POST", `api/projects/${projectId}/dag/parse`, {}); // the DAG goes at the next parse
      }
      if (saved.body.enabled && (withReset || saved.body.newly_enabled)) {
        const run = await startRun(projectId, withReset && since ? { since } : {}, say);
        const seconds = ((Date.now() - clicked) / 1000).toFixed(1);
        say(`Run queued ${seconds} s after the button.`);
        $("#flow").dataset.queuedAfter = seconds;
        window.location.href = projectPage(projectId, run.dag_run_id);
        return;
      }
      window.location.reload();
    } catch (e) {
      say(e.message);
      if (!(e instanceof Refused && e.answer.body.field)) showError(e.message, null);
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  async function clearData() {
    clearErrors();
    const n = page.synced.worklogs;
    const typed = await confirmInPage(
      "Clear data",
      `This deletes the ${plural(n, "synced work log")} of ${page.name}, the assignments the sync created that hold none, ` +
        `and the entries kept aside. Work logs typed in Primetric are not touched. Type the project's name (${page.name}) to confirm.`,
      "Clear data", page.name);
    if (typed === null) return;
    const say = stepLogger($("#flow-steps"), $("#flow"));
    try {
      const run = await startRun(projectId, { clear_data: true, confirm_project_name: typed }, say);
      window.location.href = projectPage(projectId, run.dag_run_id);
    } catch (e) {
      say(e.message);
      showError(e.message, e.answer && e.answer.body.field === "confirm_project_name" ? null : null);
    }
  }

  if ($("#save")) $("#save").onclick = () => save(false);
  if ($("#save-reset")) $("#save-reset").onclick = () => save(true);
  if ($("#clear")) $("#clear").onclick = clearData;
})();
