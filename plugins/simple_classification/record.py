"""Record: appends every result to a JSON-lines file and passes it on unchanged.

Args: ``output`` (the file; created or truncated when the node starts, parent directories made).
A message that is a string is written as it is (it must be one line of JSON, as Classify's are);
any other message is written as its JSON. Each line is flushed when written, so the file is
complete up to the last result even if the run is stopped. The file is closed at the end of input.
"""

import json
from pathlib import Path

from megflow import register


@register(inputs=["inp"], outputs=["out"])
class Record:
    def __init__(self, name, args):
        if not args.get("output"):
            raise ValueError(f"node {name!r}: arg 'output' (the results file) is required")
        self.path = Path(args["output"])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("w", encoding="utf-8")

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            self.file.close()
            return
        msg = envelope.msg
        line = msg if isinstance(msg, str) else json.dumps(msg)
        if "\n" in line:
            raise ValueError(f"Record: a result spans several lines; expected one line of JSON: {line[:80]!r}")
        self.file.write(line + "\n")
        self.file.flush()
        self.out.send(envelope)
