"""Schema migrations, one folder per dialect, read through ``importlib.resources``.

Files are named ``NNNN_name.sql`` and applied in version order. A statement ends
with ``;`` at the end of a line; comments sit on their own ``--`` lines.
"""
