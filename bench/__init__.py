"""`make bench`: whole sync runs through the real code paths, measured (see README, "Performance").

The Harvest simulator runs in a process of its own (its CPU is not ours); every pipeline step runs in
a process of its own, forked like an executor's task process, so that its peak RSS is its own.
"""
