"""BestBox: the registration photo's cat, cut out; or the reason there is none.

In: ``{'data': photo, 'extra_data': name, 'items': [Detection]}`` (from Detect). Out: the same message
plus ``crop`` (the best ``label`` box's pixels, see :func:`crops.quality`), ``box`` and ``score``; or,
when the photo shows no ``label`` (or ``extra_data`` names no one), ``error`` = a sentence saying so
(what was seen instead included). Args: ``label`` ("cat").
"""

from megflow import register

from .crops import crop, quality


@register(inputs=["inp"], outputs=["out"])
class BestBox:
    def __init__(self, name, args):
        self.label = str(args.get("label", "cat"))

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        msg = envelope.msg
        name = str(msg.get("extra_data") or "").strip()
        found = [d for d in msg.get("items", []) if d.label == self.label]
        best = max(found, key=lambda d: quality(d.box, d.score), default=None)
        pixels = crop(msg["data"], best.box) if best else None
        if not name:
            msg["error"] = f"no name given for the {self.label}: POST /analyze/{{name}}"
        elif pixels is None:
            seen = ", ".join(f"{d.label} {d.score:.2f}" for d in msg.get("items", [])[:5]) or "nothing"
            msg["error"] = f"no {self.label} in the image (seen: {seen})"
        else:
            msg.update(crop=pixels, box=best.box, score=best.score)
        self.out.send(envelope)
