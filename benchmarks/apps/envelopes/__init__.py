"""Envelopes benchmark app: small envelopes through source -> Transform -> sink."""
