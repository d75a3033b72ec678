"""Blob storage adapters, one module a concern:

- ``clients``: the pooled service client built from the settings (its ``_service_client`` is the one place
  a client is made from them), container clients, and the SAS URLs Put Block From URL reads through;
- ``readers``: a seekable range-reading file over one blob, a dataset source over blobs, small JSON reads;
- ``writers``: a streamed block-blob writer and the artifact sink that publishes a converted version atomically;
- ``cache_store``: the converted-image cache in a container.

Nothing here holds a whole dataset in memory: sources read one blob at a time, the range reader keeps
one buffer, and the writers stage blocks of a few MB as they are written.
"""
