"""The language: wire messages, role payloads, records and the peer-review rules."""
