"""`ctedge serve`: a DICOM node beside the scanner.

Receive (C-STORE into a durable spool), wait for each study to go quiet, classify it with the
same pipeline as `ctedge classify` on a backend kept warm, write a JSON result, and send a DICOM
Structured Report back to PACS through an on-disk outbox. Every piece of state is a file, so a
restart after `kill -9` rebuilds its queues from disk.

Modules: config (NodeConfig, TOML), spool (durable receive), completion (quiet periods),
results (JSON + result objects), sr (the Comprehensive SR), outbox (C-STORE with backoff),
status (the status file), server (the pynetdicom edge and the worker threads).
pynetdicom and highdicom come with the `node` extra and are imported only when needed.
"""
