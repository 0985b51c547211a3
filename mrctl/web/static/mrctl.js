// mrctl's page: a running job's live view from server-sent events, and the action buttons.
// No build step, no framework: the DOM ids are those of mrctl/web/pages.py.
"use strict";

const jobId = document.body.dataset.job;
const $ = (id) => document.getElementById(id);

function setText(id, value) {
  const el = $(id);
  if (el) el.textContent = value;
}

function progress(prefix, p) {
  setText(prefix + "-done", p.done);
  setText(prefix + "-total", p.total);
  const bar = $(prefix + "-bar");
  bar.max = Math.max(p.total, 1);
  bar.value = p.done;
  setText(prefix + "-running", p.running ? `(${p.running} running)` : "");
}

function row(cells, className) {
  const tr = document.createElement("tr");
  if (className) tr.className = className;
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }
  return tr;
}

function render(s) {
  setText("job-name", s.name);
  setText("status", s.status === "running" ? "running" : s.status);
  setText("phase", s.phase);
  setText("elapsed", s.elapsed.toFixed(1));
  setText("step", s.steps > 1 ? `step ${s.step}/${s.steps} ${s.step_name}` : "");
  progress("map", s.map);
  progress("reduce", s.reduce);
  setText("faults", `${s.retries} retries · ${s.lost} lost · ${s.refused} refused · ` +
    `${s.killed} killed · ${s.backups} backups · ${s.records_in} records in`);
  const body = $("workers").tBodies[0];
  body.replaceChildren(...s.workers.map((w) => row([
    w.name, w.state, w.task ? `${w.task} (attempt ${w.attempt})` : "-", w.tasks_done,
    w.heartbeat_age === null ? "never" : `${w.heartbeat_age.toFixed(1)}s ago`,
  ], w.state)));
  const events = $("events");
  events.replaceChildren(...s.events.slice().reverse().map((e) => {
    const li = document.createElement("li");
    li.className = e.kind;
    li.textContent = `${e.at.toFixed(2)}s ${e.message}`;
    return li;
  }));
}

// A running job's buttons act through its Redis: usable from its first snapshot while it runs,
// one request at a time (a button stays disabled until its answer: no second kill by accident).
function liveButtons(usable) {
  document.body.dataset.live = usable ? "yes" : "";
  for (const button of document.querySelectorAll("button.live")) {
    button.disabled = !usable || Boolean(button.dataset.busy);
  }
}

function watch() {
  const feed = new EventSource(`/jobs/${encodeURIComponent(jobId)}/events`);
  feed.addEventListener("snapshot", (e) => {
    const snap = JSON.parse(e.data);
    render(snap);
    liveButtons(snap.status === "running");
  });
  feed.addEventListener("waiting", (e) => setText("status", JSON.parse(e.data).message));
  feed.addEventListener("ended", (e) => {
    const end = JSON.parse(e.data);
    feed.close();
    liveButtons(false);
    setText("status", `${end.status} (exit ${end.exit_code}): loading its record…`);
    document.body.dataset.ended = end.status;
    if (end.reload) window.location.reload();
    else setText("status", `${end.status} (exit ${end.exit_code}); the page's server stopped with the run ` +
      "(mrctl ui shows its record)");
  });
  feed.onerror = () => {
    if (document.body.dataset.ended) return;
    // refused (403: no cookie, a restarted server) closes the feed for good; else it retries
    setText("feed-state", feed.readyState === EventSource.CLOSED
      ? "feed refused: open the URL that mrctl ui printed (with its token)" : "feed interrupted, retrying…");
  };
  feed.onopen = () => setText("feed-state", "");
}

// The answer to an action, marked ok or error (a second click's answer replaces the first's).
function answered(text, ok) {
  const el = $("action-result");
  el.textContent = text;
  el.className = ok ? "note ok" : "note error";
}

async function act(button) {
  if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
  button.disabled = true;
  button.dataset.busy = "yes";
  try {
    // the session's cookie goes with it (same origin); the page never sees the token itself
    const response = await fetch(button.dataset.url, { method: "POST" });
    if (response.status === 403 && !response.headers.get("content-type").startsWith("application/json")) {
      answered(await response.text(), false);  // no cookie (a restarted server): its text says what to open
      return;
    }
    const answer = await response.json();
    answered(answer.message || answer.error, response.ok);
  } catch (err) {
    answered(`failed: ${err}`, false);
  } finally {
    delete button.dataset.busy;
    button.disabled = button.classList.contains("live") && !document.body.dataset.live;
  }
}

for (const button of document.querySelectorAll("button.action")) {
  button.addEventListener("click", () => act(button));
}
if (jobId && $("live")) watch();
