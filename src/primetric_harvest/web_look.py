"""The look both plugin pages share with Airflow 3's own UI: its font, its gray and brand colours in light and
dark mode, and its colour mode followed live.

Airflow's UI keeps the user's colour mode in ``localStorage["theme"]`` (light, dark or system) and their
timezone in ``localStorage["timezone"]``; the plugin pages are served from the same origin (Airflow shows them
in a same-origin iframe), so they read the same storage. ``HEAD`` goes in each page's ``<head>``.
"""

from __future__ import annotations

THEME_SCRIPT = """<script>
  // Airflow's UI keeps its colour mode in localStorage "theme" (light, dark or system): this page is on the same
  // origin, so it follows it, also when it changes while the page is open.
  (function () {
    function apply() {
      var mode = null;
      try { mode = localStorage.getItem("theme"); } catch (e) { /* storage blocked: follow the system */ }
      if (mode !== "light" && mode !== "dark") {
        mode = window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
      }
      document.documentElement.dataset.theme = mode;
    }
    apply();
    window.addEventListener("storage", function (e) { if (e.key === "theme") apply(); });
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", apply);
  })();
</script>"""

CSS = """<style>
  /* Airflow 3's look: its font, its gray and brand palettes (light and dark). */
  :root {
    --font: Inter, -apple-system, BlinkMacSystemFont, "Segoe UI", Helvetica, Arial, sans-serif;
    --bg: #ffffff; --bg-subtle: oklch(0.985 0.004 253); --bg-muted: oklch(0.955 0.006 253);
    --fg: oklch(0.18 0.03 251); --fg-muted: oklch(0.45 0.055 251); --line: oklch(0.915 0.01 253);
    --brand: oklch(0.469 0.084 257.657); --brand-fg: #ffffff; --focus: oklch(0.705 0.066 256.378);
    --ok: oklch(0.527 0.154 150.069); --bad: oklch(0.505 0.213 27.518); --warn: oklch(0.555 0.163 48.998);
    --run: oklch(0.52 0.105 223.128); --overlay: rgb(0 0 0 / 0.45);
    color-scheme: light;
  }
  [data-theme="dark"] {
    --bg: oklch(0.11 0.025 251); --bg-subtle: oklch(0.18 0.03 251); --bg-muted: oklch(0.28 0.035 251);
    --fg: oklch(0.955 0.006 253); --fg-muted: oklch(0.75 0.025 252); --line: oklch(0.35 0.045 251);
    --brand: oklch(0.705 0.066 256.378); --brand-fg: oklch(0.18 0.03 251); --focus: oklch(0.865 0.039 252.42);
    --ok: oklch(0.792 0.209 151.711); --bad: oklch(0.704 0.191 22.216); --warn: oklch(0.828 0.189 84.429);
    --run: oklch(0.789 0.154 211.53); --overlay: rgb(0 0 0 / 0.65);
    color-scheme: dark;
  }
  * { box-sizing: border-box; }
  html, body { background: var(--bg); color: var(--fg); }
  body { font: 14px/1.5 var(--font); margin: 0; padding: 1rem 1.25rem 2rem; min-width: 0; }
  a { color: var(--brand); } a:hover { text-decoration: underline; }
  h1 { font-size: 1.25rem; font-weight: 600; margin: 0 0 .15rem; }
  h2 { font-size: 1rem; font-weight: 600; margin: 1.5rem 0 .5rem; }
  .muted { color: var(--fg-muted); } .small { font-size: .85rem; }
  .ok { color: var(--ok); } .warn { color: var(--warn); } .bad { color: var(--bad); } .run { color: var(--run); }
  header.page { display: flex; flex-wrap: wrap; justify-content: space-between; align-items: baseline;
      gap: .25rem 1rem; margin-bottom: .75rem; }
  table { border-collapse: collapse; width: 100%; margin: .25rem 0 1rem; }
  th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top;
      overflow-wrap: break-word; }
  .anywhere { overflow-wrap: anywhere; }
  th { font-weight: 600; font-size: .8rem; color: var(--fg-muted); background: var(--bg-subtle); }
  td.num, th.num { text-align: right; white-space: nowrap; }
  .badge { display: inline-block; padding: 0 .45rem; border-radius: .6rem; font-size: .75rem;
      border: 1px solid var(--line); white-space: nowrap; }
  .badge.ok { border-color: var(--ok); }
  .badge.bad { border-color: var(--bad); }
  .badge.warn { border-color: var(--warn); }
  .badge.run { border-color: var(--run); }
  button, .button { font: inherit; font-size: .875rem; padding: .3rem .75rem; border-radius: .375rem;
      border: 1px solid var(--line); background: var(--bg); color: var(--fg); cursor: pointer;
      text-decoration: none; display: inline-block; line-height: 1.4; }
  button:hover:not(:disabled), .button:hover { background: var(--bg-muted); text-decoration: none; }
  button.primary { background: var(--brand); border-color: var(--brand); color: var(--brand-fg); }
  button.primary:hover:not(:disabled) { filter: brightness(1.1); background: var(--brand); }
  button.danger { color: var(--bad); border-color: var(--bad); }
  button:disabled { opacity: .5; cursor: not-allowed; }
  :focus-visible { outline: 2px solid var(--focus); outline-offset: 1px; }
  input, select { font: inherit; color: var(--fg); background: var(--bg); border: 1px solid var(--line);
      border-radius: .375rem; padding: .3rem .5rem; }
  .actions { display: flex; flex-wrap: wrap; gap: .35rem; }
  .card { border: 1px solid var(--line); border-radius: .5rem; padding: .75rem 1rem; margin: .75rem 0;
      background: var(--bg); }
  .card > :first-child { margin-top: 0; } .card > :last-child { margin-bottom: 0; }
  .note { border-left: 3px solid var(--line); padding: .15rem .6rem; margin: .4rem 0; overflow-wrap: anywhere; }
  .note.bad { border-color: var(--bad); } .note.warn { border-color: var(--warn); }
  .status { min-height: 1.2em; overflow-wrap: anywhere; }
  .dialog { position: fixed; inset: 0; background: var(--overlay); display: flex; align-items: center;
      justify-content: center; z-index: 10; padding: 1rem; }
  .dialog[hidden] { display: none; }
  .dialog > div { background: var(--bg); color: var(--fg); border: 1px solid var(--line); border-radius: .5rem;
      max-width: 34rem; width: 100%; padding: 1rem 1.25rem; box-shadow: 0 10px 30px rgb(0 0 0 / .3); }
  .dialog h2 { margin-top: 0; }
</style>"""

HEAD = THEME_SCRIPT + "\n" + CSS
