"""The page's HTML: pure functions from plain data (history rows, run records, cluster
statuses) to escaped HTML fragments, set into the one template (templates/page.html). A running
job's page is a skeleton that static/mrctl.js fills from the live feed."""

from __future__ import annotations

import time
from html import escape
from importlib import resources
from string import Template

from mrctl.backends.discovery import Found
from mrctl.observe.history import RunRow
from mrctl.observe.record import Attempt, RunRecord

_TEMPLATE = Template(resources.files("mrctl.web").joinpath("templates/page.html").read_text(encoding="utf-8"))
FAILURES_SHOWN = 50
EVENTS_SHOWN = 200


def page(title: str, body: str, job_id: str = "") -> str:
    """A whole page: `body` is HTML already escaped. The session's token is not in it: the
    browser's HttpOnly cookie carries it (mrctl.web.gate)."""
    return _TEMPLATE.substitute(title=escape(title), body=body, job_id=escape(job_id))


def index(found: Found, rows: list[RunRow], history_note: str | None) -> str:
    return "\n".join([
        "<h1>mrctl</h1>",
        "<h2>Running jobs</h2>", _running(found),
        "<h2>Clusters</h2>", _clusters(found),
        "<h2>History</h2>", _history(rows, history_note),
        '<p id="action-result" class="note"></p>',
    ])


def _running(found: Found) -> str:
    if not found.runs:
        return '<p class="note">No job is running.</p>'
    rows = [f'<tr><td><a href="/jobs/{escape(r.job_id)}">{escape(r.job_id)}</a></td><td>{escape(r.name)}</td>'
            f"<td>{escape(r.backend)}</td><td>{escape(r.cluster)}</td><td>{escape(r.phase or '-')}</td></tr>"
            for r in found.runs]
    return _table("running", ("job", "name", "backend", "cluster", "phase"), rows)


def _clusters(found: Found) -> str:
    note = f'<p class="note">Docker clusters were not looked at: {escape(found.docker_note)}</p>' \
        if found.docker_note else ""
    if not found.clusters:
        return note + '<p class="note">No Docker cluster.</p>'
    rows = []
    for c in found.clusters:
        kind = "warm" if c.warm else "kept" if c.state not in ("starting", "running") else "running"
        button = "" if kind == "running" else (
            f'<button class="action" data-url="/clusters/{escape(c.cluster)}/remove" '
            f'data-confirm="Remove cluster {escape(c.cluster)}?">remove</button>')
        containers = ", ".join(f"{n} ({s})" for n, s in c.containers)
        rows.append(f"<tr><td>{escape(c.cluster)}</td><td>{kind}</td><td>{escape(c.job_name)}</td>"
                    f"<td>{escape(c.state)}</td><td>{escape(containers)}</td><td>{button}</td></tr>")
    return note + _table("clusters", ("cluster", "kind", "job", "state", "containers", ""), rows)


def _history(rows: list[RunRow], note: str | None) -> str:
    if note:
        return f'<p class="note error">{escape(note)}</p>'
    if not rows:
        return '<p class="note">No runs recorded yet (mrctl run records each one).</p>'
    cells = [f'<tr class="{escape(r.status)}"><td><a href="/jobs/{escape(r.job_id)}">{escape(r.job_id)}</a></td>'
             f"<td>{escape(r.name)}</td><td>{escape(r.status)}</td><td>{r.exit_code}</td>"
             f"<td>{_when(r.started_at)}</td><td>{r.elapsed:.2f}</td><td>{escape(r.backend)} x{r.workers}</td></tr>"
             for r in rows]
    return _table("history", ("job", "name", "status", "exit", "started", "seconds", "backend"), cells)


def live_job(job_id: str) -> str:
    """A running job's skeleton: static/mrctl.js fills it from /jobs/<id>/events. Its buttons
    are enabled by the run's first snapshot: before it, the run's Redis may not be up to take a
    command (a cluster starting), and after the run's end there is nothing to act on."""
    return f"""<p><a href="/">all runs</a></p>
<h1>job <span id="job-name"></span> <code>{escape(job_id)}</code></h1>
<p id="status" class="status">waiting for the run's first snapshot…</p>
<section id="live">
<p>phase <b id="phase">-</b> <span id="step"></span> · <span id="elapsed">0.0</span>s</p>
<p>map <span id="map-done">0</span>/<span id="map-total">0</span> tasks
  <progress id="map-bar" max="1" value="0"></progress> <span id="map-running"></span></p>
<p>reduce <span id="reduce-done">0</span>/<span id="reduce-total">0</span> tasks
  <progress id="reduce-bar" max="1" value="0"></progress> <span id="reduce-running"></span></p>
<p id="faults"></p>
<p><button class="action live" id="cancel" data-url="/jobs/{escape(job_id)}/cancel" disabled
  data-confirm="Cancel this job? Its cluster is torn down and no output is written.">cancel job</button>
<button class="action live" id="kill" data-url="/jobs/{escape(job_id)}/kill" disabled>kill a random busy worker</button>
<span id="action-result" class="note"></span> <span id="feed-state" class="note"></span></p>
<h2>Workers</h2>
<table id="workers"><thead><tr><th>worker</th><th>state</th><th>task</th><th>done</th>
<th>heartbeat</th></tr></thead><tbody></tbody></table>
<h2>Events</h2>
<ul id="events"></ul>
</section>"""


def finished_job(run: RunRecord, timeline: bool) -> str:
    """A finished run: summary, counters, failures, timeline (when mrctl.observe.timeline is there),
    events."""
    parts = [
        '<p><a href="/">all runs</a></p>',
        f'<h1>job {escape(run.name)} <code>{escape(run.job_id)}</code></h1>',
        f'<p id="status" class="status {escape(run.status)}">{escape(run.status)} (exit {run.exit_code})</p>',
        _summary(run), _counters(run), _timeline(run, timeline), _failures(run), _events(run),
    ]
    return "\n".join(parts)


def _summary(run: RunRecord) -> str:
    s = run.summary
    rows = [
        ("started", _when(run.started_at)), ("seconds", f"{run.elapsed:.2f}"),
        ("backend", f"{run.backend}, {run.workers} workers"), ("spec", run.spec_path),
        ("output", run.output_path if run.status == "succeeded" and run.output_path else "none written"),
        ("map tasks", f"{s.get('maps_done', 0)}/{s.get('map_tasks', 0)}"),
        ("reduce tasks", f"{s.get('reduces_done', 0)}/{s.get('reduce_tasks', 0)}"),
        ("records", f"{s.get('records_in', 0):,} in, {s.get('records_out', 0):,} out"),
        ("faults", f"{s.get('retries', 0)} retries, {s.get('failed_attempts', 0)} failed attempts, "
                   f"{s.get('lost', 0)} lost, {s.get('timeouts', 0)} timeouts, {s.get('refused', 0)} refused, "
                   f"{s.get('backups', 0)} backups, {s.get('killed', 0)} killed"),
        ("phases", ", ".join(f"{p} {t:.2f}s" for p, t in run.phase_seconds) or "-"),
    ]
    if run.error:
        rows.append(("error", run.error))
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
    return f'<h2>Summary</h2><table id="summary">{body}</table>'


def _counters(run: RunRecord) -> str:
    if not run.counters:
        return '<h2>Counters</h2><p id="counters" class="note">The job counted nothing of its own.</p>'
    rows = [f"<tr><td>{escape(g)}</td><td>{escape(n)}</td><td>{v:,}</td></tr>" for g, n, v in run.counters]
    return "<h2>Counters</h2>" + _table("counters", ("group", "name", "total"), rows)


def _timeline(run: RunRecord, available: bool) -> str:
    if not available:
        return ('<h2>Timeline</h2><p id="timeline" class="note gap">The timeline picture is not available: '
                "mrctl.observe.timeline is not installed in this version.</p>")
    return (f'<h2>Timeline</h2><figure id="timeline"><img src="/jobs/{escape(run.job_id)}/timeline.svg" '
            f'alt="one row per worker, one bar per task attempt"></figure>')


def _failures(run: RunRecord) -> str:
    failed = run.failures()
    if not failed:
        return '<h2>Failures</h2><p id="failures" class="note">No attempt failed.</p>'
    items = [f"<li><b>{escape(_attempt(a))}</b><br>{escape(a.error)}"
             + (f"<pre>{escape(a.traceback)}</pre>" if a.traceback else "") + "</li>"
             for a in failed[:FAILURES_SHOWN]]
    more = f"<li>… {len(failed) - FAILURES_SHOWN} more (mrctl show)</li>" if len(failed) > FAILURES_SHOWN else ""
    return f'<h2>Failures</h2><ol id="failures">{"".join(items)}{more}</ol>'


def _events(run: RunRecord) -> str:
    items = [f'<li class="{escape(e.kind)}">{e.at:.2f}s {escape(e.message)}</li>'
             for e in run.events[-EVENTS_SHOWN:]]
    return f'<h2>Events</h2><ul id="events">{"".join(items) or "<li>none</li>"}</ul>'


def not_found(job_id: str, why: str) -> str:
    return f'<p><a href="/">all runs</a></p><h1>job <code>{escape(job_id)}</code></h1><p class="note">{escape(why)}</p>'


def _table(table_id: str, heads: tuple[str, ...], rows: list[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in heads)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _attempt(a: Attempt) -> str:
    took = f"{a.seconds:.3f}s" if a.seconds is not None else "unfinished"
    return f"{a.tid} (step {a.step}) attempt {a.attempt} on {a.worker}: {a.start:.2f}s +{took} {a.outcome}"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
