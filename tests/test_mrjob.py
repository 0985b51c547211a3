"""mrjob scripts run unchanged (issue 17): every example in the installed mrjob package that
needs no Hadoop, Spark or JAR gives, sorted by line, the bytes mrjob's own inline runner gives
on the same input; what mrctl does not run is refused by name (exit 2); a failing mapper fails
the job after max_attempts with the script's own traceback.

The expected output is always mrjob's (`python SCRIPT -r inline INPUT...`), run here beside
mrctl. PYTHONHASHSEED is fixed for both: mr_text_classifier iterates a set of strings, so even
mrjob's own output changes from run to run without it.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import mrjob.examples  # the test extra installs mrjob
import pytest
from conftest import computed_once, corpus_files

EXAMPLES = Path(mrjob.examples.__file__).parent
ENV = {**os.environ, "PYTHONHASHSEED": "0"}
DPKG_LOG = Path("/var/log/dpkg.log")


def _books() -> list[str]:
    """Four of the books (1.6 MB): as many files and tasks as the comparisons need, at half the
    time of mrjob's own runner over all eight."""
    return [str(p) for p in corpus_files()[:4]]


def _classify_docs() -> list[str]:
    return [str(p) for p in sorted((EXAMPLES / "docs-to-classify").iterdir())]


def mrjob_lines(script: str, inputs: list[str], args: list[str] = (), runner: str = "inline") -> list[bytes]:
    """mrjob's own output, sorted by line (computed once per process for the same script,
    inputs and options: several tests compare with the same run of mrjob's runner)."""
    return list(_mrjob_lines(script, tuple(inputs), tuple(args), runner))


@functools.cache
def _mrjob_lines(script: str, inputs: tuple[str, ...], args: tuple[str, ...], runner: str) -> tuple[bytes, ...]:
    def run_mrjob() -> bytes:
        done = subprocess.run([sys.executable, str(EXAMPLES / script), "-r", runner, *inputs, *args],
                              capture_output=True, env=ENV, timeout=600)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        return done.stdout

    # once per test run: the local and container variants of a comparison run in other processes
    out = computed_once(json.dumps([script, inputs, args, runner]), run_mrjob)
    return tuple(sorted(out.splitlines()))


def mrctl_mrjob(tmp_path: Path, script: str | Path, inputs: list[str], args: list[str] = (),
                *flags: str) -> subprocess.CompletedProcess:
    out = tmp_path / "out.txt"
    return subprocess.run([sys.executable, "-m", "mrctl", "mrjob", str(EXAMPLES / script), *inputs,
                           "-o", str(out), "--plain", *flags, "--", *args],
                          capture_output=True, text=True, env=ENV, timeout=900)


def output_lines(tmp_path: Path) -> list[bytes]:
    return sorted((tmp_path / "out.txt").read_bytes().splitlines())


# (script, inputs, script options): every example that needs no Hadoop, Spark or JAR
CASES = {
    "mr_word_freq_count": (_books, []),  # one step, combiner
    "mr_most_used_word": (_books, []),  # two steps, FILES (stop_words.txt), combiner, JSONValueProtocol
    "mr_next_word_stats": (lambda: _books()[:3], []),  # SORT_VALUES, two steps
    "mr_count_lines_by_file": (_books, []),  # jobconf_from_env('mapreduce.map.input.file')
    "mr_count_lines_right": (_books, []),  # mapper_init/_final and a reducer
    # map-only: one count per map task; over all eight books mrjob makes one task per file, as here
    "mr_count_lines_wrong": (lambda: [str(p) for p in corpus_files()], []),
    "mr_wc": (_books, []),  # __init__ state, mapper_final
    "mr_log_sampler": (lambda: [str(DPKG_LOG)], ["--sample-size", "100000000"]),  # passthru options,
    # RawValueProtocol and ReprProtocol, SORT_VALUES; a sample as large as the log is every line
    "mr_text_classifier": (_classify_docs, []),  # mapper_raw, four steps, counters
}
# Shell steps: mrjob's inline runner refuses them, so its local runner is the reference.
SHELL_CASES = {
    "mr_grep": (lambda: [str(DPKG_LOG)], ["-e", "configure"]),  # mapper_cmd, map-only
    "mr_words_containing_u_freq_count": (_books, []),  # mapper_pre_filter (grep -i u), combiner
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(CASES))
def test_example_on_local_backend_equals_mrjob_inline(tmp_path, script):
    inputs, args = CASES[script]
    files = inputs()
    expected = mrjob_lines(f"{script}.py", files, args)
    done = mrctl_mrjob(tmp_path, f"{script}.py", files, args, "--backend", "local", "--workers", "2",
                       "--chunk-size", "8MiB")  # the largest book in one task, as mrjob's splits
    assert done.returncode == 0, done.stderr[-3000:]
    assert expected, "mrjob wrote nothing: the comparison would prove nothing"
    assert output_lines(tmp_path) == expected


def _wet_file(tmp_path: Path) -> str:
    """A Common Crawl WET file (warcio writes it): book paragraphs as pages of a few hosts, with
    phone numbers in them, some on several pages and hosts."""
    import io

    from warcio.warcwriter import WARCWriter

    text = corpus_files()[0].read_text(encoding="utf-8")
    paragraphs = [p for p in text.split("\n\n") if len(p) > 200][:60]
    path = tmp_path / "crawl.wet"
    with path.open("wb") as f:
        writer = WARCWriter(f, gzip=False)
        for i, paragraph in enumerate(paragraphs):
            phones = f" call (415) 555-{i % 17:04d} or 1-800-555-{i % 5:04d}. "
            url = f"http://host{i % 7}.example.com/page/{i}"
            record = writer.create_warc_record(url, "conversion", payload=io.BytesIO((paragraph + phones).encode()),
                                               warc_headers_dict={"Content-Type": "text/plain"})
            writer.write_record(record)
    return str(path)


@pytest.mark.slow
def test_phone_to_url_reads_a_wet_file_with_mapper_raw(tmp_path):
    """mr_phone_to_url: mapper_raw over a WET file (read with warcio), two steps, bytes regexes."""
    files = [_wet_file(tmp_path)]
    expected = mrjob_lines("mr_phone_to_url.py", files)
    done = mrctl_mrjob(tmp_path, "mr_phone_to_url.py", files, [], "--backend", "local", "--workers", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(expected) == 17 + 5 and output_lines(tmp_path) == expected


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SHELL_CASES))
def test_shell_steps_run_as_subprocesses_and_equal_mrjob_local(tmp_path, script):
    inputs, args = SHELL_CASES[script]
    files = inputs()
    expected = mrjob_lines(f"{script}.py", files, args, runner="local")
    done = mrctl_mrjob(tmp_path, f"{script}.py", files, args, "--backend", "local", "--workers", "2",
                       "--chunk-size", "256KiB")
    assert done.returncode == 0, done.stderr[-3000:]
    assert expected and output_lines(tmp_path) == expected


@pytest.mark.docker
@pytest.mark.usefixtures("clean_docker")
@pytest.mark.parametrize("script", ["mr_most_used_word", "mr_count_lines_by_file", "mr_text_classifier"])
def test_example_in_containers_equals_mrjob_inline(tmp_path, script, docker_host):
    inputs, args = CASES[script]
    files = inputs()
    expected = mrjob_lines(f"{script}.py", files, args)
    done = mrctl_mrjob(tmp_path, f"{script}.py", files, args, "--backend", "docker", "--workers", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert output_lines(tmp_path) == expected


@pytest.mark.slow
def test_word_freq_count_prints_to_stdout_on_small_chunks(tmp_path):
    """Without -o the lines go to stdout, as mrjob prints them; 64 KiB chunks make ~50 map tasks
    per run and four reducers, so values cross many tasks before they are summed."""
    files = _books()
    done = subprocess.run([sys.executable, "-m", "mrctl", "mrjob", str(EXAMPLES / "mr_word_freq_count.py"),
                           *files, "--backend", "local", "-w", "2", "--chunk-size", "64KiB", "--plain"],
                          capture_output=True, env=ENV, timeout=900)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert sorted(done.stdout.splitlines()) == mrjob_lines("mr_word_freq_count.py", files)
    assert b"succeeded" in done.stderr  # the summary went to stderr, not into the output


@pytest.mark.slow
def test_spec_names_an_mrjob_script_with_args(tmp_path):
    spec = tmp_path / "sampler.yaml"
    spec.write_text(json.dumps({
        "name": "sampler", "input": str(DPKG_LOG), "backend": "inline", "output": "sample.txt",
        "job": {"mrjob": str(EXAMPLES / "mr_log_sampler.py"), "args": ["--sample-size", 7]}}))
    done = subprocess.run([sys.executable, "-m", "mrctl", "run", str(spec), "--json"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    sample = (tmp_path / "sample.txt").read_text(encoding="utf-8").splitlines()
    log_lines = DPKG_LOG.read_text(encoding="utf-8").splitlines()
    assert len(sample) == 7 and set(sample) <= set(log_lines)  # RawValueProtocol: the lines as they are
    summary = json.loads(done.stdout)
    assert summary["status"] == "succeeded" and summary["records_in"] == len(log_lines)


COUNTING = '''
from mrjob.compat import jobconf_from_env
from mrjob.job import MRJob


class MRCounting(MRJob):
    def mapper(self, _, line):
        self.increment_counter("lines", "seen")
        if not line.strip():
            self.increment_counter("lines", "blank")
        yield jobconf_from_env("mapreduce.task.ismap"), 1

    def reducer(self, key, ones):
        self.set_status("reducing")
        yield key, sum(ones)


if __name__ == "__main__":
    MRCounting.run()
'''


@pytest.mark.slow
def test_counters_become_mrctl_counters_once_per_task_and_statuses_events(tmp_path):
    script = tmp_path / "mr_counting.py"
    script.write_text(COUNTING)
    book = corpus_files()[0]
    lines = book.read_text(encoding="utf-8").split("\n")[:-1] if book.read_text(encoding="utf-8").endswith("\n") \
        else book.read_text(encoding="utf-8").split("\n")
    out = tmp_path / "out.txt"
    done = subprocess.run([sys.executable, "-m", "mrctl", "mrjob", str(script), str(book), "-o", str(out),
                           "--backend", "local", "-w", "2", "--chunk-size", "64KiB", "--reducers", "1", "--json"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["counters"] == {"lines": {"seen": len(lines), "blank": sum(1 for line in lines if not line.strip())}}
    shown = subprocess.run([sys.executable, "-m", "mrctl", "show", summary["job_id"], "--json"],
                           capture_output=True, text=True, env=ENV, timeout=60)
    statuses = [e["message"] for e in json.loads(shown.stdout)["events"] if e["kind"] == "status"]
    assert statuses == ["r:0 attempt 1 on worker-1: reducing"] or statuses == [
        "r:0 attempt 1 on worker-2: reducing"]  # one reduce task, one key, on either worker
    assert out.read_text() == f'"true"\t{len(lines)}\n'  # mrjob's jobconf says a map task is a map task


@pytest.mark.slow
def test_a_raising_mapper_fails_after_max_attempts_with_the_scripts_traceback(tmp_path):
    done = mrctl_mrjob(tmp_path, "mr_boom.py", [str(DPKG_LOG)], [], "--backend", "local", "-w", "2",
                       "--max-attempts", "2")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "failed on all 2 attempts" in done.stderr
    assert 'mr_boom.py", line' in done.stderr and "in mapper_init" in done.stderr
    assert "Exception: BOOM" in done.stderr
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("script", "args", "says"), [
    ("mr_jar_step_example.py", [], "step 1 is a JAR step (JarStep)"),
    ("mr_spark_wordcount.py", [], "step 1 is a Spark step"),
    ("mr_spark_most_used_word.py", [], "step 1 is a Spark step"),
    ("mr_sparkaboom.py", [], "step 1 is a Spark step"),
    ("mr_spark_wordcount_script.py", [], "step 1 is a Spark script step"),
    ("mr_nick_nack.py", [], "HADOOP_OUTPUT_FORMAT = 'nicknack.MultipleValueOutputFormat'"),
    ("mr_nick_nack_input_format.py", [], "HADOOP_INPUT_FORMAT"),
    ("mr_log_sampler.py", [], "You must specify the --sample-size"),  # the script's own check
    ("mr_wc.py", ["--no-such-option"], "unrecognized arguments: --no-such-option"),
])
def test_what_mrctl_does_not_run_is_refused_by_name(tmp_path, script, args, says):
    done = mrctl_mrjob(tmp_path, script, [str(DPKG_LOG)], args, "--backend", "local")
    assert done.returncode == 2, done.stderr[-2000:]
    assert says in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.slow
def test_a_missing_script_and_missing_inputs_are_usage_errors(tmp_path):
    done = mrctl_mrjob(tmp_path, tmp_path / "nope.py", [str(DPKG_LOG)])
    assert done.returncode == 2 and "no such mrjob script" in done.stderr
    done = mrctl_mrjob(tmp_path, "mr_wc.py", [])
    assert done.returncode == 2 and "give at least one INPUT" in done.stderr


SHIPPING = '''
import os

from mrjob.job import MRJob
from mrjob.protocol import JSONValueProtocol


class MRShipping(MRJob):
    """Counts the words of a list (a DIRS directory) and of a file option, by input line."""

    DIRS = ["wordlists"]
    OUTPUT_PROTOCOL = JSONValueProtocol

    def configure_args(self):
        super().configure_args()
        self.add_file_arg("--extra-words")
        self.add_passthru_arg("--min-length", type=int, default=1)

    def load_args(self, args):
        super().load_args(args)
        self.min_length = self.options.min_length

    def mapper_init(self):
        with open(os.path.join("wordlists", "colours.txt")) as f:
            self.words = {w.strip() for w in f if w.strip()}
        with open(self.options.extra_words) as f:
            self.words |= {w.strip() for w in f if w.strip()}

    def mapper(self, _, line):
        for word in line.lower().split():
            word = word.strip(".,;:!?\\"'()")
            if word in self.words and len(word) >= self.min_length:
                yield word, 1

    def combiner(self, word, counts):
        yield word, sum(counts)

    def reducer(self, word, counts):
        yield None, [word, sum(counts)]


if __name__ == "__main__":
    MRShipping.run()
'''


@pytest.mark.slow
def test_dirs_file_options_and_passthru_options_reach_every_task(tmp_path):
    """DIRS and add_file_arg files are shipped into each task's directory, add_passthru_arg and
    load_args work: against mrjob's inline runner, and against a plain count."""
    script = tmp_path / "mr_shipping.py"
    script.write_text(SHIPPING)
    (tmp_path / "wordlists").mkdir()
    (tmp_path / "wordlists" / "colours.txt").write_text("red\ngreen\nblue\nwhite\nblack\n")
    extra = tmp_path / "extra.txt"
    extra.write_text("the\nof\nand\n")
    books = _books()[:3]
    args = ["--extra-words", str(extra), "--min-length", "3"]
    reference = subprocess.run([sys.executable, str(script), "-r", "inline", *books, *args],
                               capture_output=True, env=ENV, cwd=tmp_path, timeout=600)
    assert reference.returncode == 0, reference.stderr.decode()[-2000:]
    out = tmp_path / "out" / "lines.txt"
    done = subprocess.run([sys.executable, "-m", "mrctl", "mrjob", str(script), *books, "-o", str(out),
                           "--backend", "local", "-w", "2", "--chunk-size", "128KiB", "--plain", "--", *args],
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    got = sorted(out.read_bytes().splitlines())
    assert got == sorted(reference.stdout.splitlines())
    wanted = {"red", "green", "blue", "white", "black", "the", "and"}  # "of" is shorter than 3
    plain: dict[str, int] = {}
    for book in books:
        for word in Path(book).read_text(encoding="utf-8").lower().split():
            word = word.strip(".,;:!?\"'()")
            if word in wanted:
                plain[word] = plain.get(word, 0) + 1
    assert {tuple(json.loads(line)) for line in got} == set(plain.items())


@pytest.mark.slow
def test_chaos_kills_a_worker_and_the_output_stays_mrjobs(tmp_path):
    files = _books()
    done = mrctl_mrjob(tmp_path, "mr_word_freq_count.py", files, [], "--backend", "local", "-w", "3",
                       "--chunk-size", "64KiB", "--chaos", "kill=1,every=0.5,seed=4")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "chaos: killing" in done.stderr, done.stderr[-3000:]
    assert output_lines(tmp_path) == mrjob_lines("mr_word_freq_count.py", files)


# -- what an adversarial review found (each once wrong, each checked against mrjob itself) -------

def _script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text("from mrjob.job import MRJob\nfrom mrjob.step import MRStep\n"
                    "from mrjob.protocol import JSONValueProtocol\n\n" + body
                    + f"\n\nif __name__ == '__main__':\n    {body.split('class ')[1].split('(')[0]}.run()\n")
    return path


def _both(tmp_path: Path, script: Path, inputs: list[str], *flags: str, runner: str = "inline") -> tuple[list, list]:
    ref = subprocess.run([sys.executable, str(script), "-r", runner, *inputs], capture_output=True, env=ENV,
                         timeout=300)
    assert ref.returncode == 0, ref.stderr.decode()[-2000:]
    done = mrctl_mrjob(tmp_path, script, inputs, [], "--backend", "local", "-w", "2", *flags)
    assert done.returncode == 0, done.stderr[-3000:]
    return output_lines(tmp_path), sorted(ref.stdout.splitlines())


@pytest.mark.slow
def test_reducers_group_by_the_decoded_key_as_mrjob_does(tmp_path):
    """Under a value-only internal protocol every line is its own Hadoop key, yet every one
    decodes to the key None: mrjob's reducer sees one run of Nones per task."""
    script = _script(tmp_path, "mr_nonekey", '''class MRNoneKey(MRJob):
    INTERNAL_PROTOCOL = JSONValueProtocol

    def mapper(self, _, line):
        yield None, len(line)

    def reducer(self, key, lengths):
        lengths = list(lengths)
        yield key, [len(lengths), sum(lengths)]''')
    book = corpus_files()[0]
    lines = book.read_text(encoding="utf-8").splitlines()
    got, _ = _both(tmp_path, script, [str(book)], "--chunk-size", "32KiB", "--reducers", "1")
    assert got == [f"null\t[{len(lines)}, {sum(len(line) for line in lines)}]".encode()]


@pytest.mark.slow
def test_a_map_only_first_step_hands_on_its_values_in_input_order(tmp_path):
    script = _script(tmp_path, "mr_order", '''class MROrder(MRJob):
    def steps(self):
        return [MRStep(mapper=self.words), MRStep(reducer=self.listed)]

    def words(self, _, line):
        for word in line.split():
            yield "k", word

    def listed(self, key, words):
        yield key, list(words)''')
    data = tmp_path / "words.txt"
    data.write_text("c b a d\nz y\n")
    got, expected = _both(tmp_path, script, [str(data)])
    assert got == expected == [b'"k"\t["c", "b", "a", "d", "z", "y"]']


@pytest.mark.slow
def test_a_later_steps_mapper_init_and_final_run_when_it_gets_no_pairs(tmp_path):
    script = _script(tmp_path, "mr_none_seen", '''class MRNoneSeen(MRJob):
    def steps(self):
        return [MRStep(mapper=self.pick, reducer=self.total),
                MRStep(mapper_init=self.start, mapper=self.seen, mapper_final=self.count, reducer=self.total)]

    def pick(self, _, line):
        if "no line has this" in line:
            yield line, 1

    def total(self, key, counts):
        yield key, sum(counts)

    def start(self):
        self.n = 0

    def seen(self, key, count):
        self.n += 1

    def count(self):
        yield "count", self.n''')
    got, expected = _both(tmp_path, script, [str(corpus_files()[0])], "--reducers", "1")
    assert got == expected == [b'"count"\t0']


@pytest.mark.slow
def test_files_are_there_when_the_job_is_made(tmp_path):
    """A job may read FILES in __init__: every task makes its job in its directory."""
    (tmp_path / "stop.txt").write_text("the\nand\nof\n")
    script = _script(tmp_path, "mr_init_reads", '''class MRInitReads(MRJob):
    FILES = ["stop.txt"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stop = set()
        if self.options.run_mapper or self.options.run_reducer:
            with open("stop.txt") as f:
                self.stop = set(f.read().split())

    def mapper(self, _, line):
        for word in line.lower().split():
            if word not in self.stop:
                yield word, 1

    def reducer(self, word, counts):
        if word not in self.stop:
            yield word, sum(counts)''')
    got, expected = _both(tmp_path, script, [str(corpus_files()[0])], "--reducers", "2")
    assert got == expected and not [line for line in got if line.startswith(b'"the"\t')]


@pytest.mark.slow
def test_a_pre_filters_output_is_split_at_newlines_only(tmp_path):
    script = _script(tmp_path, "mr_filtered", '''class MRFiltered(MRJob):
    def steps(self):
        return [MRStep(mapper_pre_filter="grep -i u", mapper=self.line, reducer=self.total)]

    def line(self, _, line):
        yield line, 1

    def total(self, line, counts):
        yield line, sum(counts)''')
    data = tmp_path / "controls.txt"
    data.write_bytes(b"u one\x0ctwo\nuu\xe2\x80\xa8x\nplain u\nu cr\rmid\nnothing\n")
    got, expected = _both(tmp_path, script, [str(data)], runner="local")
    assert got == expected and len(got) == 4


def _lines_without_u_first(tmp_path: Path) -> Path:
    """A book's lines with no "u" in them first (a few map tasks' worth at 4 KiB chunks), then
    the lines that have one."""
    lines = corpus_files()[0].read_text(encoding="utf-8").splitlines()[:2000]
    without = [line for line in lines if "u" not in line.lower()]
    path = tmp_path / "u_last.txt"
    path.write_text("\n".join(without + [line for line in lines if "u" in line.lower()]) + "\n", encoding="utf-8")
    assert len("\n".join(without)) > 3 * 4096, "the no-u tasks would not exist"
    return path


@pytest.mark.slow
def test_a_pre_filters_exit_status_is_ignored_as_in_mrjobs_pipe(tmp_path):
    """mrjob runs a pre-filter as `sh -ex -c 'FILTER | python SCRIPT --mapper'`: the pipe's
    status is the mapper's, so `grep -i u` on a task with no "u" (status 1) is no failure."""
    data = _lines_without_u_first(tmp_path)
    expected = mrjob_lines("mr_words_containing_u_freq_count.py", [str(data)], runner="local")
    done = mrctl_mrjob(tmp_path, "mr_words_containing_u_freq_count.py", [str(data)], [], "--backend", "local",
                       "-w", "3", "--chunk-size", "4KiB", "--max-attempts", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert output_lines(tmp_path) == expected
    plain: dict[str, int] = {}  # the script's rule, counted here
    for word in re.findall(r"[\w']*u[\w']*", data.read_text(encoding="utf-8"), re.I):
        plain[word.lower()] = plain.get(word.lower(), 0) + 1
    assert {json.loads(k): int(v) for k, v in (line.split(b"\t") for line in expected)} == plain


@pytest.mark.slow
def test_combiner_and_reducer_pre_filters_that_match_nothing_in_a_task(tmp_path):
    """A combiner pre-filter that drops every line of some map tasks, and a reducer pre-filter
    that drops every line of some reduce tasks: both exit 1 there, and mrjob goes on."""
    script = _script(tmp_path, "mr_filtered_later", '''class MRFilteredLater(MRJob):
    def steps(self):
        return [MRStep(mapper=self.first_letters, combiner_pre_filter="grep '^.x'", combiner=self.total,
                       reducer_pre_filter="grep '^.x'", reducer=self.total)]

    def first_letters(self, _, line):
        for word in line.split():
            yield word[0].lower(), 1

    def total(self, letter, counts):
        yield letter, sum(counts)''')
    data = _lines_without_u_first(tmp_path)  # "x" words are rare: most map tasks have none
    with data.open("a", encoding="utf-8") as f:  # a few, whatever the corpus (a book may have none)
        f.write("Xenophon and the xylophone\nno such word here\nan x-ray of Xerxes\n")
    got, expected = _both(tmp_path, script, [str(data)], "--chunk-size", "4KiB", "--reducers", "5",
                          "--max-attempts", "1", runner="local")
    assert got == expected and got, got  # only "x" gets past the filters
    words = data.read_text(encoding="utf-8").split()
    assert got == [f'"x"\t{sum(1 for w in words if w[0] in "xX")}'.encode()]


def _ascii_words(tmp_path: Path) -> Path:
    """6,000 lines of eight random lowercase words: every first letter in every map task."""
    rng = random.Random(5)
    path = tmp_path / "words.txt"
    with path.open("w", encoding="ascii") as f:
        for _ in range(6000):
            f.write(" ".join(rng.choice("abcdefghij") + "".join(rng.choice("klmnopqrstuvwxyz") for _ in range(5))
                             for _ in range(8)) + "\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "chunk"), [("2", "4KiB"), ("3", "32KiB")])
def test_a_combiner_gets_its_task_sorted_as_mrjob_sorts_it(tmp_path, workers, chunk):
    """mrjob sorts a map task's output before its combiner (sim.py: `sort_input` then
    `run_combiner`): by key, by whole line with SORT_VALUES. Here the combiner keeps the first
    value it gets and so does the reducer: with the values sorted, each letter's smallest word."""
    script = _script(tmp_path, "mr_first_sorted", '''class MRFirstSorted(MRJob):
    SORT_VALUES = True

    def mapper(self, _, line):
        for word in line.split():
            yield word[0], word

    def combiner(self, letter, words):
        yield letter, next(words)

    def reducer(self, letter, firsts):
        yield letter, next(firsts)''')
    data = _ascii_words(tmp_path)
    got, expected = _both(tmp_path, script, [str(data)], "-w", workers, "--chunk-size", chunk, "--reducers", "3")
    smallest: dict[str, str] = {}
    for word in data.read_text(encoding="ascii").split():
        smallest[word[0]] = min(smallest.get(word[0], word), word)
    assert got == expected == [f'"{letter}"\t"{word}"'.encode() for letter, word in sorted(smallest.items())]


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "chunk"), [("2", "4KiB"), ("3", "32KiB")])
def test_an_mrjob_combiner_sees_every_key_in_key_order(tmp_path, workers, chunk):
    """mrjob calls a combiner once for every key of a map task, a key with one value too, in key
    order: this combiner changes the value's form and notes the order it saw its keys in."""
    script = _script(tmp_path, "mr_combiner_sees", '''class MRCombinerSees(MRJob):
    def mapper(self, _, line):
        for word in line.split():
            yield word[:2], word

    def combiner_init(self):
        self.seen = []

    def combiner(self, prefix, words):
        self.seen.append(prefix)
        yield prefix[0], ["combined", len(list(words))]

    def combiner_final(self):
        yield "keys in order", self.seen == sorted(self.seen)

    def reducer(self, key, values):
        values = list(values)
        if key == "keys in order":
            yield key, all(values)
        else:
            yield key, [sorted({v[0] if isinstance(v, list) else "uncombined" for v in values}),
                        sum(v[1] if isinstance(v, list) else 1 for v in values)]''')
    data = _ascii_words(tmp_path)
    # 4 KiB chunks: 80 prefixes in ~75 lines, so a task has prefixes with a single word
    got, expected = _both(tmp_path, script, [str(data)], "-w", workers, "--chunk-size", chunk, "--reducers", "3")
    counts: dict[str, int] = {}
    for word in data.read_text(encoding="ascii").split():
        counts[word[0]] = counts.get(word[0], 0) + 1
    plain = [f'"{letter}"\t[["combined"], {n}]'.encode() for letter, n in sorted(counts.items())]
    assert got == expected == sorted([*plain, b'"keys in order"\ttrue'])


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "reducers"), [("1", "1"), ("3", "5")])
def test_text_classifier_equals_mrjob_inline_whatever_the_workers_and_reducers(tmp_path, workers, reducers):
    """Four steps whose reducers build dicts and float sums in the order their values come: the
    order tags hand each reducer its values as mrjob's runners do here, so the lines are mrjob's."""
    files = _classify_docs()
    expected = mrjob_lines("mr_text_classifier.py", files)
    done = mrctl_mrjob(tmp_path, "mr_text_classifier.py", files, [], "--backend", "local", "-w", workers,
                       "--reducers", reducers, "--chunk-size", "1KiB")
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(expected) == 118 and output_lines(tmp_path) == expected


@pytest.mark.docker
@pytest.mark.usefixtures("clean_docker")
def test_a_pre_filter_that_matches_nothing_in_a_container_task(tmp_path, docker_host):
    """The same in the worker image (Debian's sh and grep): map tasks with no "u" succeed."""
    data = _lines_without_u_first(tmp_path)
    expected = mrjob_lines("mr_words_containing_u_freq_count.py", [str(data)], runner="local")
    done = mrctl_mrjob(tmp_path, "mr_words_containing_u_freq_count.py", [str(data)], [], "--backend", "docker",
                       "-w", "2", "--chunk-size", "4KiB", "--max-attempts", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert expected and output_lines(tmp_path) == expected
