"""Loading a job's classes from source text: fresh modules, real tracebacks, clear refusals."""

from __future__ import annotations

import hashlib
import linecache
import sys
import sysconfig
import textwrap
import traceback
from pathlib import Path

import pytest

from mrctl import Mapper, Reducer
from mrctl.worker.loader import job_classes, load_module

JOB = textwrap.dedent('''
    from mrctl import Mapper, Reducer


    class WordMapper(Mapper):
        def map(self, line):
            yield from ((w, 1) for w in line.split())


    class SumReducer(Reducer):
        def reduce(self, key, values):
            return sum(values)


    def not_a_class():
        pass


    def boom():
        raise ValueError("raised by the job")
''')


@pytest.fixture(autouse=True)
def _forget_loaded_jobs():
    """Drop the job modules and linecache entries a test added, so tests stay independent."""
    modules, lines = set(sys.modules), set(linecache.cache)
    yield
    for name in set(sys.modules) - modules:
        if name.startswith("mrctl_job_") or hasattr(sys.modules[name], "__mrctl_sibling__"):
            del sys.modules[name]
    for name in set(linecache.cache) - lines:
        entry = linecache.cache[name]
        if len(entry) == 4 and entry[1] is None:  # registered from source text, not a file
            del linecache.cache[name]


def test_module_is_named_after_the_file_stem_and_a_hash_of_the_source():
    module = load_module("wordcount.py", JOB)
    digest = hashlib.sha256(JOB.encode()).hexdigest()[:12]
    assert module.__name__ == f"mrctl_job_wordcount_{digest}"
    assert module.__file__ == "wordcount.py"
    assert issubclass(module.WordMapper, Mapper) and issubclass(module.SumReducer, Reducer)
    assert list(module.WordMapper().map("to be to")) == [("to", 1), ("be", 1), ("to", 1)]


def test_the_same_source_is_executed_once(tmp_path):
    marker = tmp_path / "executions"
    source = f"open({str(marker)!r}, 'a').write('x')\n"
    first = load_module("job.py", source)
    assert load_module("job.py", source) is first
    assert marker.read_text() == "x"


def test_two_jobs_with_the_same_file_name_do_not_clash():
    a = load_module("job.py", "VALUE = 'a'\n")
    b = load_module("job.py", "VALUE = 'b'\n")
    assert a is not b and (a.VALUE, b.VALUE) == ("a", "b")


def test_a_workers_next_run_gets_freshly_executed_modules(tmp_path):
    """On a warm cluster a worker serves run after run: the same source is executed once per
    run (module state does not leak from one job into the next), and the previous run's
    modules leave sys.modules."""
    marker = tmp_path / "executions"
    source = f"open({str(marker)!r}, 'a').write('x')\nSTATE = []\n"
    first = load_module("job.py", source, run="run-1")
    first.STATE.append("left by run 1")
    assert load_module("job.py", source, run="run-1") is first
    second = load_module("job.py", source, run="run-2")
    assert second is not first and second.STATE == [] and marker.read_text() == "xx"
    assert first.__name__ not in sys.modules and second.__name__ in sys.modules


def test_sibling_modules_are_imported_by_name_fresh_for_each_run(tmp_path):
    """A module beside the job (shipped as source) is `import`able by its name; a worker's next
    run executes it afresh, and a run whose job has no such sibling cannot import it."""
    job = "import counter_helper\nTOTAL = counter_helper.bump()\n"
    helper = "CALLS = []\n\ndef bump():\n    CALLS.append(1)\n    return len(CALLS)\n"
    siblings = {"job.py": job, "counter_helper.py": helper}
    first = load_module("jobs/job.py", job, run="run-1", siblings=siblings)
    assert first.TOTAL == 1 and first.counter_helper.__file__ == "jobs/counter_helper.py"
    second = load_module("jobs/job.py", job, run="run-2", siblings=siblings)
    assert second.TOTAL == 1 and second.counter_helper is not first.counter_helper
    with pytest.raises(ModuleNotFoundError, match="counter_helper"):
        load_module("jobs/job.py", job, run="run-3", siblings={"job.py": job})


def test_a_sibling_never_replaces_a_module_of_the_standard_library(monkeypatch):
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)  # imported afresh below
    job = "import colorsys\nWHICH = colorsys.__file__\n"
    module = load_module("job.py", job, siblings={"job.py": job, "colorsys.py": "raise ImportError('shadowed')\n"})
    assert module.WHICH == str(Path(sysconfig.get_paths()["stdlib"]) / "colorsys.py")


def test_a_traceback_shows_the_job_file_line_and_source_text():
    module = load_module("wordcount.py", JOB)
    with pytest.raises(ValueError) as info:
        module.boom()
    text = "".join(traceback.format_exception(info.value))
    line = JOB.splitlines().index('    raise ValueError("raised by the job")') + 1
    assert f'File "wordcount.py", line {line}, in boom' in text
    assert 'raise ValueError("raised by the job")' in text


def test_a_module_that_fails_at_import_is_not_cached():
    source = "import sys\nCOUNT = 1 / 0\n"
    for _ in range(2):  # the second load runs the module again instead of returning a husk
        with pytest.raises(ZeroDivisionError):
            load_module("broken.py", source)
    assert not [name for name in sys.modules if name.startswith("mrctl_job_broken_")]


def test_a_syntax_error_names_the_job_file_and_line():
    with pytest.raises(SyntaxError) as info:
        load_module("typo.py", "x = 1\ndef f(:\n")
    assert (info.value.filename, info.value.lineno) == ("typo.py", 2)


def test_job_classes_returns_the_named_classes():
    module = load_module("wordcount.py", JOB)
    classes = job_classes(module, "WordMapper", "SumReducer", "SumReducer")
    assert classes.mapper is module.WordMapper
    assert classes.reducer is module.SumReducer and classes.combiner is module.SumReducer


@pytest.mark.parametrize("combiner", [None, ""])
def test_no_combiner_is_none(combiner):
    module = load_module("wordcount.py", JOB)
    assert job_classes(module, "WordMapper", "SumReducer", combiner).combiner is None


@pytest.mark.parametrize("mapper,reducer,combiner,message", [
    ("WordMaper", "SumReducer", None, "WordMaper in wordcount.py is not a subclass of mrctl.Mapper"),
    ("WordMapper", "Missing", None, "Missing in wordcount.py is not a subclass of mrctl.Reducer"),
    ("SumReducer", "SumReducer", None, "SumReducer in wordcount.py is not a subclass of mrctl.Mapper"),
    ("WordMapper", "WordMapper", None, "WordMapper in wordcount.py is not a subclass of mrctl.Reducer"),
    ("not_a_class", "SumReducer", None, "not_a_class in wordcount.py is not a subclass of mrctl.Mapper"),
    ("WordMapper", "SumReducer", "WordMapper",
     "WordMapper in wordcount.py is not a subclass of mrctl.Reducer"),
])
def test_a_missing_or_wrong_class_is_refused_with_its_name_file_and_expected_base(
        mapper, reducer, combiner, message):
    module = load_module("wordcount.py", JOB)
    with pytest.raises(TypeError) as info:
        job_classes(module, mapper, reducer, combiner)
    assert str(info.value) == message
