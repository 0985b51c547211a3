"""An mrjob script as an mrctl job: `job: {mrjob: SCRIPT, args: [...]}` in a spec, and
`mrctl mrjob SCRIPT INPUT... -- ARGS`.

The script is asked what it needs (mrctl.mrjob.probe, in a subprocess: the master never runs
job code), what mrctl cannot run is refused by name (exit 2), and the script is shipped
unchanged with a few lines appended that bind its streaming steps to mrctl.mrjob.bridge's
classes, together with its FILES, DIRS and file options. The appended module is written,
content-addressed, under mrctl's cache directory; specs, history and timelines see an
ordinary job module with one mrctl step per mrjob step.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrctl.errors import SpecError
from mrctl.host.dirs import cache_text
from mrctl.io.shipped import pack_files
from mrctl.spec.steps import StepGroup, StepSpec

PROBE_TIMEOUT = 120


@dataclass(frozen=True)
class PreparedScript:
    """An mrjob script made ready to run: its module, its steps and what they need."""

    script: Path
    module: Path  # the script with mrctl's step classes appended
    steps: tuple[dict[str, Any], ...]  # mrjob's own step descriptions
    sort_values: bool
    raw_input: bool  # the first step is mapper_raw: one map task per whole input file

    def program(self, reducers: int) -> tuple[StepGroup, ...]:
        specs = []
        for i, step in enumerate(self.steps):
            n = i + 1
            specs.append(StepSpec(
                f"step{n}", self.module,
                f"MrctlStep{n}Mapper" if "mapper" in step else None,
                f"MrctlStep{n}Reducer" if "reducer" in step else None,
                f"MrctlStep{n}Combiner" if "combiner" in step else None,
                # a later step's values sort: by their order tags (see mrjob_bridge), or as
                # mrjob's SORT_VALUES sorts them
                reducers if "reducer" in step else 0, self.sort_values or i > 0))
        return tuple(StepGroup((s,)) for s in specs)


def from_spec(doc: Any, entry: dict[str, Any]) -> PreparedScript:
    """The `job: {mrjob: SCRIPT, args: [...]}` of a spec (SCRIPT relative to the spec)."""
    doc.check_keys(entry, ("mrjob", "args"), "job.")
    args = entry.get("args") or []
    if not isinstance(args, list):
        raise doc.error("job.args", f"expected a list of the script's options, got {args!r}")
    script = doc.path.parent / str(entry["mrjob"])
    return prepare(script, [str(a) if isinstance(a, int | float) else a for a in args],
                   f"{doc.shown}:{doc.lines.get('job', 1)}: job.mrjob")


def prepare(script: Path, args: list[str], where: str) -> PreparedScript:
    """Probe `script` with `args`, refuse what mrctl cannot run, write the module to ship."""
    script = script.resolve()
    if not script.is_file():
        raise SpecError(f"{where}: no such mrjob script: {script}")
    if not all(isinstance(a, str) for a in args):
        raise SpecError(f"{where}: args must be a list of strings (the script's options), got {args!r}")
    found = probe(script, args, where)
    problems = refusals(found)
    if problems:
        raise SpecError(f"{where}: {script.name} uses what mrctl does not run: " + "; ".join(problems))
    if not found["steps"]:
        raise SpecError(f"{where}: {script.name} defines no steps (no mapper, combiner or reducer)")
    files = pack_files(found["files"], found["dirs"], where)
    steps = tuple(found["steps"])
    source = script.read_text(encoding="utf-8")
    text = module_text(source, script.name, found["class"], found["task_args"], files, steps, found["sort_values"])
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    module = cache_text(Path("mrjob") / digest / script.name, text)
    return PreparedScript(script, module, steps, found["sort_values"], bool(steps[0].get("input_manifest")))


def probe(script: Path, args: list[str], where: str) -> dict[str, Any]:
    """mrctl.mrjob.probe's answer for `script` with `args`, or a SpecError with its message."""
    try:
        import mrjob  # noqa: F401 - only to say what to install
    except ImportError:
        raise SpecError(f"{where}: running mrjob scripts needs the mrjob package: "
                        "pip install 'mrctl[mrjob]'") from None
    with tempfile.TemporaryDirectory(prefix="mrctl-probe-") as tmp:
        out = Path(tmp) / "probe.json"
        try:
            done = subprocess.run([sys.executable, "-m", "mrctl.mrjob.probe", str(script), str(out), *args],
                                  capture_output=True, text=True, timeout=PROBE_TIMEOUT, cwd=script.parent)
        except subprocess.TimeoutExpired:
            raise SpecError(f"{where}: reading {script.name}'s steps took over {PROBE_TIMEOUT} s") from None
        if done.returncode != 0 or not out.exists():
            said = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}")[-3000:]
            raise SpecError(f"{where}: {script.name} (with args {args}) failed before any task ran:\n{said}")
        return json.loads(out.read_text(encoding="utf-8"))


def refusals(found: dict[str, Any]) -> list[str]:
    """What of the probe's answer mrctl does not run, each named as mrjob names it."""
    problems = []
    for n, step in enumerate(found["steps"], 1):
        kind = step.get("type")
        if kind != "streaming":
            what = {"jar": "a JAR step (JarStep)", "spark": "a Spark step (SparkStep / spark())",
                    "spark_jar": "a Spark JAR step (SparkJarStep)",
                    "spark_script": "a Spark script step (SparkScriptStep)"}.get(kind, f"a {kind} step")
            problems.append(f"step {n} is {what}; mrctl runs mapper/combiner/reducer steps only")
            continue
    for key, name in (("hadoop_input_format", "HADOOP_INPUT_FORMAT"), ("hadoop_output_format", "HADOOP_OUTPUT_FORMAT"),
                      ("partitioner", "PARTITIONER")):
        if found.get(key):
            problems.append(f"{name} = {found[key]!r} (a Hadoop Java class)")
    if found.get("libjars"):
        problems.append(f"LIBJARS ({', '.join(Path(p).name for p in found['libjars'])})")
    if found.get("archives"):
        problems.append("ARCHIVES (unpacked archives in the task's directory)")
    if found.get("inputs_in_args"):
        problems.append(f"input paths among the script's options ({', '.join(found['inputs_in_args'])}): "
                        "give inputs to mrctl, before --")
    return problems


def module_text(source: str, script_name: str, class_name: str, task_args: list[str], files: str,
                steps: tuple[dict[str, Any], ...], sort_values: bool) -> str:
    """The script's source, unchanged (so tracebacks keep its lines), then the step classes."""
    lines = [source.rstrip("\n"), "", "",
             f"# -- appended by mrctl, not part of {script_name}: its steps as mrctl classes --",
             "import mrctl.mrjob.bridge as _mrctl_bridge  # noqa: E402",
             f"_mrctl_job = _mrctl_bridge.MrjobJob({class_name}, {task_args!r}, {files!r}, {sort_values!r})"]
    tagging = not sort_values and len(steps) > 1  # order tags: see mrjob_bridge._StepTask
    for i, step in enumerate(steps):
        n, last = i + 1, i == len(steps) - 1
        # a mapper's output feeds its step's reducer (values sorted from the second step on),
        # or else the next step's (always sorted); the first step's reducer keeps input order
        tagged = {"mapper": tagging and (i > 0 if "reducer" in step else not last),
                  "combiner": tagging and i > 0, "reducer": tagging and not last}
        for role in ("mapper", "combiner", "reducer"):
            if role not in step:
                continue
            shell = {"command": step[role].get("command"), "pre_filter": step[role].get("pre_filter")}
            lines += ["", f"class MrctlStep{n}{role.title()}(_mrctl_bridge.Step{role.title()}):",
                      f"    job, step_num, tagged = _mrctl_job, {i}, {tagged[role]!r}",
                      f"    command, pre_filter = {shell['command']!r}, {shell['pre_filter']!r}"]
            if role == "mapper":
                lines.append(f"    raw = {bool(step.get('input_manifest'))!r}")
    return "\n".join(lines) + "\n"
