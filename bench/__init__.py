"""Benchmarks of rotator against the obvious ways to rotate a column.

Run ``python bench/run.py --help``; each contender runs in a child process
(``bench.child``) on a database the benchmark creates and drops itself.
"""
