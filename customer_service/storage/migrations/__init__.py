"""Schema migrations, one folder per dialect, read through ``importlib.resources``.

Files are named ``NNNN_name.sql`` and applied in version order. A statement ends
with ``;`` at the end of a line; comments sit on their own ``--`` lines.

MySQL migrations must be safe to run again from their first statement (DDL
commits implicitly, so a run can stop half-way): the rule, and what the runner
checks for you, are in ``customer_service/storage/_sql_schema.py``.
"""
