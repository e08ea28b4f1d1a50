"""Media storage: the binaries behind share links and attachments, on local disk or in an S3 bucket.

The API (uploads, share links) and the connectors (through ``ctx.media``, ``sdk/media.py``) both use it:
``storage.py`` (the backend protocol and local disk), ``storage_s3.py`` (an S3-compatible bucket) and
``sharelinks.py`` (signed, expiring links to stored binaries).
"""
