from __future__ import annotations

from streaming.run import root_cause


def test_root_cause_is_the_innermost_python_error_not_the_py4j_wrapper():
    text = (
        "An exception was raised by the Python Proxy. Return Message: Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n'
        "psycopg.errors.UndefinedTable: relation x does not exist\n"
        "sinks.base.SinkError: warehouse sink failed on engagement batch 0: relation x does not exist\n"
    )
    assert root_cause(text) == (
        "sinks.base.SinkError: warehouse sink failed on engagement batch 0: relation x does not exist"
    )


def test_root_cause_falls_back_to_the_first_line():
    assert root_cause("[STREAM_FAILED] something broke\nat line 2") == "[STREAM_FAILED] something broke"
