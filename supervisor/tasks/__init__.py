"""Tasks from ctl, Discord and workers: the queue, its dispatch and its store.

The store sits behind one small interface (``store.TaskStore``): sqlite in the
node's ledger now, a database shared by several nodes later. Nothing is imported
here: a node whose programs take no tasks loads only ``lazy`` and ``store``.
"""
