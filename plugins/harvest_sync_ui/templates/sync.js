// "Sync now" / "Reset from date…": POST to this app, which triggers the DAG with the user's own Airflow token,
// then follow the run until it finishes. Relative URLs only (the page may live under a sub-path).
(function () {
  "use strict";
  const BASE = document.body.dataset.base || "./";

  function show(projectId, text, cls) {
    const el = document.getElementById("status-" + projectId);
    if (!el) return;
    el.textContent = text;
    el.className = "status " + (cls || "");
    el.dataset.state = cls || "";
  }

  async function follow(projectId, runId) {
    for (;;) {
      await new Promise((r) => setTimeout(r, 2000));
      const answer = await fetch(BASE + "api/projects/" + projectId + "/runs/" + encodeURIComponent(runId),
        { credentials: "same-origin", headers: { Accept: "application/json" } });
      const run = await answer.json();
      if (!answer.ok) { show(projectId, run.detail || answer.statusText, "bad"); return; }
      if (run.state === "success") {
        show(projectId, "Run " + runId + " finished: success. Reloading…", "ok");
        setTimeout(() => window.location.reload(), 1000);
        return;
      }
      if (run.state === "failed") { show(projectId, "Run " + runId + " failed: see its log in Airflow.", "bad"); return; }
      show(projectId, "Run " + runId + ": " + run.state + "…", "warn");
    }
  }

  async function trigger(projectId, since) {
    show(projectId, since ? "Resetting from " + since + "…" : "Starting a sync…", "warn");
    const answer = await fetch(BASE + "api/projects/" + projectId + "/runs", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ since: since || null, unpause: true }),
    });
    const body = await answer.json();
    if (!answer.ok) { show(projectId, body.detail || answer.statusText, "bad"); return; }
    show(projectId, "Run " + body.dag_run_id + " " + body.state + (body.unpaused ? " (DAG unpaused)" : "") + "…", "warn");
    follow(projectId, body.dag_run_id);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const projectId = button.dataset.project;
    if (button.dataset.action === "sync") {
      trigger(projectId, null);
    } else if (button.dataset.action === "reset-open") {
      document.getElementById("reset-" + projectId).hidden = false;
    } else if (button.dataset.action === "reset") {
      const since = document.getElementById("since-" + projectId).value;
      if (!since) { show(projectId, "Choose the date to reset from (YYYY-MM-DD).", "bad"); return; }
      if (window.confirm("Replace this project's synced work logs with Harvest's entries from " + since + " on?")) {
        trigger(projectId, since);
      }
    }
  });
})();
