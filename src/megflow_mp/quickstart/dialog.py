"""The dialog: which questions are asked, in which order, and the project tree they produce.

Contracts
---------
* :func:`make_project` asks (see :class:`~.asker.Asker`) and returns ``(root, tree)``: the checked
  project directory and the filled template, ready for :func:`~.templates.write_project`. It writes
  nothing; a dialog that cannot finish raises :class:`~.asker.QuickstartError`.
* Built-in templates, MegFlow's order and defaults: project root ``[megflow-app]``, project type
  ``[modelserving]``; for modelserving the model's input tensor name ``[data]`` and the model file
  ``[model.mge]``. The model file is loaded once to read its input: when the engine would feed an
  input of another name, the name is asked again with the model's as default (``--yes`` takes
  it; an ``--input-name`` that disagrees is an error). ``--labels`` and ``--port`` have no question (the defaults: no labels,
  port 8080, 8085 for video); the generated config.toml says where to change them.
* ``--git URL``: project root, then the branch (``[the repository's default]``; ``--branch``
  answers it); the repository is cloned (a failure shows git's reason and asks whether to retry),
  then every placeholder found in its files is asked for (``--set NAME=VALUE`` answers one) and
  replaced. The project type is not asked: the repository is the template.
"""

from __future__ import annotations

import json
import re
import shlex
import tempfile
from pathlib import Path

from ..errors import QuickstartError
from .asker import Asker, BadAnswer, Question
from .fetch import FetchError, clone
from .questions import BRANCH, INPUT_NAME, KIND, MODEL, RETRY, ROOT, ModelInfo, check_labels, check_port
from .templates import Tree, builtin_tree, fill, placeholders, read_tree, with_schema

__all__ = ["make_project", "parse_sets", "DEFAULT_PORTS"]

DEFAULT_PORTS = {"modelserving": 8080, "image": 8080, "video": 8085}
_NAME = re.compile(r"[_\-a-zA-Z0-9]+")


def toml_str(value) -> str:
    """``value`` as a TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(str(value), ensure_ascii=False)


def parse_sets(items: list[str]) -> dict[str, str]:
    """``--set NAME=VALUE`` items (``##NAME##=VALUE`` too) as ``{NAME: VALUE}``."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if name.startswith("##") and name.endswith("##") and len(name) > 4:
            name = name[2:-2]
        if not sep or not _NAME.fullmatch(name):
            raise QuickstartError(f"--set {item!r}: expected NAME=VALUE, NAME made of letters, digits, '_' and '-'")
        out[name] = value
    return out


def make_project(asker: Asker, args) -> tuple[Path, Tree]:
    """Ask everything (flags in ``args`` answer their questions) and return ``(root, filled tree)``."""
    _check_flags(args)
    root = asker.ask(ROOT, args.path)
    if args.git:
        return root, _from_git(asker, args)
    kind = asker.ask(KIND, args.type)
    if kind != "modelserving" and (args.model is not None or args.input_name is not None or args.labels):
        raise QuickstartError(f"--model, --input-name and --labels are for modelserving projects, not {kind}")
    port = args.port if args.port is not None else DEFAULT_PORTS.get(kind, 0)
    values = {"PROJECT_NAME": root.name, "PORT": str(port)}
    if kind == "modelserving":
        values.update(_model_values(asker, args))
    return root, with_schema(fill(builtin_tree(kind), values))


def _check_flags(args) -> None:
    if args.port is not None:
        try:
            check_port(str(args.port))
        except BadAnswer as e:
            raise QuickstartError(f"--port: {e}") from None
    if args.labels:
        try:
            check_labels(args.labels)
        except BadAnswer as e:
            raise QuickstartError(f"--labels {args.labels!r}: {e}") from None
    if args.git:
        used = [f for f, v in (("--type", args.type), ("--model", args.model), ("--input-name", args.input_name),
                               ("--labels", args.labels), ("--port", args.port)) if v is not None]
        if used:
            raise QuickstartError(f"{', '.join(used)}: not used with --git (the repository is the template; "
                                  f"its placeholders are set with --set NAME=VALUE)")
    elif args.branch is not None or args.set:
        raise QuickstartError("--branch and --set are for templates fetched with --git")


def _model_values(asker: Asker, args) -> dict[str, str]:
    input_name = asker.ask(INPUT_NAME, args.input_name)
    info: ModelInfo = asker.ask(MODEL, args.model)
    if info.note:
        asker.say(f"note: {info.note}")
    elif info.input_name != input_name:
        reason = f"{info.path.name} has no input {input_name!r} the engine can feed; its input is {info.input_name!r}"
        if args.input_name is not None:
            raise QuickstartError(f"--input-name {input_name!r}: {reason}")
        asker.say(f"{'note:' if asker.assume_defaults else '!'} {reason}")  # --yes takes the model's name

        def same(text: str, want=info.input_name) -> str:
            if text.strip() != want:
                raise BadAnswer(f"the model's input is {want!r}")
            return want

        input_name = asker.ask(Question(INPUT_NAME.text, info.input_name, same, INPUT_NAME.flag))
    labels = str(check_labels(args.labels)) if args.labels else ""  # checked with the other flags
    return {"MODEL": str(info.path), "MODEL_TOML": toml_str(info.path), "INPUT_NAME": input_name,
            "INPUT_NAME_TOML": toml_str(input_name), "LABELS_TOML": toml_str(labels),
            "MODEL_INFO": _describe(info), "MODEL_REQUIREMENTS": "\n".join(_requirements(info.path))}


def _describe(info: ModelInfo) -> str:
    """One comment line about the model file, for config.toml."""
    if info.note:
        return " ".join(info.note.split())
    shape = "(" + ", ".join("?" if d is None else str(d) for d in info.input_shape) + ")"
    return (f"{info.backend} reads input {info.input_name!r} {shape} {info.dtype}; "
            f"outputs: {', '.join(info.outputs)}")


def _requirements(model: Path) -> list[str]:
    """The packages that run ``model`` (the backend's own install hint, split into lines)."""
    from ..models.backend import MEGENGINE_INSTALL, ONNXRUNTIME_INSTALL

    hint = MEGENGINE_INSTALL if model.suffix.lower() == ".mge" else ONNXRUNTIME_INSTALL
    return shlex.split(hint)[2:]  # drop "pip install"


def _from_git(asker: Asker, args) -> Tree:
    given = parse_sets(args.set)
    branch = asker.ask(BRANCH, args.branch)
    with tempfile.TemporaryDirectory(prefix="megflow-quickstart-") as tmp:
        dest = Path(tmp) / "template"
        while True:
            asker.say("fetching template, please wait...")
            try:
                clone(args.git, dest, branch)
                break
            except FetchError as e:
                asker.say(f"! fetching {args.git}{f' (branch {branch})' if branch else ''} failed: {e}")
                if not asker.ask(RETRY):
                    raise QuickstartError(f"cannot fetch {args.git}: {e}") from None
        try:
            tree = read_tree(dest)
        except ValueError as e:
            raise QuickstartError(f"{args.git}: {e}") from None
    if not tree.files:
        raise QuickstartError(f"{args.git}: the repository has no files")
    names = placeholders(tree)
    unknown = sorted(set(given) - set(names))
    if unknown:
        found = ", ".join(f"##{n}##" for n in names) or "none"
        raise QuickstartError(f"--set {', '.join(unknown)}: no such placeholder in the template (it has: {found})")
    values = {name: asker.ask(_placeholder_question(name), given.get(name)) for name in names}
    return fill(tree, values)


def _placeholder_question(name: str) -> Question:
    def check(text: str) -> str:
        if not text:
            raise BadAnswer("the value is empty")
        return text

    return Question(f"Enter the value of ##{name}##.", None, check, f"--set {name}=VALUE")
