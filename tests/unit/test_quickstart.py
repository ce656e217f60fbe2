"""megflow_mp.quickstart without running the projects: the checks, asking and asking again, flags,
placeholders, writing a project in one step, and git templates that fail to fetch."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys

import pytest

from megflow_mp.quickstart import add_arguments, run
from megflow_mp.errors import QuickstartError
from megflow_mp.quickstart.asker import Asker, BadAnswer, Question
from megflow_mp.quickstart.dialog import parse_sets
from megflow_mp.quickstart.questions import check_kind, check_port, check_root, inspect_model
from megflow_mp.quickstart.templates import Tree, builtin_tree, fill, placeholders, write_project
from tests.support.clips import data_dir

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

MODELS = data_dir().parent / "models"
ONNX = MODELS / "mobilenet_v2_1.0_224_fp32.onnx"
MGE = MODELS / "mge" / "mobilenet_v2_1.0_224_fp32.mge"


def parse(*argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([str(a) for a in argv])


def quickstart(*argv, answers: str = "") -> tuple[int, str, str]:
    """Run the command with ``answers`` piped in; return ``(exit code, stdout, stderr)``."""
    out, err = io.StringIO(), io.StringIO()
    code = run(parse(*argv), stdin=io.StringIO(answers), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def lines(*answers) -> str:
    return "".join(f"{a}\n" for a in answers)


# -- the checks ---------------------------------------------------------------------------------------

def test_root_accepts_a_new_or_empty_directory_and_refuses_the_rest(tmp_path):
    assert check_root(str(tmp_path / "new" / "app")) == tmp_path / "new" / "app"
    (tmp_path / "empty").mkdir()
    assert check_root(str(tmp_path / "empty")) == tmp_path / "empty"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(BadAnswer, match="is not empty"):
        check_root(str(tmp_path / "full"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadAnswer, match="not a directory"):
        check_root(str(tmp_path / "file"))
    with pytest.raises(BadAnswer, match="is not a directory"):
        check_root(str(tmp_path / "file" / "app"))
    with pytest.raises(BadAnswer, match="empty"):
        check_root("  ")


def test_kind_port_and_model_checks():
    assert check_kind(" Video ") == "video"
    with pytest.raises(BadAnswer, match="modelserving, image, video, custom"):
        check_kind("audio")
    assert check_port("8080") == 8080
    for bad in ("0", "70000", "http"):
        with pytest.raises(BadAnswer):
            check_port(bad)


def test_the_model_is_read_with_the_engines_backends(tmp_path):
    onnx, mge = inspect_model(str(ONNX)), inspect_model(str(MGE))
    assert (onnx.input_name, onnx.input_shape, onnx.backend) == ("input", (1, 3, 224, 224), "onnxruntime")
    assert (mge.input_name, mge.input_shape, mge.backend) == ("data", (1, 3, 224, 224), "megenginelite")
    with pytest.raises(BadAnswer, match="no such file"):
        inspect_model(str(tmp_path / "model.mge"))
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(BadAnswer, match=r"\.mge .* or \.onnx"):
        inspect_model(str(tmp_path / "model.pt"))
    (tmp_path / "broken.onnx").write_bytes(b"not a graph")
    with pytest.raises(BadAnswer, match="onnxruntime cannot load it"):
        inspect_model(str(tmp_path / "broken.onnx"))


# -- asking ------------------------------------------------------------------------------------------

def number(text: str) -> int:
    if not text.isdigit():
        raise BadAnswer(f"{text!r} is not a number")
    return int(text)


QUESTION = Question("How many?", "3", number, "--many")


def test_a_bad_answer_is_asked_again_with_the_reason_and_an_empty_line_takes_the_default():
    out = io.StringIO()
    asker = Asker(io.StringIO(lines("ten", "", "7")), out)
    assert asker.ask(QUESTION) == 3
    assert asker.ask(QUESTION) == 7
    assert out.getvalue() == lines("> How many? [3]", "ten", "! 'ten' is not a number", "> How many? [3]", "",
                                   "> How many? [3]", "7")


def test_a_question_without_default_needs_an_answer_and_the_end_of_input_stops_the_dialog():
    out = io.StringIO()
    asker = Asker(io.StringIO(lines("")), out)
    with pytest.raises(QuickstartError, match="input ended before 'Name\\?' was answered"):
        asker.ask(Question("Name?"))
    assert "! an answer is required" in out.getvalue()


def test_flags_answer_without_asking_and_a_bad_flag_is_an_error():
    out = io.StringIO()
    asker = Asker(io.StringIO(""), out)
    assert asker.ask(QUESTION, "12") == 12
    with pytest.raises(QuickstartError, match="--many 'x': 'x' is not a number"):
        asker.ask(QUESTION, "x")
    assert out.getvalue() == ""


def test_yes_takes_defaults_and_names_the_flag_when_there_is_none():
    asker = Asker(io.StringIO(""), io.StringIO(), assume_defaults=True)
    assert asker.ask(QUESTION) == 3
    with pytest.raises(QuickstartError, match="has no default; pass --name"):
        asker.ask(Question("Name?", None, str, "--name"))
    with pytest.raises(QuickstartError, match="cannot be used: 'x' is not a number; pass --many"):
        asker.ask(Question("How many?", "x", number, "--many"))


# -- placeholders and writing ------------------------------------------------------------------------

def test_placeholders_in_order_of_first_appearance_binary_files_and_headings_left_alone():
    tree = Tree({"b.txt": b"##SECOND## and ##first-1## again ##SECOND##",
                 "a.md": "#### heading ##first-1##\n".encode(),
                 "logo.png": b"\x89PNG\0##NOT_ME##"})
    assert placeholders(tree) == ["first-1", "SECOND"]
    done = fill(tree, {"first-1": "one", "SECOND": "two"})
    assert done.files == {"b.txt": b"two and one again two", "a.md": b"#### heading one\n",
                          "logo.png": b"\x89PNG\0##NOT_ME##"}
    with pytest.raises(KeyError):
        fill(tree, {"first-1": "one"})


def test_every_builtin_template_is_filled_by_the_values_the_dialog_gives():
    known = {"PROJECT_NAME", "PORT", "MODEL", "MODEL_TOML", "INPUT_NAME", "INPUT_NAME_TOML", "LABELS_TOML",
             "MODEL_INFO", "MODEL_REQUIREMENTS"}
    for kind in ("modelserving", "image", "video", "custom"):
        tree = builtin_tree(kind)
        assert {"config.toml", "README.md", "requirements.txt"} <= set(tree.files), kind
        assert any(p.endswith(".py") for p in tree.files), kind
        assert set(placeholders(tree)) <= known, kind


def test_builtin_templates_keep_their_nodes_in_a_folder_of_their_own():
    for kind in ("modelserving", "image", "video", "custom"):
        tree = builtin_tree(kind)
        modules = [p for p in tree.files if p.endswith(".py")]
        assert modules and all(p.startswith("nodes/") for p in modules), (kind, modules)
        assert '\nplugins = ["nodes"]\n' in tree.text("config.toml"), kind
        assert "-p nodes" in tree.text("README.md"), kind


def test_a_project_is_written_whole_or_not_at_all(tmp_path):
    write_project(Tree({"a.txt": b"a", "sub/run.sh": b"#!/bin/sh\n"}, {"sub/run.sh": 0o755}), tmp_path / "p")
    assert (tmp_path / "p" / "a.txt").read_bytes() == b"a"
    assert (tmp_path / "p" / "sub" / "run.sh").stat().st_mode & 0o777 == 0o755
    with pytest.raises(FileExistsError):
        write_project(Tree({"b.txt": b"b"}), tmp_path / "p")
    with pytest.raises(OSError):  # "x" is a file, so "x/y" cannot be written
        write_project(Tree({"x": b"1", "x/y": b"2"}), tmp_path / "q")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


# -- the dialog --------------------------------------------------------------------------------------

def test_piped_answers_create_a_custom_project(tmp_path):
    code, out, err = quickstart(answers=lines(tmp_path / "app", "custom"))
    assert code == 0, err
    assert out.startswith("Welcome to MegFlow quickstart utility.\n")
    assert f"Project created, read {tmp_path / 'app'}/README.md to run it." in out
    files = sorted(p.relative_to(tmp_path / "app").as_posix() for p in (tmp_path / "app").rglob("*") if p.is_file())
    assert files == ["README.md", "config.toml", "megflow.schema.json", "nodes/custom_nodes.py", "requirements.txt"]
    assert (tmp_path / "app" / "config.toml").read_text().startswith("#:schema ./megflow.schema.json\n")
    for p in (tmp_path / "app").rglob("*"):
        if p.is_file():
            assert placeholders(Tree({p.name: p.read_bytes()})) == [], p
    config = tomllib.loads((tmp_path / "app" / "config.toml").read_text())
    assert [n["ty"] for n in config["graphs"][0]["nodes"]] == ["Source", "Sink"]


def test_bad_answers_are_asked_again_and_nothing_is_written_before_the_last_answer(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "f").write_text("x")
    target = tmp_path / "app"
    answers = lines(tmp_path / "taken", target, "audio", "modelserving", "", tmp_path / "m.mge")
    code, out, err = quickstart(answers=answers)
    assert code == 1
    assert "! " + f"{tmp_path / 'taken'} exists and is not empty" in out
    assert "! unknown project type 'audio'" in out
    assert f"! {tmp_path / 'm.mge'}: no such file" in out
    assert "input ended before 'Enter model fullpath.' was answered" in err
    assert not target.exists()


def test_the_input_name_is_asked_again_when_the_model_has_another(tmp_path):
    code, out, err = quickstart(answers=lines(tmp_path / "app", "", "data", ONNX, "data", ""))
    assert code == 0, err
    assert "! mobilenet_v2_1.0_224_fp32.onnx has no input 'data' the engine can feed; its input is 'input'" in out
    assert "! the model's input is 'input'" in out
    config = tomllib.loads((tmp_path / "app" / "config.toml").read_text())
    node = config["graphs"][0]["nodes"][0]
    assert (node["ty"], node["model"], node["input_name"], node["labels"]) == ("ServeModel", str(ONNX), "input", "")
    assert config["graphs"][1]["nodes"][0]["port"] == 8080
    assert (tmp_path / "app" / "requirements.txt").read_text().split() == ["megflow-mp", "onnxruntime"]


def test_flags_answer_everything(tmp_path):
    labels = MODELS / "labels" / "imagenet_labels.txt"
    code, out, err = quickstart("--path", tmp_path / "app", "--type", "modelserving", "--input-name", "data",
                                "--model", MGE, "--labels", labels, "--port", 9123)
    assert code == 0, err
    assert "> " not in out
    config = tomllib.loads((tmp_path / "app" / "config.toml").read_text())
    node = config["graphs"][0]["nodes"][0]
    assert (node["model"], node["input_name"], node["labels"]) == (str(MGE), "data", str(labels))
    assert config["graphs"][1]["nodes"][0]["port"] == 9123
    assert "megengine==1.13.0" in (tmp_path / "app" / "requirements.txt").read_text().split()


def test_yes_takes_the_defaults_where_no_flag_answers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = quickstart("--yes", "--type", "video")
    assert code == 0, err
    config = tomllib.loads((tmp_path / "megflow-app" / "config.toml").read_text())
    assert config["graphs"][1]["nodes"][0]["ty"] == "VideoServer"
    assert config["graphs"][1]["nodes"][0]["port"] == 8085
    code, out, err = quickstart("--yes", "--path", "other")  # modelserving: model.mge does not exist here
    assert code == 1
    assert "the default of 'Enter model fullpath.' ('model.mge') cannot be used" in err and "pass --model" in err
    assert not (tmp_path / "other").exists()


def test_a_model_whose_backend_is_missing_here_is_taken_uninspected(tmp_path, monkeypatch):
    from megflow_mp.models import backend

    def no_backend(path, **kwargs):
        raise backend.ModelError(f"{path}: running .mge models needs megenginelite; install it with: "
                                 f"{backend.MEGENGINE_INSTALL}")

    monkeypatch.setattr(backend, "load_model", no_backend)
    code, out, err = quickstart("--yes", "--path", tmp_path / "app", "--input-name", "anything", "--model", MGE)
    assert code == 0, err
    assert "note: not inspected: " in out
    config = (tmp_path / "app" / "config.toml").read_text()
    assert "# not inspected: " in config and "megengine==1.13.0" in config
    assert tomllib.loads(config)["graphs"][0]["nodes"][0]["input_name"] == "anything"


def test_yes_takes_the_models_input_name_when_the_default_is_not_it(tmp_path):
    code, out, err = quickstart("--yes", "--path", tmp_path / "app", "--model", ONNX)
    assert code == 0, err
    assert "note: mobilenet_v2_1.0_224_fp32.onnx has no input 'data' the engine can feed; its input is 'input'" in out
    config = tomllib.loads((tmp_path / "app" / "config.toml").read_text())
    assert config["graphs"][0]["nodes"][0]["input_name"] == "input"


@pytest.mark.parametrize("argv, message", [
    (["--type", "image", "--model", "x.onnx"], "--model, --input-name and --labels are for modelserving"),
    (["--branch", "main"], "--branch and --set are for templates fetched with --git"),
    (["--git", "file:///nowhere", "--type", "image"], "--type: not used with --git"),
    (["--port", "0", "--type", "image"], "--port: 0 is not a TCP port"),
    (["--type", "audio"], "--type 'audio': unknown project type"),
    (["--input-name", "data", "--model", str(ONNX)],
     "--input-name 'data': mobilenet_v2_1.0_224_fp32.onnx has no input"),
    (["--git", "file:///nowhere", "--set", "oops"], "--set 'oops': expected NAME=VALUE"),
    (["--labels", "/nonexistent/labels.txt"], "--labels '/nonexistent/labels.txt': /nonexistent/labels.txt: label file"),
])
def test_flags_that_cannot_be_used_are_errors(tmp_path, argv, message):
    code, out, err = quickstart("--path", tmp_path / "app", "--yes", *argv)
    assert code == 1
    assert message in err
    assert not (tmp_path / "app").exists()


def test_set_names_may_be_written_with_their_hashes():
    assert parse_sets(["A=1", "##b-2##=x=y", "C="]) == {"A": "1", "b-2": "x=y", "C": ""}


# -- git templates that fail to fetch ----------------------------------------------------------------

def git(*args, cwd):
    subprocess.run(["git", *map(str, args)], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(cwd), "PATH": "/usr/bin:/bin"})


def make_repo(path):
    path.mkdir()
    (path / "hello.txt").write_text("hello ##WHO##\n")
    git("init", "-q", "-b", "main", cwd=path)
    git("add", "hello.txt", cwd=path)
    git("commit", "-q", "-m", "template", cwd=path)


class CreatesRepoWhenAsked(io.StringIO):
    """Piped answers; the repository appears when the retry question is answered."""

    def __init__(self, text, repo):
        super().__init__(text)
        self.repo, self.reads = repo, 0

    def readline(self, *args):
        self.reads += 1
        if self.reads == 3:  # path, branch, then "Retry?"
            make_repo(self.repo)
        return super().readline(*args)


def test_a_failed_fetch_says_why_and_is_retried_when_asked(tmp_path):
    repo = tmp_path / "template"
    out, err = io.StringIO(), io.StringIO()
    stdin = CreatesRepoWhenAsked(lines(tmp_path / "app", "", "y", "world"), repo)
    code = run(parse("--git", f"file://{repo}"), stdin=stdin, stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    assert f"! fetching file://{repo} failed: " in out.getvalue()
    assert "> Retry? [y/N]" in out.getvalue()
    assert (tmp_path / "app" / "hello.txt").read_text() == "hello world\n"
    assert not (tmp_path / "app" / ".git").exists()


def test_a_failed_fetch_not_retried_ends_the_dialog_with_gits_reason(tmp_path):
    make_repo(tmp_path / "template")
    code, out, err = quickstart("--git", f"file://{tmp_path / 'template'}", "--branch", "nope",
                                answers=lines(tmp_path / "app", "n"))
    assert code == 1
    assert "nope" in err and "not found" in err
    assert not (tmp_path / "app").exists()


def test_set_must_name_a_placeholder_of_the_template(tmp_path):
    make_repo(tmp_path / "template")
    code, out, err = quickstart("--git", f"file://{tmp_path / 'template'}", "--path", tmp_path / "app", "--yes",
                                "--set", "WHOM=x")
    assert code == 1
    assert "--set WHOM: no such placeholder in the template (it has: ##WHO##)" in err
    code, out, err = quickstart("--git", f"file://{tmp_path / 'template'}", "--path", tmp_path / "app", "--yes")
    assert code == 1
    assert "'Enter the value of ##WHO##.' has no default; pass --set WHO=VALUE" in err
