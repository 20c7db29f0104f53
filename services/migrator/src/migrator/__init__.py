"""The migrator: moves a tenant between the shared database and a dedicated one while it is served
(capture, copy, catch-up, verify, a bounded cutover, cleanup), resumably, on `migrator.migrations.v1`."""
