"""demux: the built-in ``Demux`` routes each envelope to the element of its dict port ``out`` whose
key is ``str(envelope.to_addr)`` (``demux:out:0`` and ``demux:out:1`` in the config).

Run: ``megflow-mp run -c configs/demux/demux.toml -p plugins/demux``. Each sink prints one line per
message: ``result {"sink": "even"|"odd", "value": i}``.
"""
