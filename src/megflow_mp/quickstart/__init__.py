"""``megflow-mp quickstart`` (MegFlow's ``megflow_quickstart``): create an app by answering questions.

::

    megflow_quickstart                                   # asks: path, type, [input name, model]
    printf 'my-app\\nimage\\n' | megflow_quickstart         # one answer a line
    megflow_quickstart --path my-app --type modelserving --model net.onnx --yes
    megflow_quickstart --git file:///srv/template.git --branch main --set NAME=value

The project (``config.toml``, its node modules in ``nodes/`` (``plugins = ["nodes"]``: scripts beside
the config are not plugins), ``README.md``, ``requirements.txt``) runs with
``megflow-mp run <project>/config.toml``. Built-in templates live in
``templates/<type>/`` next to this package (package data); ``--git`` clones any repository and
fills its ``##NAME##`` placeholders. Modules: :mod:`.asker` (asking one question),
:mod:`.questions` (the checks), :mod:`.dialog` (the order), :mod:`.templates` (placeholders,
writing), :mod:`.fetch` (git), :mod:`.command` (flags and exit codes).
"""

from .command import add_arguments, main, run

__all__ = ["add_arguments", "main", "run"]
