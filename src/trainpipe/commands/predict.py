"""`trainpipe predict model_uri=… data.path=… output=…`: score a file, a folder of images
(data.path=DIR) or a SQL query's rows (data.uri=… data.query=…|data.table=…) with a trained model
(configs/predict.yaml lists the keys; predict/batch.py how it streams, resumes and publishes).

A config or file mistake (unknown key, output format or directory, missing input file or kept
column) is reported in one line before torch is imported; what needs the model (its input
columns, whether the URI resolves) right after it loads. Either way: exit 2, nothing written.
"""

from __future__ import annotations

from trainpipe.commands import EXPECTED_FAILURES, failure_exit


def main(args: list[str]) -> int:
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    try:
        from trainpipe.predict.batch import request_of

        request = request_of(args)
        from trainpipe.console import quiet_libraries
        from trainpipe.predict.batch import run_predict

        quiet_libraries()
        result = run_predict(request)
    except EXPECTED_FAILURES as err:
        return failure_exit(err)
    from trainpipe.reports.terminal import print_summary

    print_summary(
        f"scored {result.rows} rows with {result.model}",
        {
            "output": str(result.output),
            "rows/s": round(result.rows_per_s, 1),
            "resumed after": f"{result.resumed_rows} rows" if result.resumed_rows else None,
            "skipped (null)": f"{result.bad_rows} unreadable rows" if result.bad_rows else None,
            "run id": result.run_id,
        },
    )
    return 0
