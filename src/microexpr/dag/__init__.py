"""Pipeline builders shared by the runnable pipelines under ``microexpr.pipelines``.

Kedro 1.7 imports only ``pipelines/<name>/`` for ``kedro run --pipelines=<name>``, so the code that assembles a
stage (ingest, preprocess, split, train, report) lives here and each runnable pipeline composes what it needs:
``mmnet`` = ingest + the preprocessing it consumes + split + training shards + evaluation + report.
"""
