"""Options of the JVMs that run micro-batches: the local driver (streaming/session.py) and, on EMR, the
driver and executors (bootstrap/cluster.py). Plain values, so the EMR launcher needs no Spark to read them."""

from __future__ import annotations

# HotSpot removes compiled methods it has not run for a while from its code cache ("flushing"). Between
# two micro-batches most of Spark's own code (planning, code generation, file and state store commits)
# is such code, so every batch had it compiled again. Measured long-running at 4,000 records/s, after
# 4 minutes: the JIT compiler threads used 39 of the JVM's 113 CPU s a minute with flushing, 9 of 75
# without. The larger code cache leaves room for the code now kept (~100 MB used at that point).
JIT_OPTIONS = ("-XX:-UseCodeCacheFlushing", "-XX:ReservedCodeCacheSize=512m")
